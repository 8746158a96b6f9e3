"""Mixed precision and memory format: the AMP paths run; the score scaling is exact."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from esx.cli import app
from esx.plugins import registry
from esx.runtime import FP16_EXPLAIN_SCALE, choose_precision
from esx.testing import context, tiny_batch


def _explainer_and_backbone():
    reg = registry()
    ctx = context()
    bb = reg.get("backbone", "timm")(reg.get("backbone", "timm").Params(arch="resnet18"), ctx)
    ex = reg.get("explainer", "gradcam")(reg.get("explainer", "gradcam").Params(), ctx)
    return ex, bb.train(), tiny_batch()


def test_score_scale_is_undone_exactly():
    ex, bb, batch = _explainer_and_backbone()
    feats = bb.forward_features(batch.image)
    logits = bb.forward_head(feats)
    plain = ex.explain(
        bb, batch.image, batch.label, features=feats, logits=logits, create_graph=True
    )
    ex.grad_scale = FP16_EXPLAIN_SCALE
    scaled = ex.explain(
        bb, batch.image, batch.label, features=feats, logits=logits, create_graph=True
    )
    torch.testing.assert_close(scaled, plain, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_mixed_precision_maps_follow_fp32(dtype):
    ex, bb, batch = _explainer_and_backbone()
    bb.eval()  # batch statistics would differ between the two passes' dtypes only by rounding
    ref = ex.explain(bb, batch.image, batch.label)
    ex.grad_scale = FP16_EXPLAIN_SCALE if dtype == torch.float16 else 1.0
    with torch.autocast("cpu", dtype=dtype):
        low = ex.explain(bb, batch.image, batch.label)
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    assert (low - ref).abs().mean() < 0.05


def test_auto_precision():
    assert choose_precision("auto", torch.device("cpu")) is None
    assert choose_precision("fp16", torch.device("cpu")) == torch.float16
    assert choose_precision("fp32", torch.device("cuda")) is None


@pytest.mark.parametrize("precision, channels_last", [("bf16", False), ("fp16", True)])
def test_mixed_precision_run(tmp_path, tiny_recipe, precision, channels_last):
    import yaml

    recipe, out = tmp_path / "r.yaml", tmp_path / "run"
    recipe.write_text(yaml.safe_dump(tiny_recipe))
    res = CliRunner().invoke(
        app,
        [
            "run",
            str(recipe),
            "--out",
            str(out),
            "--quiet",
            "--set",
            f"train.precision={precision}",
            "--set",
            f"train.channels_last={str(channels_last).lower()}",
        ],
    )
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run"]["precision"] == str(
        {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    )
    history = (out / "history.csv").read_text()
    assert "nan" not in history.lower() and "inf" not in history.lower()
