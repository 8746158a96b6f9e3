"""From a resolved recipe to live components: ``spec.build(context)`` for every family."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from esx.contracts import call
from esx.errors import DataMissingError, EsxError
from esx.interfaces import Aggregator, Backbone, BuildContext, Component, Dataset, Explainer, Loss
from esx.recipe import DataSpec, Recipe

#: the components whose weights a checkpoint holds, by state-dict prefix
TRAINED = ("backbone", "aggregator", "loss")
#: the state-dict key of a component's extra state (PyTorch's name for it)
EXTRA = "_extra_state"


@dataclass
class Components:
    dataset: Dataset
    backbone: Backbone
    explainer: Explainer
    eval_explainer: Explainer
    aggregator: Aggregator
    loss: Loss
    context: BuildContext
    #: the spec of the dataset that ran: the recipe's, or its ``data.fallback``
    data: DataSpec
    #: set when ``data.fallback`` stood in for absent data: what was wanted and why it failed
    fallback: dict[str, str] | None = None

    def each(self) -> Iterator[tuple[str, Component]]:
        """(family, component) of every distinct component, in recipe order."""
        yield "dataset", self.dataset
        yield "backbone", self.backbone
        yield "explainer", self.explainer
        if self.eval_explainer is not self.explainer:
            yield "eval_explainer", self.eval_explainer
        yield "aggregator", self.aggregator
        yield "loss", self.loss

    def trained(self) -> dict[str, nn.Module]:
        return {name: getattr(self, name) for name in TRAINED}

    def state(self) -> dict[str, Tensor]:
        """The trained weights of every component, prefixed by its family, with each
        component's extra state (``get_extra_state``; the explainers' too)."""
        out = {
            f"{name}.{k}": v
            for name, mod in self.trained().items()
            for k, v in mod.state_dict().items()
        }
        for name, ex in self.explainers().items():
            extra = ex.get_extra_state()
            if extra is not None:
                out[f"{name}.{EXTRA}"] = extra
        return out

    def load(self, state: dict[str, Tensor]) -> None:
        """Load :meth:`state`. A checkpoint written before a component kept extra state
        loads without it (the weights are what it holds)."""
        for name, mod in self.trained().items():
            prefix = f"{name}."
            mine = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            missing, unexpected = mod.load_state_dict(mine, strict=False)
            missing = [k for k in missing if not k.endswith(EXTRA)]
            if missing or unexpected:
                raise RuntimeError(
                    f"the checkpoint does not fit the {name}: missing {missing[:3]}, "
                    f"unexpected {unexpected[:3]}"
                )
        for name, ex in self.explainers().items():
            if f"{name}.{EXTRA}" in state:
                ex.set_extra_state(state[f"{name}.{EXTRA}"])

    def explainers(self) -> dict[str, Explainer]:
        """The training explainer and, when it is another one, the evaluation explainer."""
        out = {"explainer": self.explainer}
        if self.eval_explainer is not self.explainer:
            out["eval_explainer"] = self.eval_explainer
        return out


def build(
    recipe: Recipe,
    device: torch.device,
    announce: Callable[[str, str], None] | None = None,
) -> Components:
    """Instantiate every component of a resolved recipe. When the recipe's data is missing
    and it names a fallback, ``announce(reason, fallback name)`` is called before the
    fallback is built."""
    data = recipe.data
    fallback = None
    try:
        dataset = data.build(BuildContext(seed=recipe.seed, device=device))
    except DataMissingError as err:
        if data.fallback is None:
            raise
        fb = data.fallback
        if announce is not None:
            announce(str(err), fb.name)
        data = DataSpec(name=fb.name)  # what ran, with no fallback of its own
        data.resolve(fb.cls, fb.params)
        dataset = data.build(BuildContext(seed=recipe.seed, device=device))
        fallback = {"wanted": recipe.data.name, "reason": str(err)}
    ctx = BuildContext(data=dataset.info, seed=recipe.seed, device=device)
    backbone = recipe.backbone.build(ctx).to(device)
    explainer = recipe.explainer.build(ctx)
    ev = recipe.eval.explainer
    eval_explainer = ev.build(ctx) if ev is not None else explainer
    for ex in {id(e): e for e in (explainer, eval_explainer)}.values():
        call(ex, ex.bind, backbone)
    aggregator = recipe.aggregator.build(ctx).to(device)
    loss = recipe.loss.build(ctx).to(device)
    if loss.uses_explanation and not explainer.differentiable:
        raise EsxError(
            f"explainer {recipe.explainer.name!r} is not differentiable, so loss "
            f"{recipe.loss.name!r} cannot train through it; use a differentiable explainer "
            "for training (see `esx plugins`) and put this one under eval.explainer"
        )
    if loss.needs_input_gradient and not explainer.input_gradient:
        raise EsxError(
            f"loss {recipe.loss.name!r} penalises input gradients, but explainer "
            f"{recipe.explainer.name!r} does not compute them; set explainer.name to one that "
            f"does (`esx plugins` describes each explainer) and keep "
            f"{recipe.explainer.name!r} under eval.explainer to measure the maps"
        )
    return Components(
        dataset, backbone, explainer, eval_explainer, aggregator, loss, ctx, data, fallback
    )
