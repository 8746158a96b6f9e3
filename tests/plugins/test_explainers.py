"""The differentiable Grad-CAM: equal to Captum's LayerGradCam, and a training signal."""

from __future__ import annotations

import pytest
import torch
from captum.attr import LayerGradCam

from esx.interfaces import BuildContext, DataInfo
from esx.interfaces import normalise_maps as normalise
from esx.types import Targets
from esx_captum.layer_gradcam import CaptumGradCam, CaptumParams, _Split
from esx_gradcam.gradcam import GradCam, GradCamParams, gradcam
from esx_losses.gradia import Gradia
from esx_timm import TimmBackbone, TimmParams

INFO = DataInfo("t", True, 1, 2, (64, 64), 3, True)
CTX = BuildContext(INFO)


def backbone(arch: str, size: int = 64) -> TimmBackbone:
    torch.manual_seed(0)
    return TimmBackbone(TimmParams(arch=arch, zero_init_last=False), CTX).eval()


@pytest.mark.parametrize("arch", ["resnet18", "test_resnet", "test_efficientnet"])
def test_raw_map_equals_captum(arch):
    bb = backbone(arch)
    x = torch.randn(3, 1, 64, 64)
    classes = torch.tensor([0, 1, 1])
    split = _Split(bb)
    ref = LayerGradCam(split, split.features).attribute(x, target=classes)[:, 0]
    feats = bb.forward_features(x)
    ours = gradcam(feats, bb.forward_head(feats), classes, create_graph=False, relu=False)
    assert (ours - ref).abs().max().item() < 1e-5


def test_explainer_equals_captum_explainer():
    bb = backbone("resnet18")
    x = torch.randn(2, 1, 64, 64)
    c = torch.tensor([1, 0])
    a = GradCam(GradCamParams(), CTX).explain(bb, x, c)
    b = CaptumGradCam(CaptumParams(), CTX).explain(bb, x, c)
    assert (a - b).abs().max().item() < 1e-5
    assert a.min() >= 0 and a.max() <= 1


def test_hand_computed_map():
    """A 1-channel 2x2 activation with a linear head: alpha = w / (h*w)."""
    feats = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], requires_grad=True)
    w = torch.tensor([[0.0], [2.0]])
    logits = feats.mean(dim=(2, 3)) @ w.T
    cam = gradcam(feats, logits, torch.tensor([1]), create_graph=False, relu=False)
    assert torch.allclose(cam, torch.tensor([[[0.5, 1.0], [1.5, 2.0]]]))
    assert torch.allclose(
        normalise(cam, 1e-6), torch.tensor([[[0, 1 / 3], [2 / 3, 1.0]]]), atol=1e-5
    )


@pytest.mark.parametrize("create_graph", [True, False])
def test_explanation_loss_alone_reaches_backbone(create_graph):
    bb = backbone("test_resnet").train()
    x = torch.randn(4, 1, 64, 64)
    feats = bb.forward_features(x)
    logits = bb.forward_head(feats)
    expl = GradCam(GradCamParams(create_graph=create_graph), CTX)
    maps = expl.explain(
        bb, x, torch.ones(4, dtype=torch.long), features=feats, logits=logits, create_graph=True
    )
    target = Targets(
        masks=torch.zeros(4, 1, 64, 64).index_fill_(2, torch.arange(20), 1.0),
        weights=torch.ones(4, 1),
    )
    maps, target = expl.match(maps, target)
    Gradia(Gradia.Params(), CTX)(maps, target).backward()
    stem = next(bb.model.parameters()).grad  # the first conv's weight
    assert stem is not None and stem.abs().sum() > 0
    head = bb.model.get_classifier().weight.grad
    # Through alpha only when create_graph is on (the RES code's variant has it off).
    assert (head is not None and head.abs().sum() > 0) == create_graph


def test_match_resolutions():
    expl = GradCam(GradCamParams(compare_at="map"), CTX)
    maps = torch.rand(2, 4, 4)
    masks = torch.zeros(2, 1, 16, 16)
    masks[:, :, :4, :4] = 1  # exactly the top-left 4x4 block -> top-left cell
    _, t = expl.match(maps, Targets(masks, torch.ones(2, 1)))
    assert t.masks.shape == (2, 1, 4, 4) and t.masks[0, 0, 0, 0] == 1 and t.masks.sum() == 2
    up = GradCam(GradCamParams(compare_at="mask"), CTX)
    m2, t2 = up.match(maps, Targets(masks, torch.ones(2, 1)))
    assert m2.shape == (2, 16, 16) and t2.masks.shape == (2, 1, 16, 16)


@pytest.mark.parametrize(
    ("mode", "cell", "others"),
    [("area", 0.25, 0.0), ("area_max", 1.0, 0.0), ("nearest", 0.0, 0.0)],
)
def test_mask_resize_small_lesion(mode, cell, others):
    """A 2x2 lesion inside a 4x4 cell, hand-computed per mode."""
    expl = GradCam(GradCamParams(compare_at="map", mask_resize=mode), CTX)
    masks = torch.zeros(1, 2, 16, 16)
    masks[0, 0, 1:3, 1:3] = 1  # a quarter of the top-left cell, off its sampled pixel (0, 0)
    # The second mask is empty: area_max must leave it empty (no division by 0).
    _, t = expl.match(torch.rand(1, 4, 4), Targets(masks, torch.ones(1, 2)))
    assert t.masks[0, 0, 0, 0].item() == pytest.approx(cell)
    assert t.masks[0, 0].flatten()[1:].abs().max().item() == others
    assert torch.equal(t.masks[0, 1], torch.zeros(4, 4))


def test_mask_resize_nearest_samples_one_pixel_per_cell():
    expl = GradCam(GradCamParams(compare_at="map", mask_resize="nearest"), CTX)
    masks = torch.zeros(1, 1, 16, 16)
    masks[0, 0, 4, 8] = 1  # nearest samples pixel (4i, 4j): this one is cell (1, 2)
    _, t = expl.match(torch.rand(1, 4, 4), Targets(masks, torch.ones(1, 1)))
    expected = torch.zeros(4, 4)
    expected[1, 2] = 1
    assert torch.equal(t.masks[0, 0], expected)


def test_mask_resize_area_max_keeps_proportions():
    expl = GradCam(GradCamParams(compare_at="map", mask_resize="area_max"), CTX)
    masks = torch.zeros(1, 1, 16, 16)
    masks[0, 0, 0:4, 0:4] = 1  # a full cell
    masks[0, 0, 4:6, 0:4] = 1  # half of the cell below
    _, t = expl.match(torch.rand(1, 4, 4), Targets(masks, torch.ones(1, 1)))
    assert t.masks[0, 0, 0, 0] == 1 and t.masks[0, 0, 1, 0] == pytest.approx(0.5)


@pytest.mark.parametrize("layer", ["layer3", "layer2", "model.layer3"])
def test_layer_map_equals_captum_layer_gradcam(layer):
    bb = backbone("resnet18")
    x = torch.randn(3, 1, 64, 64)
    classes = torch.tensor([0, 1, 1])
    module = bb.model.get_submodule(layer.removeprefix("model."))
    ref = LayerGradCam(bb, module).attribute(x, target=classes)[:, 0].detach()
    ex = GradCam(GradCamParams(layer=layer), CTX)
    ex.bind(bb)
    feats = bb.forward_features(x)  # the step's forward: the hook keeps layer3's output
    ours = ex.explain(bb, x, classes, features=feats, logits=bb.forward_head(feats))
    assert ours.shape == ref.shape and ref.shape[-1] == {"layer2": 8}.get(layer, 4)
    assert (ours - normalise(ref, 1e-6)).abs().max().item() < 1e-5
    # without the step's forward (evaluation), and without bind: the same maps
    fresh = GradCam(GradCamParams(layer=layer), CTX).explain(bb, x, classes)
    assert (fresh - ours).abs().max().item() < 1e-5


def test_layer_guidance_reaches_the_backbone_in_one_forward():
    bb = backbone("test_resnet").train()
    ex = GradCam(GradCamParams(layer="layer1"), CTX)
    ex.bind(bb)
    runs = []
    bb.model.conv1.register_forward_hook(lambda *a: runs.append(1))
    x = torch.randn(4, 1, 64, 64)
    feats = bb.forward_features(x)
    logits = bb.forward_head(feats)
    maps = ex.explain(
        bb, x, torch.ones(4, dtype=torch.long), features=feats, logits=logits, create_graph=True
    )
    assert len(runs) == 1  # the step's forward only: explain ran none of its own
    maps.sum().backward()
    assert next(bb.model.parameters()).grad.abs().sum() > 0


def test_unknown_layer_is_one_clear_error():
    from esx.interfaces import find_layer

    bb = backbone("resnet18")
    with pytest.raises(ValueError, match=r"layer 'layer9' is not a module.*layer3"):
        GradCam(GradCamParams(layer="layer9"), CTX).bind(bb)
    with pytest.raises(ValueError, match="ambiguous"):
        find_layer(bb, "conv1")
