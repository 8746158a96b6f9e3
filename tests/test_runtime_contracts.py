"""A third-party component that breaks its contract or crashes is named, with its package.

Each breakage a real plugin makes is planted in an aggregator registered under
a third-party package: the run stops with one message naming the plugin and
the rule (no traceback on the terminal, the traceback in run.log), the run
folder says ``failed`` and has no metrics, and after the fix ``--resume``
finishes the run.
"""

from __future__ import annotations

import json
from typing import Literal

import pytest
import yaml
from typer.testing import CliRunner

import esx
import esx.errors
import esx.plugins
from esx.cli import build_app
from esx.interfaces import Aggregator, AggregatorOutput, Params
from esx.plugins import build_registry
from esx.types import Targets

FIXED = {"crash": False}


class BrokenParams(Params):
    mode: Literal["no_k", "weights_b", "half_res", "times3", "sum2", "crash_epoch2"] = "no_k"


class Broken(Aggregator):
    """The consensus of the valid masks, broken on purpose in one of six ways."""

    Params = BrokenParams

    def __init__(self, params, context):
        super().__init__(params, context)
        self.calls = 0

    def forward(self, batch):
        valid = batch.mask_valid.float()
        votes = (batch.masks * valid[..., None, None]).sum(1, keepdim=True)
        masks = (votes >= 0.5 * valid.sum(1).clamp_min(1)[:, None, None, None]).float()
        weights = batch.annotated.float()[:, None]
        mode = self.params.mode
        self.calls += self.training
        if mode == "no_k":
            masks = masks[:, 0]
        elif mode == "weights_b":
            weights = weights[:, 0]
        elif mode == "half_res":
            masks = masks[..., ::2, ::2]
        elif mode == "times3":
            masks = masks * 3
        elif mode == "sum2":
            weights = weights * 2
        elif mode == "crash_epoch2" and self.calls > 2 and not FIXED["crash"]:
            raise ValueError("lost track of the annotators")  # 2 steps per epoch: epoch 2
        return AggregatorOutput(Targets(masks, weights))


@pytest.fixture
def plugin_registry(monkeypatch):
    reg = build_registry()
    reg.add("aggregator", "broken", Broken, "broken_plugin", "esx-broken-plugin", "9.9")
    monkeypatch.setattr(esx.plugins, "_REGISTRY", reg)
    return reg


def _recipe(tmp_path, tiny_recipe, mode):
    tiny_recipe["aggregator"] = {"name": "broken", "params": {"mode": mode}}
    tiny_recipe["train"]["epochs"] = 3
    path = tmp_path / f"{mode}.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe))
    return path


def _run(*args):
    return CliRunner().invoke(build_app(), ["run", *args, "--quiet"], env={"COLUMNS": "200"})


NAMED = "aggregator 'broken' (package esx-broken-plugin 9.9)"


@pytest.mark.parametrize(
    "mode, rule",
    [
        ("no_k", "targets.masks must be (B, K, H, W) with B = 4; received shape (4, 64, 64)"),
        ("weights_b", "targets.weights must be (B, K) = (4, 1); received shape (4,)"),
        ("half_res", "at the masks' resolution 64x64; received shape (4, 1, 32, 32)"),
        ("times3", "targets.masks must lie in [0, 1]; received values from 0 to 3"),
        ("sum2", "must sum to 1 on every supervised row (0 on the others); received row sums [2.0"),
    ],
)
def test_a_broken_contract_is_one_clear_message(plugin_registry, tiny_recipe, tmp_path, mode, rule):
    out = tmp_path / "run"
    res = _run(str(_recipe(tmp_path, tiny_recipe, mode)), "--out", str(out))
    assert res.exit_code == 2, res.output
    assert f"{NAMED} broke its contract" in res.output and rule in res.output, res.output
    assert "epoch 1, step 0" in res.output and "Traceback" not in res.output
    assert json.loads((out / "status.json").read_text())["status"] == "failed"
    assert not (out / "metrics.json").exists()
    assert "Traceback" in (out / "run.log").read_text()


def test_a_crash_at_epoch_two_is_framed_and_resumes_after_the_fix(
    plugin_registry, tiny_recipe, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    res = _run(str(_recipe(tmp_path, tiny_recipe, "crash_epoch2")), "--out", str(out))
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert f"{NAMED} failed: ValueError: lost track of the annotators" in text
    assert "at epoch 2, step 2" in text and f"esx run --resume {out}" in text
    assert "Traceback" not in res.output
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "failed" and "lost track" in status["error"]
    assert not (out / "metrics.json").exists() and (out / "last.safetensors").is_file()
    monkeypatch.setitem(FIXED, "crash", True)  # the plugin's author fixes the bug
    res = _run("--resume", str(out))
    assert res.exit_code == 0, res.output
    assert json.loads((out / "status.json").read_text())["status"] == "finished"
    assert (out / "metrics.json").is_file()


def test_contract_checks_run_on_the_first_batch_only(plugin_registry, tiny_recipe, tmp_path):
    from esx.recipe import validate_recipe
    from esx.testing import tiny_batch
    from esx.trainer import Trainer

    tiny_recipe["aggregator"] = {"name": "consensus"}
    t = Trainer(validate_recipe(tiny_recipe, plugin_registry), tmp_path)
    assert t.module.check
    t.step(tiny_batch(size=64))
    assert not t.module.check


def test_provenance_recorded(tmp_path):
    out = tmp_path / "run"
    from conftest import ROOT

    res = _run(str(ROOT / "recipes" / "smoke.yaml"), "--out", str(out))
    assert res.exit_code == 0, res.output
    comps = json.loads((out / "metrics.json").read_text())["run"]["components"]
    assert comps["aggregator"] == {
        "name": "consensus",
        "package": "esx",
        "version": esx.__version__,
    }
    assert "#   aggregator: consensus from esx " in (out / "recipe.yaml").read_text()


def test_esx_plugins_describes_a_component():
    res = CliRunner().invoke(build_app(), ["plugins", "gradcam", "--json"])
    assert res.exit_code == 0, res.output
    (d,) = json.loads(res.output)
    params = {p["name"]: p for p in d["params"]}
    assert d["family"] == "explainer" and d["package"] == "esx" and d["version"]
    assert params["mask_resize"]["default"] == '"area_max"'
    assert params["create_graph"]["default"] == "true" and params["create_graph"]["description"]
    text = CliRunner().invoke(build_app(), ["plugins", "gradcam"], env={"COLUMNS": "200"})
    assert "mask_resize" in text.output and "area_max" in text.output
    unknown = CliRunner().invoke(build_app(), ["plugins", "gradcm"])
    assert unknown.exit_code == 2 and "Did you mean 'gradcam'" in unknown.output


def test_name_clash_is_said_once_in_run_and_validate(monkeypatch, tiny_recipe, tmp_path):
    from esx_aggregators.consensus import Consensus

    reg = build_registry()
    with pytest.raises(esx.errors.DuplicateComponentError):
        reg.add("aggregator", "consensus", Consensus, "copycat", "esx-copycat", "1.0")
    monkeypatch.setattr(esx.plugins, "_REGISTRY", reg)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe))
    res = CliRunner().invoke(build_app(), ["validate", str(path)], env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert text.count("registered by more than one plugin") == 1
    assert "using the one from esx" in text and "not esx-copycat 1.0 (plugin 'copycat')" in text


def test_check_aggregator_uses_esx_losses_unless_told(plugin_registry):
    from esx.interfaces import PixelLoss
    from esx.testing import check_aggregator
    from esx_aggregators.consensus import Consensus

    class Exploding(PixelLoss):
        Params = Params

        def pixel_loss(self, maps, target):
            return maps * float("nan")

    plugin_registry.add("loss", "exploding", Exploding, "boom", "esx-boom", "0.1")
    check_aggregator(Consensus, registry=plugin_registry)  # someone else's loss: not yours
    with pytest.raises(AssertionError, match="loss 'exploding'"):
        check_aggregator(Consensus, registry=plugin_registry, losses=["exploding"])
