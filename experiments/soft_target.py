"""Is a soft target's form what costs? esx's command line with one more aggregator.

    python experiments/soft_target.py sweep experiments/soft_target --seeds 0-4 \
        --vary data.params.level=0.5 --vary data.params.of.params.seed=0-2 \
        --jobs 1 --out runs/side_soft_target

adds the aggregator ``soft_truth`` to this process's registry, then runs ``esx`` with the
arguments given (``sweep`` needs ``--jobs 1``, which trains in this process; ``--jobs 2``
or more start ``esx run`` processes, which do not know ``soft_truth``). Its target on
every annotated image is min(1, ``truth`` × the true mask + ``distractor`` × the
dataset's distractor mask, ``extras["distractors"]``, their union where there are
several), with no annotation read but which images were annotated (as the Oracle's).
With ``truth`` 0.68 and ``distractor`` 0.32 on Decoy-MNIST's panel at level 0.5 it is
the form of MAGI (weighted)'s learned target, digit and patch, built from the truth; with
1 and 1 the form of MAGI (consensus)'s. The lab notebook's energy-curve MAGI cells (61)
give the question and what each outcome means.

A side experiment's component, not one of esx's: it is not installed, so ``esx report``
and ``experiments/magi_cell.py`` read its runs as any others (they do not rebuild the
aggregator), but ``esx run`` alone does not know it.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pydantic import Field  # noqa: E402

from esx.cli import build_app  # noqa: E402
from esx.errors import DataError  # noqa: E402
from esx.interfaces import Aggregator, AggregatorOutput, BuildContext, Params  # noqa: E402
from esx.plugins import registry  # noqa: E402
from esx.types import Batch, Targets  # noqa: E402

NAME = "soft_truth"


class SoftTruthParams(Params):
    truth: float = Field(..., ge=0, le=1, description="the true mask's value in the target")
    distractor: float = Field(
        ..., ge=0, le=1, description="the distractor mask's value in the target"
    )


class SoftTruth(Aggregator):
    """One target per image: min(1, truth × ``batch.truth`` + distractor × distractors)."""

    Params = SoftTruthParams

    def __init__(self, params: SoftTruthParams, context: BuildContext) -> None:
        super().__init__(params, context)
        if not context.data.has_truth:
            raise DataError(
                f"aggregator {NAME!r} needs the true masks, but dataset "
                f"{context.data.name!r} has none; run it on a dataset with a truth "
                "(decoy_mnist, phantom, or a panel of either)"
            )

    def forward(self, batch: Batch) -> AggregatorOutput:
        found = batch.extras.get("distractors")
        if batch.truth is None or found is None:
            raise DataError(
                f"aggregator {NAME!r}: this batch carries no "
                f"{'true mask' if batch.truth is None else 'distractors extra'}; run it on "
                "decoy_mnist or phantom (or a panel of either), which give both"
            )
        truth = batch.truth
        distractor = found.to(truth.dtype).amax(dim=1, keepdim=True)
        p = self.params
        target = (p.truth * truth + p.distractor * distractor).clamp(max=1.0)
        weights = batch.annotated.to(truth.dtype)[:, None]
        return AggregatorOutput(Targets(masks=target, weights=weights))


def register() -> None:
    """Add ``soft_truth`` to this process's registry (once)."""
    reg = registry()
    if NAME not in reg.names("aggregator"):
        reg.add("aggregator", NAME, SoftTruth, plugin="soft_target", package="experiments")


def main(argv: list[str]) -> None:
    register()
    build_app()(argv, prog_name="soft_target.py")


if __name__ == "__main__":
    main(sys.argv[1:])
