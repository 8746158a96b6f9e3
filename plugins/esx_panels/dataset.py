"""``panel``: another dataset's images, labels and true masks, annotated by a simulated
panel.

The wrapped dataset (``of``) gives the images and the truth; its own annotations are
replaced. A ``wrong_object`` annotator marks what the wrapped dataset lists in its
samples' ``extras["distractors"]`` (``(K, H, W)``: the phantom's look-alike and cue,
Decoy-MNIST's decoy patch); where a dataset lists none, it marks the truth. Which
images are annotated follows the wrapped dataset (``masks_for``: its positives, or all
images); every annotated image has at least one mask.

    data:
      name: panel
      params:
        of: {name: decoy_mnist, params: {seed: 0}}
        family: wrong_object        # or paper, or an explicit annotators: [...]
        level: 0.5                  # esx sweep --vary data.params.level=0,0.25,...
"""

from __future__ import annotations

import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, ValidationError, field_validator, model_validator

from esx.data import Sample
from esx.errors import DataError, UnknownComponentError
from esx.interfaces import BuildContext, DataInfo, Dataset, Params
from esx.masks import as_tensor_mask
from esx.panels import AnnotatorSpec, Family, draw, family_panel
from esx.plugins import registry


class PanelParams(Params):
    of: dict[str, Any] = Field(
        description="the dataset whose images and true masks the panel annotates: "
        "{name: NAME, params: {...}}, any dataset with a true mask"
    )
    family: Family | None = Field(
        "wrong_object",
        description="the noise dial: wrong_object (share of annotators who mark a "
        "distractor) or paper (boundary noise, too small, too large, missing masks); "
        "null with an explicit annotators list",
    )
    level: float = Field(0.0, ge=0, le=1, description="the dial's level, 0 (truth) to 1")
    annotators: list[AnnotatorSpec] | None = Field(
        None, description="an explicit panel instead of a family (kind, p_annotate, strength)"
    )
    num_annotators: int = Field(4, ge=1, le=16, description="annotators of a family panel")
    p_annotate: float = Field(
        0.75, ge=0, le=1, description="each annotator's chance of annotating (wrong_object)"
    )
    seed: int | None = Field(
        None, description="seed of the panel's draws; null: the wrapped dataset's seed"
    )

    @field_validator("of")
    @classmethod
    def _known(cls, of: dict[str, Any]) -> dict[str, Any]:
        name = of.get("name") if isinstance(of, dict) else None
        if not isinstance(name, str):
            raise ValueError("give the wrapped dataset as {name: NAME, params: {...}}")
        if name == "panel":
            raise ValueError("a panel cannot wrap a panel")
        try:
            inner = registry().get("dataset", name)
        except UnknownComponentError as err:  # its message lists the known names
            raise ValueError(str(err)) from None
        try:
            params = inner.Params.model_validate(of.get("params") or {})
        except ValidationError as err:
            problems = "; ".join(
                f"of.params{''.join(f'.{x}' for x in e['loc'])}: {e['msg']}" for e in err.errors()
            )
            raise ValueError(problems) from None
        return {"name": name, "params": params.model_dump(mode="json")}

    @model_validator(mode="after")
    def _one_panel(self) -> PanelParams:
        if (self.family is None) == (self.annotators is None):
            raise ValueError("give either family (with level) or annotators, not both")
        return self


class PanelSplit(torch.utils.data.Dataset):
    """One split of the wrapped dataset, annotated by the panel (drawn once per image)."""

    def __init__(self, inner: Any, info: DataInfo, params: PanelParams, split: str, seed: int):
        self.inner, self.info, self.p = inner, info, params
        self.code, self.seed, self.split = zlib.crc32(split.encode()), seed, split
        self._cache: dict[int, Sample] = {}

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int) -> Sample:
        if i not in self._cache:
            self._cache[i] = self._annotated(self.inner[i], i)
        return self._cache[i]

    def _annotated(self, s: Sample, i: int) -> Sample:
        if s.truth is None:
            raise DataError(
                f"panel: {self.p.of['name']}'s {self.split} image {i} has no true mask; a "
                "panel annotates true masks, so wrap a dataset that has them"
            )
        p, u = self.p, self.info.num_annotators
        truth = s.truth[0].numpy().astype(bool)
        size = truth.shape
        masks, who, every = np.zeros((u, *size), bool), np.full(u, -1), np.zeros((u, *size), bool)
        if bool(self.info.explained(torch.tensor([s.label]))[0]) and truth.any():
            rng = np.random.default_rng([self.seed, self.code, i, 0x9A4E1])
            found = s.extras.get("distractors")
            distractors = [d.numpy().astype(bool) for d in found] if found is not None else []
            panel = p.annotators or family_panel(p.family, p.level, rng, u, p.p_annotate)
            masks, who, every = draw(panel, truth, rng, distractors)
        extras = {**s.extras, "annotator": torch.from_numpy(who).long()}
        extras["hidden"] = as_tensor_mask(every)
        return replace(
            s, masks=as_tensor_mask(masks), mask_valid=torch.from_numpy(who >= 0), extras=extras
        )


class Panel(Dataset):
    """Another dataset's images and true masks, annotated by a simulated panel."""

    Params = PanelParams

    @classmethod
    def example_params(cls, workdir: Path) -> dict[str, Any]:
        tiny = {"image_size": 32, "n_train": 4, "n_val": 4, "n_test": 4}
        return {"of": {"name": "phantom", "params": tiny}, "level": 0.5}

    def __init__(self, params: PanelParams, context: BuildContext) -> None:
        super().__init__(params, context)
        cls = registry().get("dataset", params.of["name"])
        self.inner = cls(cls.Params.model_validate(params.of["params"]), context)
        self._splits: dict[str, PanelSplit] = {}

    @property
    def info(self) -> DataInfo:
        inner, p = self.inner.info, self.params
        if not inner.has_truth:
            raise DataError(
                f"panel: {p.of['name']} has no true masks to annotate; wrap a dataset that "
                "has them (phantom, decoy_mnist, a folder with truth/)"
            )
        u = len(p.annotators) if p.annotators else p.num_annotators
        panel = (
            [a.model_dump() for a in p.annotators]
            if p.annotators
            else {"family": p.family, "level": p.level, "p_annotate": p.p_annotate}
        )
        return replace(
            inner,
            num_annotators=u,
            details={**inner.details, "panel": panel, "panel_of": p.of["name"]},
        )

    def _seed(self) -> int:
        if self.params.seed is not None:
            return self.params.seed
        return int(self.params.of["params"].get("seed", 0) or 0)

    def split(self, name: str) -> torch.utils.data.Dataset:
        if name not in self._splits:
            inner = self.inner.split(name)
            self._splits[name] = PanelSplit(inner, self.info, self.params, name, self._seed())
        return self._splits[name]

    def groups(self, name: str) -> dict[str, Any]:
        return self.inner.groups(name)
