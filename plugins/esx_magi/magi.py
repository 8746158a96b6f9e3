"""MAGI: multi-annotation generation for explanation supervision (Zhang et al., ICCV 2023).

A VAE-style generator learns one embedding per annotator slot and produces,
for every image, the mask each of the U annotators would draw — missing
annotations included. Observed masks carry no annotator identity, so each
image's observed masks are aligned to the generated ones by an exact linear
assignment (no gradient). The generation loss is the aligned L1 plus β times
the KL terms of the image and annotation latents. The explanation targets are
either the U generated masks weighted by learned annotator weights w =
softmax(ω) (the paper's Eq. 13, ``targets: weighted``) or the vote of the
generated masks (the paper's Table 1 setting, ``targets: consensus``).

Our choices where the paper is silent (each a recipe option):

- ``detach_targets: true`` — the explanation loss does not push gradients into
  the generator. Otherwise the generator can lower L_exp by drawing whatever
  the classifier already looks at, which defeats supervision (the same
  co-adaptation the RES-L imputation has); ω still learns from L_exp.
- L_gen is averaged over annotated images rather than summed, so λ_gen does
  not scale with the batch size.
- T, the aggregated annotation fed to Enc_T, is the vote of the valid masks.
- The decoder has a skip path from the image and T, and its output is a
  residual on T (see :mod:`esx_magi.model`); ``skip`` and ``residual`` change both.
- ``lr``: the generator learns at its own rate (default 1e-3): a 30-epoch run
  of 100 images is ~200 steps, too few for a from-scratch generator at the
  classifier's 1e-4; ω keeps ``train.lr``.
- ``pretrain_steps``: before the classifier's first step, the generator
  trains alone on the training annotations for this many steps (a run of
  100 images gives it only ~7 steps per epoch).
- ``warmup_steps``: for the first steps the generator trains but supervises
  nothing (zero target weight), so the classifier never learns from an
  untrained generator's masks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from esx.errors import DataError
from esx.interfaces import Aggregator, AggregatorOutput, BuildContext, Params
from esx.masks import vote
from esx.types import Batch, Table, Targets
from esx_magi.alignment import MAX_ANNOTATORS, align
from esx_magi.model import Generator, resize

log = logging.getLogger("esx")


class MagiParams(Params):
    gen_size: int = Field(56, ge=8, description="generation resolution R (masks are R x R)")
    z_image: int = Field(16, ge=1, description="size of the image latent z_I")
    z_annotation: int = Field(16, ge=1, description="size of the annotation latent z_T")
    z_annotator: int = Field(8, ge=1, description="size of each annotator embedding c_u")
    width: int = Field(16, ge=4, description="channels of the generator's convolutions")
    beta: float = Field(0.01, ge=0, description="weight of the KL terms in L_gen")
    targets: Literal["consensus", "weighted"] = Field(
        "consensus", description="vote of generated masks (Table 1) or Eq. 13 weighted masks"
    )
    detach_targets: bool = Field(True, description="keep L_exp gradients out of the generator")
    warmup_steps: int = Field(0, ge=0, description="steps before the generated masks supervise")
    pretrain_steps: int = Field(
        0,
        ge=0,
        description="steps that train the generator alone on the training annotations "
        "before the classifier's first step (at the generator's lr)",
    )
    lr: float | None = Field(1e-3, gt=0, description="generator learning rate; null = train.lr")
    crop: bool = Field(
        False,
        description="generate in a square around each image's observed masks (the "
        "geometry of the paper's nodule-centred LIDC crops) instead of the whole image",
    )
    crop_scale: float = Field(2.0, ge=1.0, description="crop side / side of the masks' box")
    skip: Literal["image+vote", "image", "vote"] = Field(
        "image+vote",
        description="what the decoder sees at resolution R besides the latents: the image "
        "and the observed vote T, the image only (T only through its latent), or T only",
    )
    residual: bool = Field(
        True,
        description="generate a residual on the observed vote T (an untrained generator "
        "reproduces T); false: the decoder's output alone",
    )
    gen_loss: Literal["l1", "normalized_l1"] = Field(
        "l1",
        description="l1: the paper's mean |E - Ê|; normalized_l1: divided by the area of "
        "E ∪ Ê, so a mask covering 1% of the image is not pushed towards empty",
    )


class Magi(Aggregator):
    """Targets ``(B, 1, H, W)`` (consensus) or ``(B, U, H, W)`` with weights w (weighted)."""

    Params = MagiParams

    def __init__(self, params: MagiParams, context: BuildContext) -> None:
        super().__init__(params, context)
        u = context.data.num_annotators
        if u > MAX_ANNOTATORS:
            raise DataError(
                f"aggregator 'magi' supports up to {MAX_ANNOTATORS} annotators; "
                f"dataset {context.data.name!r} has {u}"
            )
        self.generator = Generator(
            context.data.in_chans,
            u,
            params.z_image,
            params.z_annotation,
            params.z_annotator,
            params.width,
            params.skip,
            params.residual,
        )
        self.omega = torch.nn.Parameter(torch.zeros(u))
        # Names of the simulated annotators, when the dataset knows them (reports only).
        self.annotator_names = list(context.data.details.get("annotators", []))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self._gen_lr = params.lr if params.lr is not None else 1e-3

    @classmethod
    def example_params(cls, workdir: Path) -> dict[str, Any]:
        return {"gen_size": 16, "width": 4}

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        own = self.params.lr if self.params.lr is not None else lr
        self._gen_lr = own
        return [
            {"params": list(self.generator.parameters()), "lr": own},
            {"params": [self.omega], "lr": lr},
        ]

    def prepare(self, loader: Any, device: torch.device) -> None:
        """``pretrain_steps`` steps of :meth:`pretrain` before the classifier's first step;
        a loader that shows progress (``report``, as the trainer's does) counts the steps."""
        report = getattr(loader, "report", None)
        for done in self.pretrain(loader, device, self.params.pretrain_steps):
            if report is not None:
                report(done, self.params.pretrain_steps)

    def pretrain(self, loader: Any, device: torch.device, steps: int) -> Iterator[int]:
        """Adam steps of L_gen alone on the annotated batches of ``loader`` (the generator
        only; ω learns from L_exp later), passing over it as often as needed; yields the
        number of steps done after each. ``warmup_steps`` counts the run's steps, not these."""
        if steps == 0:
            return
        opt = torch.optim.Adam(self.generator.parameters(), lr=self._gen_lr)
        done = 0
        while done < steps:
            seen = done
            for batch in loader:
                batch = batch.to(device)
                if not batch.annotated.any():
                    continue
                self.train()  # a caller may evaluate between steps
                loss, logs, _, _ = self._generation(batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                done += 1
                if done % 100 == 0 or done == steps:
                    log.info(
                        "magi pre-training: step %d of %d, L1 %.4f", done, steps, logs["gen_l1"]
                    )
                yield done
                if done == steps:
                    break
            if done == seen:
                raise DataError(
                    f"aggregator 'magi': pretrain_steps is {steps} but no training image has an "
                    "annotation; set aggregator.params.pretrain_steps=0"
                )

    @property
    def weights(self) -> Tensor:
        """``(U,)`` learned annotator weights, summing to 1."""
        return self.omega.softmax(0)

    def generate(self, batch: Batch, theta: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Generated mask probabilities ``(B, U, R, R)``, KL ``(B,)``, observed ``(B, U, R, R)``.

        All three live in generation space: the whole image at R x R, or with
        ``crop`` the square around each image's observed masks; :meth:`to_image`
        maps generated masks back to the image. ``theta``: the crops, if already computed.
        """
        r = self.params.gen_size
        t = vote(batch.masks, batch.mask_valid)
        if not self.params.crop:
            observed, t, image = resize(batch.masks, r), resize(t, r), resize(batch.image, r)
        else:
            theta = self._crop_theta(batch) if theta is None else theta
            observed, t, image = (crops(x, theta, r) for x in (batch.masks, t, batch.image))
        logits, kl = self.generator(image, t)
        return logits.sigmoid(), kl, observed

    def to_image(self, masks: Tensor, batch: Batch, theta: Tensor | None = None) -> Tensor:
        """Generation-space masks ``(B, K, R, R)`` at the image's size ``(B, K, H, W)``."""
        size = batch.masks.shape[-2:]
        if not self.params.crop:
            return F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
        theta = self._crop_theta(batch) if theta is None else theta
        inverse = torch.zeros_like(theta)
        inverse[:, 0, 0], inverse[:, 1, 1] = 1 / theta[:, 0, 0], 1 / theta[:, 1, 1]
        inverse[:, :, 2] = -theta[:, :, 2] / theta[:, [0, 1], [0, 1]]
        grid = F.affine_grid(inverse, (masks.shape[0], masks.shape[1], *size), align_corners=False)
        return F.grid_sample(
            masks, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )

    def _crop_theta(self, batch: Batch) -> Tensor:
        """``(B, 2, 3)`` affine maps of the crops: a square of ``crop_scale`` times the side
        of the box around each image's valid masks (the whole image where there is none)."""
        union = (batch.masks * batch.mask_valid[..., None, None]).amax(1) > 0  # (B, H, W)
        h, w = union.shape[-2:]
        theta = torch.zeros(union.shape[0], 2, 3, device=union.device)
        spans = []
        for axis, n in ((2, h), (1, w)):  # rows (y), then columns (x)
            hit = union.any(dim=axis)
            idx = torch.arange(n, device=union.device).expand_as(hit)
            lo = torch.where(hit, idx, n).amin(1).float()
            hi = torch.where(hit, idx, -1).amax(1).float()
            spans.append((lo, hi, n))
        side = torch.maximum(spans[0][1] - spans[0][0], spans[1][1] - spans[1][0]) + 1
        side = (side * self.params.crop_scale).clamp(min=8.0)
        has = union.flatten(1).any(1)
        for row, (lo, hi, n) in zip((1, 0), spans, strict=True):
            center = (lo + hi + 1) / n - 1  # pixel centre of the box, in [-1, 1]
            theta[:, row, row] = torch.where(has, side / n, torch.ones_like(side))
            theta[:, row, 2] = torch.where(has, center, torch.zeros_like(center))
        return theta

    def forward(self, batch: Batch) -> AggregatorOutput:
        loss, logs, probs, theta = self._generation(batch)
        if self.training:
            self.steps += 1
        targets = self._targets(probs, batch, theta)
        return AggregatorOutput(targets=targets, loss=loss, logs=logs)

    def _generation(self, batch: Batch) -> tuple[Tensor, dict[str, float], Tensor, Tensor | None]:
        """L_gen (aligned L1 + β KL over annotated images), its parts, the generated
        probabilities and the crops."""
        theta = self._crop_theta(batch) if self.params.crop else None  # once per step
        probs, kl, observed = self.generate(batch, theta)
        annotated = batch.annotated
        cost = self.cost(observed, probs)
        assign = align(cost, batch.mask_valid)  # (B, V)
        matched = cost.gather(2, assign[..., None])[..., 0] * batch.mask_valid
        n = annotated.sum().clamp_min(1)
        l1 = matched.sum(dim=1)[annotated].sum() / n
        kl_term = kl[annotated].sum() / n
        loss = l1 + self.params.beta * kl_term
        logs = {"gen_l1": float(l1.detach()), "gen_kl": float(kl_term.detach())}
        return loss, logs, probs, theta

    def cost(self, observed: Tensor, probs: Tensor) -> Tensor:
        """``cost[b, v, u]`` of explaining observed mask v by generated mask u: ``(B, V, U)``."""
        diff = (observed[:, :, None] - probs[:, None]).abs()
        if self.params.gen_loss == "l1":
            return diff.mean(dim=(-2, -1))
        union = torch.maximum(observed[:, :, None], probs[:, None]).sum(dim=(-2, -1))
        return diff.sum(dim=(-2, -1)) / (union + 1.0)

    def _targets(self, probs: Tensor, batch: Batch, theta: Tensor | None) -> Targets:
        src = probs.detach() if self.params.detach_targets else probs
        rows = batch.annotated.to(probs.dtype)
        if self.training and int(self.steps) <= self.params.warmup_steps:
            rows = torch.zeros_like(rows)
        if self.params.targets == "consensus":
            hard = (src > 0.5).to(src.dtype)
            # straight-through so gradients can reach the generator when not detached
            soft = hard + src - src.detach()
            masks = (
                vote(soft, torch.ones_like(batch.mask_valid))
                if self.params.detach_targets
                else _soft_vote(soft)
            )
            masks = self.to_image(masks, batch, theta)
            return Targets(masks=masks.clamp(0, 1), weights=rows[:, None])
        masks = self.to_image(src, batch, theta)
        weights = rows[:, None] * self.weights[None]
        return Targets(masks=masks.clamp(0, 1), weights=weights)

    def report(self, loader: Any, device: torch.device) -> dict[str, Any]:
        if loader is None:
            return {}
        from esx_magi.report import evaluate

        return evaluate(self, loader, device)

    def tables(self, report: dict[str, Any]) -> list[Table]:
        from esx_magi.report import tables

        return tables(report)

    def figures(self, out: Path, batch: Batch) -> None:
        from esx_magi.figures import gallery, weights

        gallery(self, batch, out / "magi_gallery.png")
        weights(self, out / "magi_weights.png")


def crops(x: Tensor, theta: Tensor, r: int) -> Tensor:
    """The crops ``theta`` of ``x (B, C, H, W)``, bilinear, at ``(B, C, r, r)`` (public: the
    experiments crop alike)."""
    grid = F.affine_grid(theta, (x.shape[0], x.shape[1], r, r), align_corners=False)
    return F.grid_sample(
        x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )


def _soft_vote(masks: Tensor) -> Tensor:
    """Differentiable vote: mean over annotators, hardened with a straight-through step."""
    mean = masks.mean(dim=1, keepdim=True)
    return (mean >= 0.5 - 1e-6).to(mean.dtype) + mean - mean.detach()
