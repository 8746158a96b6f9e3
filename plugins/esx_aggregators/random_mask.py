"""Random: one valid annotation drawn per image at every step (MAGI paper, Table 1).

The draw comes from the aggregator's own generator, seeded from the recipe's
seed, so runs repeat exactly; it is independent of the global RNG so adding
this aggregator does not change the data order or the initialisation. Its
state is the aggregator's extra state (``get_extra_state``), saved with the
weights in every checkpoint, so a resumed run draws what an uninterrupted one
draws.
"""

from __future__ import annotations

import torch

from esx.interfaces import Aggregator, AggregatorOutput, BuildContext, Params
from esx.types import Batch, Targets


class RandomMask(Aggregator):
    """One target per image, ``(B, 1, H, W)``: a uniformly drawn valid mask."""

    Params = Params

    def __init__(self, params: Params, context: BuildContext) -> None:
        super().__init__(params, context)
        self.generator = torch.Generator().manual_seed(context.seed + 7919)

    def get_extra_state(self) -> torch.Tensor:
        """The generator's state: a resumed run draws what the uninterrupted one drew."""
        return self.generator.get_state()

    def set_extra_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)

    def forward(self, batch: Batch) -> AggregatorOutput:
        b, u = batch.mask_valid.shape
        scores = torch.rand(b, u, generator=self.generator).to(batch.masks.device)
        scores = scores.masked_fill(~batch.mask_valid, -1.0)
        pick = scores.argmax(dim=1)
        masks = batch.masks[torch.arange(b, device=pick.device), pick][:, None]
        weights = batch.annotated.to(masks.dtype)[:, None]
        return AggregatorOutput(Targets(masks=masks * weights[..., None, None], weights=weights))
