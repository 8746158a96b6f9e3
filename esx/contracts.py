"""Runtime contract checks and crash framing: a broken component is named, with its package.

The trainer checks every component's outputs on the first training batch of
a run (shapes, dtypes, value ranges, weights that sum to one, targets at the
masks' resolution); ``esx.testing`` runs the same checks. A rule broken gives
one :class:`ContractError` naming the component, its package, the rule and
what was received. An exception raised inside a component becomes a
:class:`ComponentError` naming the component and its package (the trainer
adds the epoch, the step and the resume command).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from esx.errors import EsxError

#: tolerance of the [0, 1] ranges and of the weight sums (mixed precision rounds)
ATOL = 1e-4


def describe(component: Any) -> str:
    """``aggregator 'union' (package esx-union 0.2.0)``, for messages."""
    cls = component if isinstance(component, type) else type(component)
    family = getattr(cls, "component_family", "") or "component"
    name = getattr(cls, "component_name", "") or cls.__name__
    package = getattr(cls, "component_package", "") or cls.__module__.split(".")[0]
    version = getattr(cls, "component_version", "")
    return f"{family} {name!r} (package {package}{' ' + version if version else ''})"


class ContractError(EsxError, AssertionError):
    """A component's output broke its family's contract (also an AssertionError, so the
    checks of ``esx.testing`` fail a test the usual way)."""

    def __init__(self, component: Any, rule: str, received: str) -> None:
        self.component, self.rule, self.received = component, rule, received
        super().__init__(
            f"{describe(component)} broke its contract: {rule}; received {received}. "
            "The rules of each family are in docs/reference/hooks.md"
        )


class ComponentError(EsxError):
    """An exception raised inside a component, with the component named."""

    def __init__(self, component: Any, error: BaseException) -> None:
        self.component, self.error = component, error
        super().__init__(f"{describe(component)} failed: {type(error).__name__}: {error}")


class RunFailed(EsxError):
    """A run stopped because a component failed or broke its contract; the message names
    the component, its package, the epoch and step, and the resume command."""


def call(component: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, with an exception inside it framed as the component's."""
    try:
        return fn(*args, **kwargs)
    except (EsxError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise ComponentError(component, exc) from exc


def _shape(x: Any) -> str:
    return f"shape {tuple(x.shape)}" if isinstance(x, Tensor) else f"a {type(x).__name__}"


def _require(component: Any, ok: bool, rule: str, received: Callable[[], str]) -> None:
    if not ok:
        raise ContractError(component, rule, received())


def _range(component: Any, x: Tensor, what: str) -> None:
    _require(
        component,
        bool(torch.isfinite(x).all()),
        f"{what} must be finite",
        lambda: "NaN or Inf values",
    )
    if x.numel() == 0:
        return
    lo, hi = float(x.min()), float(x.max())
    _require(
        component,
        lo >= -ATOL and hi <= 1 + ATOL,
        f"{what} must lie in [0, 1]",
        lambda: f"values from {lo:.4g} to {hi:.4g}",
    )


def targets(component: Any, out: Any, masks: Tensor, annotated: Tensor) -> None:
    """An aggregator's output against a batch's ``masks (B, U, H, W)`` and ``annotated (B,)``."""
    from esx.interfaces import AggregatorOutput
    from esx.types import Targets

    _require(
        component,
        isinstance(out, AggregatorOutput),
        "forward must return an esx.interfaces.AggregatorOutput",
        lambda: _shape(out),
    )
    t = out.targets
    _require(
        component,
        isinstance(t, Targets),
        "AggregatorOutput.targets must be esx.Targets",
        lambda: _shape(t),
    )
    b, _, h, w = masks.shape
    m, wt = t.masks, t.weights
    _require(
        component,
        isinstance(m, Tensor) and m.ndim == 4 and m.shape[0] == b,
        f"targets.masks must be (B, K, H, W) with B = {b}",
        lambda: _shape(m),
    )
    _require(
        component,
        tuple(m.shape[-2:]) == (h, w),
        f"targets.masks must be at the masks' resolution {h}x{w}",
        lambda: _shape(m),
    )
    _require(
        component,
        m.is_floating_point(),
        "targets.masks must be floating point",
        lambda: f"dtype {m.dtype}",
    )
    _range(component, m.detach(), "targets.masks")
    _weights(component, m, wt, annotated)
    if t.annotated is not None:
        _require(
            component,
            tuple(t.annotated.shape) == tuple(m.shape) and t.annotated.dtype == torch.bool,
            "targets.annotated must be a bool tensor shaped like targets.masks",
            lambda: f"{_shape(t.annotated)}, dtype {t.annotated.dtype}",
        )
    if out.loss is not None:
        scalar(component, out.loss, "the aggregator's loss")


def _weights(component: Any, m: Tensor, wt: Any, annotated: Tensor) -> None:
    """Target weights: ``(B, K)``, non-negative, summing to 1 on supervised rows, 0 on
    images without a valid mask."""
    _require(
        component,
        isinstance(wt, Tensor) and tuple(wt.shape) == tuple(m.shape[:2]),
        f"targets.weights must be (B, K) = {tuple(m.shape[:2])}",
        lambda: _shape(wt),
    )
    wt = wt.detach().float()
    _require(
        component,
        bool((wt >= 0).all()),
        "targets.weights must be non-negative",
        lambda: f"a minimum of {float(wt.min()):.4g}",
    )
    sums = wt.sum(1)
    sup = sums > 0
    bad = (sums[sup] - 1).abs() > ATOL
    _require(
        component,
        not bool(bad.any()),
        "targets.weights must sum to 1 on every supervised row (0 on the others)",
        lambda: f"row sums {[round(float(v), 4) for v in sums[sup][bad][:4]]}",
    )
    loose = sup & ~annotated.to(sup.device)
    _require(
        component,
        not bool(loose.any()),
        "an image with no valid mask must get weight 0",
        lambda: f"weight on rows {loose.nonzero().flatten()[:4].tolist()}",
    )


def maps(component: Any, value: Any, n: int) -> None:
    """An explainer's maps: ``(N, h, w)``, finite, min-max normalised to [0, 1] (or, for an
    explainer whose ``normalised`` is False, non-negative)."""
    _require(
        component,
        isinstance(value, Tensor) and value.ndim == 3 and value.shape[0] == n,
        f"explain must return maps (B, h, w) with B = {n}",
        lambda: _shape(value),
    )
    if getattr(component, "normalised", True):
        _range(component, value.detach().float(), "the maps")
        return
    v = value.detach().float()
    _require(
        component,
        bool(torch.isfinite(v).all()),
        "the maps must be finite",
        lambda: "NaN or Inf values",
    )
    _require(
        component,
        v.numel() == 0 or float(v.min()) >= 0,
        "unnormalised maps must be non-negative",
        lambda: f"minimum {float(v.min()):.4g}",
    )


def scalar(component: Any, value: Any, what: str) -> None:
    _require(
        component,
        isinstance(value, Tensor) and value.ndim == 0,
        f"{what} must be a scalar tensor",
        lambda: _shape(value),
    )
    _require(
        component,
        bool(torch.isfinite(value.detach()).all()),
        f"{what} must be finite",
        lambda: f"{float(value.detach())}",
    )


def backbone(component: Any, features: Any, logits: Any, b: int, classes: int) -> None:
    _require(
        component,
        isinstance(features, Tensor) and features.ndim == 4 and features.shape[0] == b,
        f"forward_features must return (B, F, h, w), B = {b}",
        lambda: _shape(features),
    )
    _require(
        component,
        isinstance(logits, Tensor) and tuple(logits.shape) == (b, classes),
        f"forward_head must return logits (B, classes) = ({b}, {classes})",
        lambda: _shape(logits),
    )
