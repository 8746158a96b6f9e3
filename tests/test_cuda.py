"""Every CUDA path: training steps in fp32, bf16 and fp16 with a scaler, Grad-CAM on the GPU
equal to the CPU's, MAGI's alignment equal to scipy's, kill-and-resume, channels_last.

Marked ``cuda`` and skipped, with the reason, where no CUDA GPU is visible (CI has none);
``benchmarks/gpu_check.sh`` runs them on a lent GPU.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from scipy.optimize import linear_sum_assignment

from esx.plugins import registry
from esx.recipe import validate_recipe
from esx.testing import context, tiny_batch
from esx.trainer import Trainer

from conftest import ROOT

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU is visible"),
]

#: Grad-CAM on CUDA against the CPU, fp32 on the same weights and batch (cuDNN's
#: convolution algorithms sum in another order; maps are normalised to [0, 1])
MAP_ATOL = 1e-4


def _recipe(tiny_recipe: dict, aggregator: str, loss: str, precision: str) -> dict:
    r = copy.deepcopy(tiny_recipe)
    r["device"] = "cuda"
    r["aggregator"] = {"name": aggregator}
    r["loss"] = {"name": loss}
    r["train"]["precision"] = precision
    return r


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize(
    "aggregator, loss",
    [("consensus", "none"), ("consensus", "gradia"), ("consensus", "res_l"), ("magi", "gradia")],
)
def test_training_step(tiny_recipe, tmp_path, aggregator, loss, precision):
    t = Trainer(
        validate_recipe(_recipe(tiny_recipe, aggregator, loss, precision), registry()), tmp_path
    )
    assert t.rt.device.type == "cuda" and (t.scaler is not None) == (precision == "fp16")
    before = [p.detach().clone() for p in t.c.backbone.parameters()]
    for seed in range(3):
        logs = t.step(tiny_batch(b=4, annotators=4, size=64, seed=seed).to("cuda"))
        assert all(torch.isfinite(torch.tensor(v)) for v in logs.values()), logs
    assert any(
        not torch.equal(a, b) for a, b in zip(before, t.c.backbone.parameters(), strict=True)
    )


def test_gradcam_on_cuda_equals_the_cpu():
    reg = registry()
    ctx = context(size=64)
    bb_cls, ex_cls = reg.get("backbone", "timm"), reg.get("explainer", "gradcam")
    torch.manual_seed(0)
    bb = bb_cls(bb_cls.Params(arch="resnet18", zero_init_last=False), ctx).eval()
    ex = ex_cls(ex_cls.Params(), ctx)
    batch = tiny_batch(size=64)
    cpu = ex.explain(bb, batch.image, batch.label)
    gpu = ex.explain(bb.cuda(), batch.image.cuda(), batch.label.cuda())
    assert (gpu.cpu() - cpu).abs().max() < MAP_ATOL


@pytest.mark.parametrize("u", [2, 4, 8])
def test_magi_alignment_on_cuda_equals_scipy(u):
    from esx_magi.alignment import align

    g = torch.Generator().manual_seed(u)
    cost = torch.rand(16, u, u, generator=g)
    valid = torch.rand(16, u, generator=g) > 0.3
    valid[:, 0] = True
    got = align(cost.cuda(), valid.cuda()).cpu()
    for i in range(16):
        rows = valid[i].nonzero().flatten()
        r, c = linear_sum_assignment(cost[i, rows].numpy())
        best = cost[i, rows][r, c].sum()
        assert torch.isclose(cost[i, rows, got[i, rows]].sum(), best, atol=1e-6)


def test_channels_last_gives_the_same_loss(tiny_recipe, tmp_path):
    losses = []
    for last in (False, True):
        r = _recipe(tiny_recipe, "consensus", "gradia", "fp32")
        r["train"]["channels_last"] = last
        torch.backends.cudnn.deterministic = True
        t = Trainer(validate_recipe(r, registry()), tmp_path / str(last))
        losses.append(t.step(tiny_batch(b=4, size=64).to("cuda")))
    for k in losses[0]:
        assert losses[0][k] == pytest.approx(losses[1][k], rel=1e-4, abs=1e-5), k


def test_kill_and_resume_on_cuda(tmp_path, tiny_recipe):
    r = _recipe(tiny_recipe, "consensus", "gradia", "fp32")
    r["data"]["params"].update(n_train=64)
    r["train"].update(epochs=3, batch_size=4)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(r))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    full = tmp_path / "full"
    subprocess.run(
        [sys.executable, "-m", "esx", "run", str(recipe), "--out", str(full), "--quiet"],
        env=env,
        check=True,
        timeout=600,
    )
    cut = tmp_path / "cut"
    proc = subprocess.Popen(
        [sys.executable, "-m", "esx", "run", str(recipe), "--out", str(cut), "--quiet"], env=env
    )
    deadline = time.time() + 300
    while not (cut / "last.safetensors").exists() and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    subprocess.run(
        [sys.executable, "-m", "esx", "run", "--resume", str(cut), "--quiet"],
        env=env,
        check=True,
        timeout=600,
    )
    a, b = (json.loads((f / "metrics.json").read_text()) for f in (full, cut))
    assert a["test"] == pytest.approx(b["test"], abs=1e-6)
    assert a["run"]["device"].startswith("cuda")
