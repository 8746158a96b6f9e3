"""The plugin manager and the registry."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest

import esx
from esx.errors import UnknownComponentError
from esx.plugins import build_registry

from conftest import ROOT, esx_cli, fake_distribution

BUILTINS = {
    "backbone": {"timm"},
    "explainer": {"gradcam", "captum_gradcam", "deeplift"},
    "aggregator": {"consensus", "oracle", "magi", "random", "meanloss", "em", "staple"},
    "loss": {"none", "gradia", "haics", "res_g", "res_l"},
    "dataset": {"phantom"},
}


def test_builtins_come_from_packages_under_plugins(registry):
    for family, names in BUILTINS.items():
        assert names <= set(registry.names(family)), family
        for name in names:
            cls = registry.get(family, name)
            path = Path(__import__(cls.__module__, fromlist=["x"]).__file__).resolve()
            assert (ROOT / "plugins") in path.parents, (name, path)
            assert (ROOT / "esx") not in path.parents
    assert registry.broken == []


def test_cli_plugins_json(registry):
    from typer.testing import CliRunner

    from esx.cli import app

    res = CliRunner().invoke(app, ["plugins", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    for family, names in BUILTINS.items():
        listed = {e["name"]: e for e in data["components"][family]}
        assert names <= set(listed)
        for n in names:
            assert listed[n]["package"] == "esx"
            assert listed[n]["plugin"] in {
                "timm",
                "gradcam",
                "captum",
                "aggregators",
                "losses",
                "phantom",
                "magi",
            }


def _plugin(name: str, component: str) -> types.SimpleNamespace:
    from esx.interfaces import Aggregator

    @esx.hookimpl
    def register_aggregators(register):
        register(component, type(component, (Aggregator,), {}))

    mod = types.ModuleType(name)
    mod.register_aggregators = register_aggregators
    return mod


def test_duplicate_name_names_both_plugins():
    reg = build_registry([_plugin("first_pkg", "dup"), _plugin("second_pkg", "dup")])
    assert len(reg.broken) == 1
    msg = reg.broken[0]["error"]
    assert "first_pkg" in msg and "second_pkg" in msg and "'dup'" in msg
    assert reg.get("aggregator", "dup")  # the first registration stands


def test_unknown_name_lists_known_and_closest(registry):
    with pytest.raises(UnknownComponentError) as exc:
        registry.get("aggregator", "consensos")
    msg = str(exc.value)
    assert "consensus" in msg and "oracle" in msg and "Did you mean 'consensus'" in msg


def test_registering_a_non_component_is_reported():
    @esx.hookimpl
    def register_losses(register):
        register("bad", object)

    mod = types.ModuleType("badpkg")
    mod.register_losses = register_losses
    reg = build_registry([mod])
    assert "subclass of esx.interfaces.Loss" in reg.broken[0]["error"]
    assert "badpkg" in reg.broken[0]["error"]


def test_hook_with_no_spec_is_rejected():
    @esx.hookimpl
    def register_widgets(register):
        pass

    mod = types.ModuleType("widgets")
    mod.register_widgets = register_widgets
    with pytest.raises(Exception, match="register_widgets"):
        build_registry([mod])


class _EP:
    def __init__(self, name: str, dist: str) -> None:
        self.name = name
        self.dist = types.SimpleNamespace(name=dist)


@pytest.mark.parametrize(
    "only, no_auto, expected",
    [
        (None, False, {"timm", "third", "other"}),
        (None, True, {"timm"}),
        ({"third"}, False, {"timm", "third"}),
        ({"esx-other"}, False, {"timm", "other"}),
    ],
)
def test_entry_point_selection(only, no_auto, expected):
    from esx.plugins import _selected

    eps = [_EP("timm", "esx"), _EP("third", "esx-third"), _EP("other", "esx-other")]
    assert {e.name for e in eps if _selected(e, only, no_auto)} == expected


def test_broken_plugins_are_reported_and_esx_still_starts(tmp_path):
    fake_distribution(
        tmp_path,
        "esx-broken",
        "broken",
        "esx_broken_mod",
        "raise ImportError('needs a library that is not installed')\n",
    )
    fake_distribution(
        tmp_path,
        "esx-dup",
        "dup",
        "esx_dup_mod",
        "import esx\n\n@esx.hookimpl\ndef register_aggregators(register):\n"
        "    from esx_aggregators import Consensus\n"
        "    register('consensus', Consensus)\n",
    )
    res = esx_cli(["plugins", "--json"], tmp_path)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    broken = {b["package"]: b["error"] for b in data["broken"]}
    assert "needs a library" in broken["esx-broken"]
    assert "registered twice" in broken["esx-dup"] and "esx-dup" in broken["esx-dup"]
    assert {e["name"] for e in data["components"]["aggregator"]} >= {"consensus", "oracle"}
    table = esx_cli(["plugins"], tmp_path)
    assert "broken plugin broken (esx-broken)" in table.stdout
    ok = esx_cli(["validate", str(ROOT / "recipes" / "smoke.yaml")], tmp_path)
    assert ok.returncode == 0, ok.stderr
