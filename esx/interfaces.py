"""The base class of each component family.

A component class has a ``Params`` pydantic model (unknown keys are
rejected) and is built as ``cls(params, context)`` where ``params`` is an
instance of ``Params`` and ``context`` a :class:`BuildContext`; this holds
for every family, datasets included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from esx.types import Batch, Table, Targets


class Params(BaseModel):
    """Base class of component parameters: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class DataInfo:
    """What a dataset tells the other components about itself.

    Attributes:
        name: the dataset's registered name.
        synthetic: True for generated data (reported in ``metrics.json``).
        in_chans: image channels C.
        num_classes: number of classes (binary tasks: 2, positive = 1; more classes are
            evaluated with macro-averaged metrics, :func:`esx.metrics.multiclass`).
        image_size: ``(H, W)``.
        num_annotators: U, the number of annotation slots per image.
        has_truth: True when batches carry the true explanation mask.
        splits: sizes of the splits.
        details: free-form facts worth recording (e.g. which annotators).
        masks_for: which images carry explanation masks and are supervised and measured:
            ``"positives"`` (label > 0, the binary convention: a lesion is marked, its
            absence is not) or ``"all"`` (every class has its object marked, e.g. the digit
            of every Decoy-MNIST image).
    """

    name: str
    synthetic: bool
    in_chans: int
    num_classes: int
    image_size: tuple[int, int]
    num_annotators: int
    has_truth: bool
    splits: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    masks_for: Literal["positives", "all"] = "positives"

    def explained(self, label: Tensor) -> Tensor:
        """``(B,)`` bool: the images of these labels whose masks count (:attr:`masks_for`)."""
        return label > 0 if self.masks_for == "positives" else torch.ones_like(label, dtype=bool)


@dataclass(frozen=True)
class BuildContext:
    """Everything a component may need to build itself.

    Attributes:
        data: the dataset's :class:`DataInfo`; None while the dataset itself is built.
        seed: the run's seed (``seed:`` in the recipe).
        device: where the run trains.
    """

    data: DataInfo | None = None
    seed: int = 0
    device: torch.device = torch.device("cpu")


class Component:
    """What every family shares: the parameter model and three optional result hooks.

    After training, the trainer calls :meth:`report` of every component on the
    test split, stores a non-empty result under the family's key in
    ``metrics.json``, and stores :meth:`tables` of that result under
    ``tables``; :meth:`figures` draws into the run folder.
    """

    Params: ClassVar[type[Params]] = Params
    #: Filled in by the registry: the family, the registered name, and the package (with its
    #: version) that gave it; error messages and metrics.json name components by them.
    component_family: ClassVar[str] = ""
    component_name: ClassVar[str] = ""
    component_package: ClassVar[str] = ""
    component_version: ClassVar[str] = ""

    @classmethod
    def example_params(cls, workdir: Path) -> dict[str, Any]:
        """``params`` of the smallest useful instance, for registry-wide contract tests.

        The default is ``{}`` (every default). Override when the defaults are slow
        (a large dataset) or need a file: ``workdir`` is an empty folder the
        component may write into.
        """
        return {}

    def report(self, loader: Any, device: torch.device) -> dict[str, Any]:
        """Optional evaluation after training, on the test split (``loader`` yields
        :class:`~esx.types.Batch`); stored under the family's key in ``metrics.json``."""
        return {}

    def tables(self, report: dict[str, Any]) -> list[Table]:
        """Optional tables made from :meth:`report`'s result: printed by ``esx run``,
        stored in ``metrics.json`` and rendered by ``esx report``."""
        return []

    def figures(self, out: Path, batch: Batch) -> None:
        """Optional figures, drawn for a few test images into the run folder ``out``."""

    # State that a resumed run must get back. A component whose behaviour depends on more
    # than its parameters and buffers (a random generator of its own, a running estimate,
    # an optimiser of its own) returns that state from ``get_extra_state`` as one tensor
    # and takes it back in ``set_extra_state`` -- PyTorch's own ``nn.Module`` contract,
    # which esx extends to the explainers, which are not modules. esx saves it with the
    # weights in ``last.safetensors`` and ``best.safetensors`` at the end of every epoch.
    # ``esx.testing.check_resume`` checks that a component's runs resume exactly.


class Backbone(nn.Module, Component):
    """An image classifier split at the layer an explainer reads.

    ``forward_features``: ``(B, C, H, W)`` → activations ``(B, K, h, w)``;
    ``forward_head``: activations → logits ``(B, num_classes)``.
    """

    def __init__(self, params: Params, context: BuildContext) -> None:
        super().__init__()
        self.params = params

    def forward_features(self, image: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_head(self, features: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, image: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(image))


def find_layer(backbone: nn.Module, name: str) -> nn.Module:
    """The backbone's submodule called ``name`` (``layer3``) or whose dotted name ends with
    it (``model.layer3``); one clear error when there is none or more than one."""
    found = [(n, m) for n, m in backbone.named_modules() if n == name or n.endswith("." + name)]
    exact = [(n, m) for n, m in found if n == name]
    if len(exact) == 1 or len(found) == 1:
        return (exact or found)[0][1]
    if found:
        raise ValueError(
            f"layer {name!r} is ambiguous: {[n for n, _ in found]}; give the full name"
        )
    top = [n.split(".", 1)[-1] for n, _ in backbone.named_modules() if n and n.count(".") <= 1]
    raise ValueError(
        f"layer {name!r} is not a module of the backbone; its top modules: {', '.join(top[:24])}"
    )


def normalise_maps(maps: Tensor, eps: float = 1e-6) -> Tensor:
    """Per-image min-max normalisation of ``(B, h, w)`` maps to [0, 1]:
    ``(m - min) / (max - min + eps)``, what every explainer returns."""
    flat = maps.flatten(1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    return ((flat - lo) / (hi - lo + eps)).view_as(maps)


class Explainer(Component):
    """Maps a model's decision for given classes to ``(B, h, w)`` saliency maps.

    A *differentiable* explainer can be used inside a training loss: given the
    step's ``features`` and ``logits`` it must not run another forward pass, and
    with ``create_graph=True`` its maps carry gradients to the backbone.
    """

    differentiable: ClassVar[bool] = False
    #: True: maps min-max normalised to [0, 1] (Grad-CAM and the like). False: maps are
    #: non-negative and keep their scale (squared input gradients, for RRR); evaluation
    #: normalises them before measuring or drawing them.
    normalised: ClassVar[bool] = True
    #: True: the maps are gradients with respect to the input, so the training step makes
    #: the image require gradients before its one forward and passes that same tensor.
    input_gradient: ClassVar[bool] = False
    #: Set by the trainer before each step: under fp16 mixed precision, a
    #: differentiable explainer multiplies the class score by it before
    #: ``autograd.grad`` and divides the gradients by it, so they do not
    #: underflow (PyTorch's AMP recipe for losses on gradients). 1 otherwise.
    grad_scale: float = 1.0

    def __init__(self, params: Params, context: BuildContext) -> None:
        self.params = params

    def get_extra_state(self) -> Tensor | None:
        """The explainer's state that a resumed run needs, as one tensor (None: none; the
        built-in explainers keep none). See :class:`Component`."""
        return None

    def set_extra_state(self, state: Tensor) -> None:
        """Take back what :meth:`get_extra_state` returned."""

    def bind(self, backbone: Backbone) -> None:
        """Called once the backbone is built, before its first forward: an explainer that
        reads an inner layer registers its forward hooks here (the default does nothing)."""

    def explain(
        self,
        backbone: Backbone,
        image: Tensor,
        classes: Tensor,
        *,
        features: Tensor | None = None,
        logits: Tensor | None = None,
        create_graph: bool = False,
    ) -> Tensor:
        """Return ``(B, h, w)`` maps, each min-max normalised to [0, 1] (or non-negative,
        with :attr:`normalised` False)."""
        raise NotImplementedError

    def match(self, maps: Tensor, targets: Targets) -> tuple[Tensor, Targets]:
        """Bring maps ``(N, h, w)`` and targets ``(N, K, H, W)`` to one resolution.

        The default upsamples the maps bilinearly to the targets' size.
        """
        size = targets.masks.shape[-2:]
        if maps.shape[-2:] != size:
            maps = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)
            maps = maps[:, 0]
        return maps, targets


@dataclass
class AggregatorOutput:
    """What an aggregator returns: targets and, optionally, its own loss term."""

    targets: Targets
    loss: Tensor | None = None
    logs: dict[str, float] = field(default_factory=dict)


class Aggregator(nn.Module, Component):
    """Turns a batch's observed masks into explanation :class:`~esx.types.Targets`.

    An aggregator may own parameters (they join the optimiser) and a loss term
    (added to the objective with weight ``train.lambda_gen``).
    """

    def __init__(self, params: Params, context: BuildContext) -> None:
        super().__init__()
        self.params = params

    def forward(self, batch: Batch) -> AggregatorOutput:
        raise NotImplementedError

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimiser parameter groups; override to give the aggregator its own rate."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "lr": lr}] if params else []

    def prepare(self, loader: Any, device: torch.device) -> None:
        """Fit what must be fitted before the aggregator supervises anything.

        Called once, before the first training step of a fresh run (not on a
        resume: the checkpoint holds what it fitted), with a loader of the
        training split (a shuffled pass per iteration, :class:`~esx.types.Batch`
        on the CPU). Default: nothing. E.g. a generator pre-trained on the
        training annotations, or annotator reliabilities estimated by EM.
        Under several processes every process calls it on the whole split, and
        the main process's state is then given to all.
        """


class Loss(nn.Module, Component):
    """An explanation-supervision loss: ``(maps (N, h, w), Targets) → scalar``.

    ``uses_explanation = False`` marks a loss that needs no map at all (the
    Baseline); the trainer then skips the explainer in training.
    """

    uses_explanation: ClassVar[bool] = True
    #: True: the loss reads the scale of input-gradient maps (RRR), so the recipe's
    #: explainer must have ``input_gradient`` (checked when the run is built).
    needs_input_gradient: ClassVar[bool] = False

    def __init__(self, params: Params, context: BuildContext) -> None:
        super().__init__()
        self.params = params

    def forward(self, maps: Tensor, targets: Targets) -> Tensor:
        raise NotImplementedError


class PixelLoss(Loss):
    """A loss written as a per-pixel term, reduced the same way for every method.

    For each supervised image i and target k, the per-pixel term is averaged
    over the annotated pixels of target k; images then weigh their targets by
    ``targets.weights`` and the result is the mean over images.
    """

    def pixel_loss(self, maps: Tensor, target: Tensor) -> Tensor:
        """``(N, K, h, w)`` maps (broadcast) and targets → ``(N, K, h, w)`` loss."""
        raise NotImplementedError

    def forward(self, maps: Tensor, targets: Targets) -> Tensor:
        per_pixel = self.pixel_loss(maps[:, None].expand_as(targets.masks), targets.masks)
        return weighted_mean(per_pixel, targets.weights, targets.annotated)


def weighted_mean(per_pixel: Tensor, weights: Tensor, annotated: Tensor | None = None) -> Tensor:
    """The standard reduction of a per-pixel loss ``(N, K, h, w)``.

    Mean over the annotated pixels of each target (all pixels when
    ``annotated`` is None), weighted sum over the K targets by ``weights
    (N, K)``, mean over the N images.
    """
    if annotated is None:
        per_target = per_pixel.mean(dim=(-2, -1))
    else:
        ann = annotated.to(per_pixel.dtype)
        per_target = (per_pixel * ann).sum(dim=(-2, -1)) / ann.sum(dim=(-2, -1)).clamp_min(1)
    return (per_target * weights).sum(dim=1).mean()


class Dataset(Component):
    """A source of train / val / test splits of :class:`esx.data.Sample` records.

    ``info`` describes the data; ``split(name)`` returns a
    ``torch.utils.data.Dataset`` whose items are :class:`esx.data.Sample`.
    Built as ``cls(params, context)`` with ``context.data`` None.
    """

    SPLITS: ClassVar[tuple[str, ...]] = ("train", "val", "test")

    def __init__(self, params: Params, context: BuildContext) -> None:
        self.params = params

    @property
    def info(self) -> DataInfo:
        raise NotImplementedError

    def split(self, name: str) -> torch.utils.data.Dataset:
        raise NotImplementedError

    def groups(self, name: str) -> dict[str, Any]:
        """Optional named groups of a split's images, for per-group evaluation.

        Returns group name → a sequence of bools, one per image of split ``name``
        in its order (True: the image belongs to the group). Names are lower-case
        identifiers (``decoy_disagrees``); groups may overlap and need not cover
        the split. Every run writes each group's test accuracy as
        ``accuracy_<name>`` and the lowest as ``worst_group_accuracy`` into
        ``metrics.json``. The default, no groups, makes the classes the groups.
        """
        return {}
