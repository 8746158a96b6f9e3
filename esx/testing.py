"""Helpers for plugin authors' tests: a tiny batch and contract checks per family.

    from esx.testing import check_aggregator, check_loss, tiny_batch

    def test_my_aggregator():
        check_aggregator(MyAggregator)           # shapes, ranges, weights, with every loss

Each ``check_*`` builds the component with its default ``Params`` (or the
``params`` you pass), exercises it on tiny data and raises ``AssertionError``
with a message saying which rule was broken.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from esx import contracts
from esx.interfaces import (
    Aggregator,
    AggregatorOutput,
    Backbone,
    BuildContext,
    DataInfo,
    Dataset,
    Explainer,
    Loss,
    Params,
)
from esx.plugins import BUILTIN_DISTRIBUTION, Registry, build_registry
from esx.types import Batch, Targets

__all__ = [
    "TinyBackbone",
    "check_aggregator",
    "check_backbone",
    "check_dataset",
    "check_explainer",
    "check_loss",
    "check_resume",
    "context",
    "tiny_batch",
]


def context(
    annotators: int = 3, size: int = 32, in_chans: int = 1, has_truth: bool = True
) -> BuildContext:
    """A :class:`BuildContext` for tiny synthetic data."""
    info = DataInfo(
        "tiny",
        True,
        in_chans,
        2,
        (size, size),
        annotators,
        has_truth,
        details={"annotators": [f"a{i}" for i in range(annotators)]},
    )
    return BuildContext(info)


def tiny_batch(
    b: int = 4, annotators: int = 3, size: int = 32, in_chans: int = 1, seed: int = 0
) -> Batch:
    """Half positive; positives have 1..U valid random masks, negatives none; a true mask."""
    g = torch.Generator().manual_seed(seed)
    label = torch.arange(b) % 2
    valid = (torch.rand(b, annotators, generator=g) > 0.4) & label.bool()[:, None]
    valid[:, 0] |= label.bool()
    masks = (torch.rand(b, annotators, size, size, generator=g) > 0.6).float()
    masks = masks * valid[..., None, None]
    truth = torch.zeros(b, 1, size, size)
    truth[:, :, size // 4 : size // 2, size // 4 : size // 2] = 1
    truth *= label[:, None, None, None]
    return Batch(
        image=torch.randn(b, in_chans, size, size, generator=g),
        label=label,
        masks=masks,
        mask_valid=valid,
        truth=truth,
        index=torch.arange(b),
        extras={"annotator": torch.where(valid, torch.arange(annotators).expand(b, -1), -1)},
    )


class TinyBackbone(Backbone):
    """A two-convolution CNN for tests, independent of any backbone plugin.

    ``forward_features``: ``(B, C, H, W)`` → ``(B, 8, H/4, W/4)``;
    ``forward_head``: global average pool and a linear layer → ``(B, num_classes)``.
    """

    Params = Params

    def __init__(self, params: Params, context: BuildContext) -> None:
        super().__init__(params, context)
        g = torch.Generator().manual_seed(context.seed)
        self.body = nn.Sequential(
            nn.Conv2d(context.data.in_chans, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1)
        )
        self.fc = nn.Linear(8, context.data.num_classes)
        with torch.no_grad():  # seeded, so checks do not depend on the global RNG
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward_features(self, image: Tensor) -> Tensor:
        return self.body(image)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.fc(features.mean(dim=(2, 3)))


def _build(cls: Any, params: dict | None, ctx: BuildContext) -> Any:
    return cls(cls.Params.model_validate(params or {}), ctx)


def check_targets(t: Targets, batch: Batch, component: Any = "aggregator") -> None:
    """The rules every aggregator's :class:`Targets` keep (:func:`esx.contracts.targets`)."""
    contracts.targets(component, AggregatorOutput(t), batch.masks, batch.annotated)


def check_aggregator(
    cls: type[Aggregator],
    params: dict | None = None,
    registry: Registry | None = None,
    losses: list[str] | None = None,
) -> None:
    """The runtime contract on a tiny batch (shapes, ranges, weights; its own loss, if any,
    a finite scalar that backpropagates), then a differentiable map trained with each loss.

    Args:
        losses: the losses to train with, by registered name. Default: esx's own losses
            only, so a broken third-party loss installed beside yours cannot fail your
            aggregator's test; pass ``registry.names("loss")`` to try every installed one.
    """
    ctx = context()
    agg = _build(cls, params, ctx).train()
    batch = tiny_batch()
    out = agg(batch)
    contracts.targets(agg, out, batch.masks, batch.annotated)
    if out.loss is not None:
        out.loss.backward()
    registry = registry or build_registry()
    if losses is None:
        losses = [
            n
            for n in registry.names("loss")
            if registry.entry("loss", n).package == BUILTIN_DISTRIBUTION
        ]
    for name in losses:
        loss = _build(registry.get("loss", name), None, ctx)
        maps = torch.rand(4, 8, 8, requires_grad=True)
        t = _downsample(agg(batch).targets, 8)
        rows = t.supervised
        value = loss(maps[rows], t.select(rows))
        contracts.scalar(loss, value, f"loss {name!r} on these targets")
        if loss.uses_explanation:
            value.backward()
            assert maps.grad is not None, f"loss {name!r} gives the map no gradient"


def _downsample(t: Targets, size: int) -> Targets:
    from esx.masks import area_downsample

    return Targets(area_downsample(t.masks, (size, size)), t.weights)


def check_loss(cls: type[Loss], params: dict | None = None) -> None:
    """A finite scalar on weighted multi-target input; a loss that uses explanations must put
    gradients on the maps."""
    ctx = context()
    loss = _build(cls, params, ctx)
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(3, 8, 8, generator=g, requires_grad=True)
    masks = (torch.rand(3, 2, 8, 8, generator=g) > 0.5).float()
    t = Targets(masks, torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]))
    value = loss(maps, t)
    contracts.scalar(loss, value, "the loss")
    if loss.uses_explanation:
        value.backward()
        assert maps.grad is not None and maps.grad.abs().sum() > 0, (
            "the loss must put gradients on the explanation maps"
        )


def check_explainer(
    cls: type[Explainer], params: dict | None = None, backbone: Backbone | None = None
) -> None:
    """Maps ``(B, h, w)`` in [0, 1] (non-negative with ``normalised = False``); a differentiable
    explainer's maps, from the step's one forward, reach the backbone."""
    ctx = context(size=64)
    explainer = _build(cls, params, ctx)
    if backbone is None:
        backbone = TinyBackbone(Params(), ctx)
    batch = tiny_batch(size=64)
    maps = explainer.explain(backbone.eval(), batch.image, batch.label)
    contracts.maps(explainer, maps, 4)
    if explainer.differentiable:
        backbone.train()
        if explainer.input_gradient:  # as the training step does
            batch.image.requires_grad_(True)
        feats = backbone.forward_features(batch.image)
        logits = backbone.forward_head(feats)
        maps = explainer.explain(
            backbone, batch.image, batch.label, features=feats, logits=logits, create_graph=True
        )
        maps.sum().backward()
        grads = [p.grad for p in backbone.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), (
            "a differentiable explainer's maps must carry gradients to the backbone"
        )


def check_backbone(cls: type[Backbone], params: dict | None = None) -> None:
    """Features ``(B, K, h, w)``, logits ``(B, classes)``, every parameter gets a gradient."""
    ctx = context(size=64)
    bb = _build(cls, params, ctx).train()
    x = torch.randn(2, 1, 64, 64)
    feats = bb.forward_features(x)
    logits = bb.forward_head(feats)
    contracts.backbone(bb, feats, logits, 2, 2)
    logits.sum().backward()
    missing = [n for n, p in bb.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"


def check_dataset(cls: type[Dataset], params: dict | None = None, items: int = 3) -> None:
    """Info matches the samples; samples are valid; splits exist and collate."""
    from esx.data import collate, validate_sample

    ds = cls(cls.Params.model_validate(params or {}), BuildContext())
    info = ds.info
    for split in ds.SPLITS:
        data = ds.split(split)
        n = min(items, len(data))
        samples = [data[i] for i in range(n)]
        for i, s in enumerate(samples):
            validate_sample(s, f"{split}[{i}]")
            assert s.image.shape[0] == info.in_chans, "image channels differ from info.in_chans"
            assert tuple(s.image.shape[-2:]) == tuple(info.image_size), "size differs from info"
            assert s.masks.shape[0] == info.num_annotators, "mask slots differ from info"
            assert (s.truth is not None) == info.has_truth, "truth presence differs from info"
        if samples:
            collate(samples)


def check_resume(workdir: Any, recipe: dict[str, Any], registry: Registry | None = None) -> None:
    """A run interrupted after its first epoch and resumed ends exactly like an
    uninterrupted one: the same test metrics, predictions and history.

    Args:
        workdir: an empty folder (pytest's ``tmp_path``) for the two runs.
        recipe: a recipe mapping that uses your component, sized to run in seconds (a few
            dozen images); it is trained for two epochs (``train.epochs`` is set to 2). Your
            plugin's example recipe, loaded with ``yaml.safe_load``, with small sizes.
        registry: where the recipe's names resolve; default: every installed plugin.

    Fails when a component keeps state that its checkpoint does not (a random generator
    of its own, a running estimate): return it from ``get_extra_state`` and take it back
    in ``set_extra_state`` (docs/reference/hooks.md).
    """
    from esx.plugins import registry as installed
    from esx.recipe import merge, validate_recipe
    from esx.trainer import Trainer  # (imported here: the other checks need no trainer)

    workdir, reg = Path(workdir), registry or installed()
    two = merge(recipe, {"train": {"epochs": 2}})
    recipe = validate_recipe(two, reg, source="check_resume")
    whole, cut = workdir / "uninterrupted", workdir / "interrupted"
    Trainer(recipe, whole).run()

    class Stop(Trainer):
        def _end_epoch(self, loop: dict[str, Any], shuffle: torch.Generator) -> None:
            super()._end_epoch(loop, shuffle)
            if loop["epoch"] == 1:
                raise KeyboardInterrupt  # as Ctrl-C after the first epoch's checkpoint

    try:
        Stop(recipe, cut).run()
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("check_resume: the run was not interrupted after its first epoch")
    Trainer(recipe.model_copy(), cut).run(resume=True)
    for name in ("predictions.csv", "history.csv"):
        a, b = (whole / name).read_text(), (cut / name).read_text()
        assert a == b, f"check_resume: {name} differs after a resume; {HINT}"
    got, want = (json.loads((f / "metrics.json").read_text()) for f in (cut, whole))
    for key in ("test", "explanation", "validation"):
        assert got[key] == want[key], (
            f"check_resume: metrics.json {key!r} differs after a resume: {got[key]} against "
            f"{want[key]}; {HINT}"
        )


HINT = (
    "a component keeps state its checkpoint does not: return it from get_extra_state() and "
    "take it back in set_extra_state()"
)
