"""One training step: every differentiable term from one forward of :class:`StepModule`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from esx import contracts
from esx.build import Components
from esx.contracts import call
from esx.types import Batch, Targets


class StepModule(torch.nn.Module):
    """A training step's whole differentiable computation in one ``forward``.

    Logits, the differentiable explanation maps, the aggregator's targets and
    every loss term come from one call, so that DistributedDataParallel wraps
    a single forward per step (``autograd.grad`` to an activation inside it is
    safe under DDP; a second forward is not). Every component call is framed
    (:func:`esx.contracts.call`), and while :attr:`check` is set (the first
    batch of a run) every output is checked against its family's contract.
    """

    def __init__(self, c: Components) -> None:
        super().__init__()
        self.backbone, self.aggregator, self.loss = c.backbone, c.aggregator, c.loss
        self.explainer = c.explainer
        self.info = c.context.data
        self.classes = self.info.num_classes
        self.check = True
        self._judge = False

    def forward(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, float]]:
        bb, agg = self.backbone, self.aggregator
        if self.loss.uses_explanation and self.explainer.input_gradient:
            batch.image.requires_grad_(True)  # the maps are d(output)/d(image) of this forward
        features = call(bb, bb.forward_features, batch.image)
        logits = call(bb, bb.forward_head, features)
        if self.check:
            contracts.backbone(bb, features, logits, len(batch), self.classes)
        # NaN in the data reaches every output: that is the trainer's non-finite-loss error,
        # not a broken explainer or loss, so their finiteness is checked on finite logits only
        self._judge = self.check and bool(torch.isfinite(logits.detach()).all())
        terms: dict[str, Tensor] = {"pred": F.cross_entropy(logits.float(), batch.label)}
        out = call(agg, agg, batch)
        if self.check:
            contracts.targets(agg, out, batch.masks, batch.annotated)
        if self.loss.uses_explanation:
            rows = out.targets.supervised
            if self.info.masks_for != "all":
                rows = rows & self.info.explained(batch.label)
            n = int(rows.sum())  # one sync: whether any row, or every row, is supervised
            if n:
                every = n == len(rows)
                terms["exp"] = self._explanation_loss(
                    batch, features, logits, out.targets, None if every else rows
                )
        if out.loss is not None:
            terms["gen"] = out.loss.float()
        return terms, out.logs

    def _explanation_loss(
        self,
        batch: Batch,
        features: Tensor,
        logits: Tensor,
        targets: Targets,
        rows: Tensor | None,
    ) -> Tensor:
        """The explanation loss of the supervised ``rows`` (None: every row)."""
        ex = self.explainer
        maps = call(
            ex,
            ex.explain,
            self.backbone,
            batch.image,
            batch.label,
            features=features,
            logits=logits,
            create_graph=True,
        )
        if self._judge:
            contracts.maps(ex, maps, len(batch))
        if rows is not None:
            maps, targets = maps[rows], targets.select(rows)
        maps, targets = call(ex, ex.match, maps.float(), targets)
        value = call(self.loss, self.loss, maps, targets)
        if self._judge:
            contracts.scalar(self.loss, value, "the loss")
        return value
