"""From a resolved recipe to live components: ``spec.build(context)`` for every family."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from esx.contracts import call
from esx.errors import DataMissingError, EsxError
from esx.interfaces import Aggregator, Backbone, BuildContext, Component, Dataset, Explainer, Loss
from esx.recipe import DataSpec, Recipe

#: the components whose weights a checkpoint holds, by state-dict prefix
TRAINED = ("backbone", "aggregator", "loss")


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
        """The trained weights of every component, prefixed by its family."""
        return {
            f"{name}.{k}": v
            for name, mod in self.trained().items()
            for k, v in mod.state_dict().items()
        }

    def load(self, state: dict[str, Tensor]) -> None:
        for name, mod in self.trained().items():
            prefix = f"{name}."
            mod.load_state_dict(
                {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            )


def build(recipe: Recipe, device: torch.device) -> Components:
    """Instantiate every component of a resolved recipe."""
    data = recipe.data
    fallback = None
    try:
        dataset = data.build(BuildContext(seed=recipe.seed, device=device))
    except DataMissingError as err:
        if data.fallback is None:
            raise
        fb = data.fallback
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
