"""Oracle: supervise with the dataset's true explanation mask.

Only possible where the truth is known (the synthetic phantom, or data with a
held-out reference). It is the upper bound every aggregator is measured
against, and the check that the data rewards looking at the right place at
all. Which images are supervised follows the annotations: an image nobody
annotated stays unsupervised, so oracle and the other aggregators supervise
the same images.
"""

from __future__ import annotations

from pydantic import Field

from esx.errors import DataError
from esx.interfaces import Aggregator, AggregatorOutput, BuildContext, Params
from esx.types import Batch, Targets


class OracleParams(Params):
    annotated_only: bool = Field(
        True, description="supervise only images with at least one annotation"
    )


class Oracle(Aggregator):
    """One target per image: ``batch.truth`` ``(B, 1, H, W)``."""

    Params = OracleParams

    def __init__(self, params: OracleParams, context: BuildContext) -> None:
        super().__init__(params, context)
        if not context.data.has_truth:
            raise DataError(
                f"aggregator 'oracle' needs the true explanation masks, but dataset "
                f"{context.data.name!r} has none; choose another aggregator (e.g. consensus)"
            )

    def forward(self, batch: Batch) -> AggregatorOutput:
        if batch.truth is None:
            raise DataError("aggregator 'oracle': this batch carries no true mask")
        rows = batch.annotated if self.params.annotated_only else batch.label >= 0
        weights = rows.to(batch.truth.dtype)[:, None]
        return AggregatorOutput(Targets(masks=batch.truth, weights=weights))
