"""The plugin manager and the registry."""

from __future__ import annotations

import json
import os
import types
from pathlib import Path

import pytest

import esx
from esx.errors import PluginLoadError, UnknownComponentError
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


def test_a_plugin_with_a_clash_registers_nothing():
    """Atomic registration: a plugin whose second family clashes keeps none of its first."""
    from esx.interfaces import Aggregator, Loss

    @esx.hookimpl
    def register_aggregators(register):
        register("fresh_name", type("Fresh", (Aggregator,), {}))

    @esx.hookimpl
    def register_losses(register):
        register("also_fresh", type("AlsoFresh", (Loss,), {}))
        register("dup", type("Dup", (Loss,), {}))

    clashing = types.ModuleType("clashing_pkg")
    clashing.register_aggregators = register_aggregators
    clashing.register_losses = register_losses

    @esx.hookimpl
    def register_losses_first(register):
        register("dup", type("Dup0", (Loss,), {}))

    first = types.ModuleType("first_pkg")
    first.register_losses = register_losses_first  # pluggy goes by the attribute's name
    reg = build_registry([first, clashing])
    assert [b["plugin"] for b in reg.broken] == ["clashing_pkg"]
    assert "Nothing of plugin 'clashing_pkg' is registered" in reg.broken[0]["error"]
    assert "fresh_name" not in reg.entries["aggregator"]
    assert "also_fresh" not in reg.entries["loss"]
    assert reg.entry("loss", "dup").plugin == "first_pkg"


def test_a_component_registered_by_path_is_imported_on_first_use():
    import sys

    @esx.hookimpl
    def register_aggregators(register):
        register("by_path", "esx_aggregators.consensus:Consensus")
        register("missing", "esx_no_such_module.x:Y")
        register("wrong_family", "esx_losses.rrr:Rrr")

    mod = types.ModuleType("pathpkg")
    mod.register_aggregators = register_aggregators
    reg = build_registry([mod])
    assert reg.broken == []  # paths are checked when first used
    from esx_aggregators.consensus import Consensus

    assert reg.get("aggregator", "by_path") is Consensus
    with pytest.raises(PluginLoadError, match="'missing'.*does not import.*esx_no_such_module"):
        reg.get("aggregator", "missing")
    with pytest.raises(PluginLoadError, match="subclass of esx.interfaces.Aggregator"):
        reg.get("aggregator", "wrong_family")
    assert "esx_aggregators.consensus" in sys.modules


def test_the_command_line_starts_without_torch():
    """`esx --help` and `esx plugins` import no heavy library (the start-up promise's cause;
    the time itself is measured by benchmarks/startup.py)."""
    import subprocess
    import sys

    code = (
        "import sys; from esx.cli import build_app; from esx.plugins import registry; "
        "build_app(); registry().as_dict(); "
        "print(sorted(m for m in ('torch', 'timm', 'captum', 'numpy', 'scipy', 'matplotlib') "
        "if m in sys.modules))"
    )
    env = {**os.environ, "ESX_DISABLE_PLUGIN_AUTOLOAD": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


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
        "    from esx_aggregators.consensus import Consensus\n"
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
