"""Paired comparisons of runs, how many runs a comparison needs, intervals over test images.

Two methods are compared on runs paired by their seeds (and data seeds): the
differences of a metric, their mean and a 95% confidence interval from
Student's t distribution. A t-interval, not a paired bootstrap: with the 3–15
pairs a sweep affords, a bootstrap's percentile interval is too narrow (it
cannot see beyond the few differences it resamples), while the t-interval is
exact for normal differences and is what ``scipy.stats.ttest_rel`` reports.
A verdict word is given only where the interval excludes zero.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

#: a difference smaller than this counts as a tie in wins/ties/losses
TIE = 1e-9


@dataclass
class Paired:
    """``a - b`` over paired runs."""

    n: int
    mean: float
    sd: float
    low: float
    high: float
    wins: int
    ties: int
    losses: int
    verdict: str

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def paired(
    a: list[float], b: list[float], level: float = 0.95, lower_is_better: bool = False
) -> Paired:
    """Mean of ``a[i] - b[i]`` with its t-interval, wins/ties/losses of ``a``, and a verdict:
    ``better`` or ``worse`` where the interval excludes zero, ``not distinguishable`` where it
    does not, ``too few pairs`` below two pairs. With ``lower_is_better`` (a metric such as the
    reliance on a spurious cue) a win is a pair where ``a`` is lower, and an interval below
    zero is ``better``; the mean and interval are ``a - b`` either way."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = len(d)
    up, down = int((d > TIE).sum()), int((d < -TIE).sum())
    wins, losses = (down, up) if lower_is_better else (up, down)
    if n < 2:
        mean = float(d.mean()) if n else float("nan")
        return Paired(
            n,
            mean,
            float("nan"),
            float("nan"),
            float("nan"),
            wins,
            n - wins - losses,
            losses,
            "too few pairs",
        )
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    mean = float(d.mean())
    low, high = mean - half, mean + half
    above, below = low > 0, high < 0
    if lower_is_better:
        above, below = below, above
    verdict = "better" if above else "worse" if below else "not distinguishable"
    return Paired(n, mean, sd, low, high, wins, n - wins - losses, losses, verdict)


def pairs_needed(
    sd: float, delta: float, power: float = 0.8, alpha: float = 0.05, limit: int = 10_000
) -> int | None:
    """Paired runs a two-sided paired t-test at ``alpha`` needs to detect a true mean
    difference ``delta`` with probability ``power``, when the differences spread by ``sd``
    (the noncentral t distribution; None if more than ``limit``)."""
    if not sd > 0:
        return 2
    for n in range(2, limit + 1):
        df = n - 1
        crit = stats.t.ppf(1 - alpha / 2, df)
        nc = delta / (sd / math.sqrt(n))
        got = stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)
        if got >= power:
            return n
    return None


def bootstrap_mean(
    values: np.ndarray, level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-image ``values`` (e.g. 1 where a test
    image is classified correctly): how much the test split alone moves a run's score."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2 or np.all(values == values[0]):
        return float(values.mean()), float(values.mean())
    res = stats.bootstrap(
        (values,),
        np.mean,
        confidence_level=level,
        n_resamples=resamples,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def kept_share(
    row: list[float],
    floor: list[float],
    ceiling: list[float],
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """The share of the ceiling's gain over the floor that ``row`` keeps, over paired runs:
    ``mean(row - floor) / mean(ceiling - floor)``, with a percentile bootstrap interval that
    resamples the pairs (a ratio has no t-interval). NaN where the ceiling's mean gain is
    not above zero (there is nothing to keep) or there are fewer than two pairs."""
    r, f, c = (np.asarray(x, dtype=float) for x in (row, floor, ceiling))
    gain, got = c - f, r - f
    if len(gain) < 2 or gain.mean() <= 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(gain), size=(resamples, len(gain)))
    den = gain[picks].mean(1)
    ratios = got[picks].mean(1)[den > 0] / den[den > 0]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(got.mean() / gain.mean()), float(low), float(high)
