"""MAGI: exact alignment, generation loss, targets, report metrics against oracles."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from skimage.metrics import structural_similarity

from esx.interfaces import BuildContext, DataInfo
from esx.testing import tiny_batch
from esx_magi.alignment import align
from esx_magi.magi import Magi
from esx_magi.report import ssim

from conftest import ROOT


@pytest.mark.parametrize("u", range(1, 9))
def test_alignment_equals_scipy_optimum(u):
    g = torch.Generator().manual_seed(u)
    b = 12 if u < 8 else 3
    cost = torch.rand(b, u, u, generator=g)
    valid = torch.rand(b, u, generator=g) > 0.4
    valid[0] = True  # a full row
    valid[1] = False  # nothing observed
    assign = align(cost, valid)
    for i in range(b):
        assert sorted(assign[i].tolist()) == list(range(u))  # distinct annotators
        rows = valid[i].nonzero().flatten().numpy()
        if len(rows) == 0:
            continue
        sub = cost[i].numpy()[rows]
        r, c = linear_sum_assignment(sub)
        ours = cost[i][torch.from_numpy(rows), assign[i][rows]].sum().item()
        assert ours == pytest.approx(sub[r, c].sum(), abs=1e-6)


def _magi(u: int = 3, **kw) -> Magi:
    ctx = BuildContext(DataInfo("t", True, 1, 2, (32, 32), u, True))
    torch.manual_seed(0)
    return Magi(Magi.Params(gen_size=16, width=4, **kw), ctx)


def test_generation_loss_trains_generator_not_targets():
    m = _magi().train()
    b = tiny_batch(b=4, annotators=3, size=32)
    out = m(b)
    assert out.targets.masks.shape == (4, 1, 32, 32)
    assert out.targets.weights[:, 0].tolist() == b.annotated.float().tolist()
    assert not out.targets.masks.requires_grad  # detached by default
    out.loss.backward()
    assert m.generator.annotator.grad is not None and m.generator.annotator.grad.abs().sum() > 0
    assert m.generator.enc_image[0].weight.grad.abs().sum() > 0


def test_weighted_targets_follow_learned_weights():
    m = _magi(targets="weighted").train()
    b = tiny_batch(b=4, annotators=3, size=32)
    t = m(b).targets
    assert t.masks.shape == (4, 3, 32, 32)
    rows = b.annotated
    assert torch.allclose(t.weights[rows].sum(1), torch.ones(int(rows.sum())))
    assert (t.weights[~rows] == 0).all()
    (t.masks * t.weights[..., None, None]).sum().backward()
    assert m.omega.grad is not None and m.omega.grad.abs().sum() > 0


def test_untrained_generator_reproduces_the_vote():
    m = _magi().eval()
    b = tiny_batch(b=4, annotators=3, size=16)
    from esx.masks import vote

    probs, _, _ = m.generate(b)
    t = vote(b.masks, b.mask_valid)
    agree = ((probs > 0.5).float() == t).float().mean()
    assert agree > 0.9


@pytest.mark.parametrize("skip", ["image+vote", "image", "vote"])
def test_decoder_sees_only_what_skip_names(skip):
    """With ``residual: false`` the vote reaches the masks through the stem only when
    ``skip`` names it (and always through its latent); the image likewise."""
    m = _magi(skip=skip, residual=False).eval()
    g = m.generator
    b = tiny_batch(b=2, annotators=3, size=16)
    image = torch.randn(2, 1, 16, 16, requires_grad=True)
    t = torch.rand(2, 1, 16, 16, requires_grad=True)
    assert g(image, t)[0].shape == (2, 3, 16, 16)
    assert g.stem[0].in_channels == {"image+vote": 2, "image": 1, "vote": 1}[skip]
    # Zeroing the encoders leaves the stem as the only path from the inputs.
    for enc in (g.enc_image, g.enc_annotation):
        for p in enc.parameters():
            p.data.zero_()
    logits, _ = g(image, t)
    grad_i, grad_t = torch.autograd.grad(logits.sum(), [image, t])
    assert (grad_i.abs().sum() > 0) == (skip != "vote")
    assert (grad_t.abs().sum() > 0) == (skip != "image")
    assert m(b).targets.masks.shape == (2, 1, 16, 16)


def test_residual_adds_the_scaled_vote_to_the_logits():
    torch.manual_seed(0)
    image, t = torch.randn(2, 1, 16, 16), (torch.rand(2, 1, 16, 16) > 0.5).float()
    with_res, without = _magi(residual=True).generator.eval(), _magi(residual=False).generator
    without.load_state_dict(with_res.state_dict())
    a, _ = with_res(image, t)
    b, _ = without.eval()(image, t)
    assert torch.allclose(a - b, (3.0 * (2 * t - 1)).expand_as(a))


def test_channels_last_head_computes_the_same_logits_and_gradients():
    torch.manual_seed(0)
    image, t = torch.randn(3, 1, 16, 16), (torch.rand(3, 1, 16, 16) > 0.5).float()
    g = _magi().generator.eval()
    out = {}
    for layout in (False, True):
        g.channels_last = layout
        g.zero_grad()
        logits, kl = g(image, t)
        (logits.sigmoid().mean() + kl.mean()).backward()
        grads = [p.grad.clone() for p in g.parameters()]
        out[layout] = (logits.detach(), grads)
    assert out[True][0].is_contiguous()  # reshaped back to (B, U, R, R) for the loss
    assert torch.allclose(out[True][0], out[False][0], atol=1e-5)
    for a, b in zip(out[True][1], out[False][1], strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    # the weights keep their layout (checkpoints store them as they are)
    assert all(p.is_contiguous() for p in g.parameters())


def test_unknown_skip_is_a_recipe_error():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="skip"):
        Magi.Params(skip="latent")


def test_warmup_supervises_nothing():
    m = _magi(warmup_steps=2).train()
    b = tiny_batch(b=4, annotators=3, size=32)
    assert m(b).targets.weights.sum() == 0
    assert m(b).targets.weights.sum() == 0
    assert m(b).targets.weights.sum() > 0


def test_ssim_matches_skimage():
    g = np.random.default_rng(0)
    a = (g.random((40, 40)) > 0.5).astype(np.float64)
    b = np.clip(a + g.normal(0, 0.3, a.shape), 0, 1)
    ref = structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
    )
    ours = ssim(torch.tensor(a)[None, None].float(), torch.tensor(b)[None, None].float())
    assert ours.item() == pytest.approx(ref, abs=1e-4)


def test_magi_run_writes_report_and_figures(tmp_path):
    from typer.testing import CliRunner

    from esx.cli import app

    out = tmp_path / "run"
    res = CliRunner().invoke(
        app, ["run", str(ROOT / "recipes" / "magi_smoke.yaml"), "--out", str(out), "--quiet"]
    )
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())["aggregator"]
    for side in ("noisy", "generated"):
        assert set(m["generation"][side]) == {"mse", "bce", "ssim"}
    assert len(m["annotators"]) == 4
    assert {"weight", "area_vs_truth", "stands_for", "agreement"} <= set(m["annotators"][0])
    assert "l1_generated" in m["imputation"]
    assert (out / "magi_gallery.png").is_file()
    # consensus targets never use the weights (they stay uniform): no figure of them
    assert not (out / "magi_weights.png").exists()
    weighted = tmp_path / "weighted"
    res = CliRunner().invoke(
        app,
        ["run", str(ROOT / "recipes" / "magi_smoke.yaml"), "--out", str(weighted), "--quiet",
         "--set", "aggregator.params.targets=weighted", "--set", "train.epochs=1"],
    )  # fmt: skip
    assert res.exit_code == 0 and (weighted / "magi_weights.png").is_file(), res.output


def test_generator_has_its_own_learning_rate(registry, tiny_recipe, tmp_path):
    from esx.recipe import validate_recipe
    from esx.trainer import Trainer

    tiny_recipe["aggregator"] = {"name": "magi", "params": {"lr": 0.005, "gen_size": 16}}
    t = Trainer(validate_recipe(tiny_recipe, registry), tmp_path)
    lrs = {id(p): g["lr"] for g in t.opt.param_groups for p in g["params"]}
    magi = t.c.aggregator
    assert lrs[id(magi.generator.annotator)] == 0.005
    assert lrs[id(magi.omega)] == tiny_recipe["train"]["lr"]
    assert lrs[id(next(t.c.backbone.parameters()))] == tiny_recipe["train"]["lr"]
    n_opt = sum(len(g["params"]) for g in t.opt.param_groups)
    n_all = sum(1 for m in (t.c.backbone, magi, t.c.loss) for _ in m.parameters())
    assert n_opt == n_all


def test_pretraining_trains_the_generator_alone_for_its_steps():
    m = _magi(pretrain_steps=5)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    batches = [tiny_batch(b=4, annotators=3, size=32, seed=s) for s in range(2)]
    calls, generation = [], m._generation
    m._generation = lambda b: calls.append(1) or generation(b)
    m.prepare(batches, torch.device("cpu"))  # 2 batches a pass: 3 passes, the last cut short
    assert len(calls) == 5
    after = m.state_dict()
    assert not torch.equal(after["generator.annotator"], before["generator.annotator"])
    assert torch.equal(after["omega"], before["omega"])  # ω learns from L_exp only
    assert int(m.steps) == 0  # warmup_steps counts the run's steps, not these


def test_pretraining_needs_annotations_and_is_off_by_default():
    from dataclasses import replace

    from esx.errors import DataError

    b = tiny_batch(b=4, annotators=3, size=32)
    off = _magi()
    before = {k: v.clone() for k, v in off.state_dict().items()}
    off.prepare([b], torch.device("cpu"))
    assert all(torch.equal(v, before[k]) for k, v in off.state_dict().items())
    bare = replace(b, mask_valid=torch.zeros_like(b.mask_valid))
    with pytest.raises(DataError, match="pretrain_steps=0"):
        _magi(pretrain_steps=3).prepare([bare], torch.device("cpu"))


def test_the_trainer_prepares_a_fresh_run_once_and_not_a_resumed_one(
    registry, tiny_recipe, tmp_path, monkeypatch
):
    from esx.recipe import validate_recipe
    from esx.trainer import Trainer

    sizes = []
    prepare = Magi.prepare

    def spy(self, loader, device):
        sizes.append(len(loader.dataset))
        prepare(self, loader, device)

    monkeypatch.setattr(Magi, "prepare", spy)
    tiny_recipe["aggregator"] = {
        "name": "magi",
        "params": {"gen_size": 16, "width": 4, "pretrain_steps": 2},
    }
    tiny_recipe["train"].update(epochs=1, keep_last_checkpoint=True)  # to resume from it
    recipe = validate_recipe(tiny_recipe, registry)
    Trainer(recipe, tmp_path).run()
    assert sizes == [tiny_recipe["data"]["params"]["n_train"]]
    Trainer(recipe, tmp_path).run(resume=True)  # from last.safetensors: nothing to prepare
    assert len(sizes) == 1
    assert "magi pre-training: step 2 of 2" in (tmp_path / "run.log").read_text()


def test_normalized_cost_is_scale_free():
    m = _magi(gen_loss="normalized_l1")
    obs = torch.zeros(1, 1, 16, 16)
    obs[..., 4:8, 4:8] = 1
    empty = torch.zeros(1, 1, 16, 16)
    cost_empty = m.cost(obs, empty)[0, 0, 0].item()
    # predicting nothing costs |E| / (|E| + 1) ~ 1, whatever the mask's size
    assert cost_empty == pytest.approx(16 / 17)
    assert _magi().cost(obs, empty)[0, 0, 0].item() == pytest.approx(16 / 256)


def test_crop_round_trip_and_identity_without_masks():
    """With ``crop``, generation space is a square around the observed masks; mapping a crop
    back to the image returns the masks, and an image without masks keeps the whole frame."""
    from esx.testing import context, tiny_batch
    from esx_magi.magi import MagiParams

    m = Magi(MagiParams(crop=True, gen_size=16), context(annotators=3, size=32))
    b = tiny_batch(size=32)
    b.masks.zero_()
    b.masks[:, :, 10:14, 18:22] = 1
    b.masks *= b.mask_valid[..., None, None]
    theta = m._crop_theta(b)
    _, _, observed = m.generate(b)
    pos = b.label.bool()
    # 4x4 box, crop side 2 x 4 = 8 px at 16 x 16: the mask fills a quarter of the crop
    assert torch.allclose(observed[pos][b.mask_valid[pos]].mean((-2, -1)), torch.tensor(0.25))
    back = m.to_image(observed, b)
    assert torch.equal((back > 0.5).float(), b.masks)
    neg = ~pos
    assert torch.equal(
        theta[neg], torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(int(neg.sum()), 2, 3)
    )


def test_magi_with_crops_keeps_the_contract():
    from esx import testing

    testing.check_aggregator(Magi, {"gen_size": 16, "width": 4, "crop": True})
