"""Losses: none, GRADIA, HAICS, RES-G, RES-L, energy, RRR: hand-computed cases and oracles."""

from __future__ import annotations

import math

import pytest
import torch

from esx.interfaces import BuildContext, DataInfo
from esx.types import Targets
from esx_losses.energy import Energy
from esx_losses.gradia import Gradia
from esx_losses.haics import Haics
from esx_losses.none import NoExplanationLoss
from esx_losses.res_g import ResG, gaussian_blur3
from esx_losses.res_l import ResL
from esx_losses.robust_boundary import CANDIDATE_OFFSET, best_threshold, threshold_scores
from esx_losses.rrr import Rrr

CTX = BuildContext(DataInfo("t", True, 1, 2, (4, 4), 3, True))
MAP = torch.tensor(
    [[[0.0, 0.5, 1.0, 0.25], [0.75, 0.5, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5], [1.0, 0.0, 0.25, 0.75]]]
)
MASK = torch.tensor(
    [[[[0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 1.0]]]]
)


def _bce(p: float, y: float, eps: float = 1e-4) -> float:
    p = min(max(p, eps), 1 - eps)
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_haics_hand_computed_and_masked():
    loss = Haics(Haics.Params(), CTX)
    ref = (
        sum(_bce(MAP[0].flatten()[i].item(), MASK[0, 0].flatten()[i].item()) for i in range(16))
        / 16
    )
    assert loss(MAP, Targets(MASK, torch.ones(1, 1))).item() == pytest.approx(ref, rel=1e-5)
    # only the first row annotated: the other 12 pixels must not count
    ann = torch.zeros_like(MASK, dtype=torch.bool)
    ann[..., 0, :] = True
    ref_row = sum(_bce(MAP[0, 0, j].item(), MASK[0, 0, 0, j].item()) for j in range(4)) / 4
    got = loss(MAP, Targets(MASK, torch.ones(1, 1), ann)).item()
    assert got == pytest.approx(ref_row, rel=1e-5)
    # changing unannotated pixels changes nothing
    other = MAP.clone()
    other[0, 1:] = 0.0
    assert loss(other, Targets(MASK, torch.ones(1, 1), ann)).item() == pytest.approx(got)
    # a positive pixel at exactly 0 costs -log(eps), not the public code's 100
    worst = Haics(Haics.Params(), CTX)(
        torch.zeros(1, 1, 1), Targets(torch.ones(1, 1, 1, 1), torch.ones(1, 1))
    )
    assert worst.item() == pytest.approx(-math.log(1e-4), rel=1e-4)


def _brute_force(values: list[float], labels: list[int]) -> tuple[float, float]:
    """The public code's O(n²) search: first best candidate in candidate order."""
    neg = [v for v, y in zip(values, labels, strict=True) if y < 0]
    pos = [v for v, y in zip(values, labels, strict=True) if y > 0]
    best, best_a = -1.0, None
    for a in [v + CANDIDATE_OFFSET for v in neg] + pos:
        s = (sum(v < a for v in neg) / len(neg) if neg else 0.0) + (
            sum(v >= a for v in pos) / len(pos) if pos else 0.0
        )
        if s > best:
            best, best_a = s, a
    return best, best_a


@pytest.mark.parametrize("seed", range(8))
def test_threshold_search_equals_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    n = 60
    values = (torch.rand(n, generator=g) * 10).round() / 10  # ties on purpose
    labels = torch.randint(-1, 2, (n,), generator=g)
    best, a = _brute_force(values.tolist(), labels.tolist())
    cand, score = threshold_scores(values.double(), labels)
    assert score.max().item() == pytest.approx(best)
    assert best_threshold(values.double(), labels).item() == pytest.approx(a)


def test_res_g_hand_computed():
    p = ResG.Params(eta=0.1)
    loss = ResG(p, CTX)
    t = Targets(MASK, torch.ones(1, 1))
    imputed = gaussian_blur3(MASK)
    imputed = imputed / (imputed.amax() + 1e-6)
    l_d = (MAP[:, None] - imputed).abs().mean()
    y = 2 * MASK - 1
    a = best_threshold(MAP[:, None].expand_as(y), y)
    l_b = torch.relu((torch.tanh(5 * (MAP[:, None] - a)) - y).abs().mean() - 0.1)
    assert loss(MAP, t).item() == pytest.approx((l_d + l_b).item(), rel=1e-5)
    # the blur is OpenCV's [1/4, 1/2, 1/4] kernel: a lone pixel away from the border
    one = torch.zeros(1, 1, 5, 5)
    one[..., 2, 2] = 1
    expected = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16
    assert torch.allclose(gaussian_blur3(one)[0, 0, 1:4, 1:4], expected)


def test_res_l_starts_as_res_g_and_learns():
    p = ResL.Params()
    loss = ResL(p, CTX)
    t = Targets(MASK, torch.ones(1, 1))
    g_value = ResG(ResG.Params(), CTX)(MAP, t).item()
    # at init the learned imputation is the (min-max normalised) Gaussian
    assert loss(MAP, t).item() == pytest.approx(g_value, abs=0.05)
    loss(MAP, t).backward()
    assert loss.imputation.weight.grad is not None and loss.imputation.weight.grad.abs().sum() > 0


def test_gradia_hand_computed_4x4():
    # |MAP - MASK| row sums: 0.75, 0.75, 2.0, 0.5 -> 4.0 over 16 pixels
    got = Gradia(Gradia.Params(), CTX)(MAP, Targets(MASK, torch.ones(1, 1))).item()
    assert got == pytest.approx(0.25)


def _reflect(i: int, n: int) -> int:
    return -i if i < 0 else (2 * (n - 1) - i if i >= n else i)


def test_res_l_hand_computed_4x4():
    """RES-L at initialisation, in plain Python: reflect-padded 3x3 Gaussian of the mask,
    min-max normalised, L1 to the map, plus the boundary term at the brute-force threshold."""
    m = MASK[0, 0].tolist()
    e = MAP[0].tolist()
    k = [0.25, 0.5, 0.25]
    conv = [
        [
            sum(
                k[di + 1] * k[dj + 1] * m[_reflect(i + di, 4)][_reflect(j + dj, 4)]
                for di in (-1, 0, 1)
                for dj in (-1, 0, 1)
            )
            for j in range(4)
        ]
        for i in range(4)
    ]
    lo, hi = min(map(min, conv)), max(map(max, conv))
    imputed = [[(c - lo) / (hi - lo + 1e-6) for c in row] for row in conv]
    l_d = sum(abs(e[i][j] - imputed[i][j]) for i in range(4) for j in range(4)) / 16
    y = [[1 if m[i][j] >= 0.5 else -1 for j in range(4)] for i in range(4)]
    values = [e[i][j] for i in range(4) for j in range(4)]
    labels = [y[i][j] for i in range(4) for j in range(4)]
    _, a = _brute_force(values, labels)
    l_b = max(
        0.0,
        sum(abs(math.tanh(5 * (v - a)) - t) for v, t in zip(values, labels, strict=True)) / 16
        - 0.1,
    )
    got = ResL(ResL.Params(eta=0.1), CTX)(MAP, Targets(MASK, torch.ones(1, 1))).item()
    assert got == pytest.approx(l_d + l_b, rel=1e-5)


def test_gradia_hand_computed():
    maps = torch.tensor([[[0.0, 0.5], [1.0, 0.25]]])
    target = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])
    # |0-0| + |0.5-1| + |1-1| + |0.25-0| = 0.75 over 4 pixels
    loss = Gradia(Gradia.Params(), CTX)(maps, Targets(target, torch.ones(1, 1)))
    assert loss.item() == pytest.approx(0.1875)
    # two targets weighted 0.25 / 0.75; the second is all ones: mean |m-1| = 0.5625
    two = torch.cat([target, torch.ones_like(target)], dim=1)
    loss2 = Gradia(Gradia.Params(), CTX)(maps, Targets(two, torch.tensor([[0.25, 0.75]])))
    assert loss2.item() == pytest.approx(0.25 * 0.1875 + 0.75 * 0.5625)
    # unannotated pixels are ignored
    ann = torch.tensor([[[[True, True], [False, False]]]])
    loss3 = Gradia(Gradia.Params(), CTX)(maps, Targets(target, torch.ones(1, 1), ann))
    assert loss3.item() == pytest.approx(0.25)


def test_none_loss_is_zero():
    loss = NoExplanationLoss(NoExplanationLoss.Params(), CTX)
    assert not loss.uses_explanation
    assert loss(torch.rand(2, 4, 4), Targets(torch.rand(2, 1, 4, 4), torch.ones(2, 1))) == 0


def test_res_soft_targets_keep_confidences_below_one_half():
    masks = torch.zeros(1, 1, 6, 6)
    masks[..., :, :3] = 1.0
    masks[..., :, 3:] = 0.4  # a soft region an aggregator is unsure about
    t = Targets(masks, torch.ones(1, 1))
    hard = ResG(ResG.Params(), CTX).impute((masks >= 0.5).float())
    soft = ResG(ResG.Params(soft_targets=True), CTX).impute(masks)
    assert hard[..., :, 5].max() == 0  # binarised: 0.4 counts as background
    assert soft[..., :, 5].min() == pytest.approx(0.4, abs=1e-3)  # kept, relative to the max
    maps = torch.rand(1, 6, 6)
    for cls in (ResG, ResL):
        a = cls(cls.Params(), CTX)(maps, t)
        b = cls(cls.Params(soft_targets=True), CTX)(maps, t)
        assert torch.isfinite(a) and torch.isfinite(b) and a != b


def test_energy_hand_computed_4x4():
    # MAP sums to 8.0; on the mask: 0.5 + 1 + 0.75 + 0.5 + 1 + 1 + 0.75 = 5.5
    loss = Energy(Energy.Params(), CTX)
    assert loss(MAP, Targets(MASK, torch.ones(1, 1))).item() == pytest.approx(1 - 5.5 / 8)
    # a map inside the mask: 0; outside it: 1
    assert loss(MASK[:, 0], Targets(MASK, torch.ones(1, 1))).item() == pytest.approx(0, abs=1e-6)
    assert loss(1 - MASK[:, 0], Targets(MASK, torch.ones(1, 1))).item() == pytest.approx(1)
    # two targets weighted 0.25 / 0.75: the map inside the first, outside the second
    two = torch.cat([MASK, 1 - MASK], dim=1)
    value = loss(MASK[:, 0], Targets(two, torch.tensor([[0.25, 0.75]]))).item()
    assert value == pytest.approx(0.75)
    # only the first row annotated: energy 1.75 there, 1.5 of it on the mask
    ann = torch.zeros_like(MASK, dtype=torch.bool)
    ann[..., 0, :] = True
    assert loss(MAP, Targets(MASK, torch.ones(1, 1), ann)).item() == pytest.approx(1 - 1.5 / 1.75)


def test_rrr_hand_computed_4x4():
    # the map's mass outside the mask: 8.0 - 5.5 = 2.5, over 16 - 7 = 9 pixels
    t = Targets(MASK, torch.ones(1, 1))
    assert Rrr(Rrr.Params(), CTX)(MAP, t).item() == pytest.approx(2.5)
    assert Rrr(Rrr.Params(reduction="mean"), CTX)(MAP, t).item() == pytest.approx(2.5 / 9)
    assert Rrr(Rrr.Params(), CTX)(MAP * MASK[:, 0], t).item() == 0  # nothing outside


def _backbone():
    from esx_timm import TimmBackbone, TimmParams

    torch.manual_seed(0)
    ctx = BuildContext(DataInfo("t", True, 1, 2, (64, 64), 3, True))
    return TimmBackbone(TimmParams(arch="test_resnet", zero_init_last=False), ctx).train(), ctx


def test_energy_through_gradcam_reaches_the_backbone():
    from esx_gradcam.gradcam import GradCam, GradCamParams

    bb, ctx = _backbone()
    x = torch.randn(2, 1, 64, 64)
    feats = bb.forward_features(x)
    logits = bb.forward_head(feats)
    ex = GradCam(GradCamParams(compare_at="mask"), ctx)
    maps = ex.explain(bb, x, torch.ones(2, dtype=torch.long), features=feats, logits=logits,
                      create_graph=True)  # fmt: skip
    masks = torch.zeros(2, 1, 64, 64)
    masks[..., 8:24, 8:24] = 1
    maps, t = ex.match(maps, Targets(masks, torch.ones(2, 1)))
    Energy(Energy.Params(), ctx)(maps, t).backward()
    assert next(bb.model.parameters()).grad.abs().sum() > 0


def test_rrr_through_input_gradients_reaches_the_backbone_in_one_forward():
    from esx_gradcam.input_gradient import InputGradient

    bb, ctx = _backbone()
    x = torch.randn(2, 1, 64, 64).requires_grad_(True)  # as the step makes it
    feats = bb.forward_features(x)
    logits = bb.forward_head(feats)
    ex = InputGradient(InputGradient.Params(), ctx)
    maps = ex.explain(bb, x, torch.ones(2, dtype=torch.long), features=feats, logits=logits,
                      create_graph=True)  # fmt: skip
    # the oracle: the input gradient of the summed log-probabilities, by autograd on its own
    (ref,) = torch.autograd.grad(logits.log_softmax(1).sum(), x, retain_graph=True)
    assert torch.allclose(maps, ref.pow(2).sum(1), atol=1e-7)
    masks = torch.zeros(2, 1, 64, 64)
    masks[..., 8:24, 8:24] = 1
    Rrr(Rrr.Params(), ctx)(maps, Targets(masks, torch.ones(2, 1))).backward()
    assert next(bb.model.parameters()).grad.abs().sum() > 0
