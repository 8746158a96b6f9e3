"""The plugin manager and the registry."""

from __future__ import annotations

import json
import re
import types
from pathlib import Path

import pytest

import esx
from esx.errors import UnknownComponentError
from esx.plugins import build_registry

from conftest import ROOT

BUILTINS = {
    "backbone": {"timm"},
    "explainer": {"gradcam", "captum_gradcam"},
    "aggregator": {"consensus", "oracle", "magi"},
    "loss": {"none", "gradia"},
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
            assert listed[n]["plugin"] in {"timm", "gradcam", "aggregators", "losses",
                                           "phantom", "magi"}


def _plugin(name: str, component: str) -> types.SimpleNamespace:
    @esx.hookimpl
    def register_aggregators(register):
        register(component, type(component, (), {}))

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


def test_hook_with_no_spec_is_rejected():
    @esx.hookimpl
    def register_widgets(register):
        pass

    mod = types.ModuleType("widgets")
    mod.register_widgets = register_widgets
    with pytest.raises(Exception, match="register_widgets"):
        build_registry([mod])


def test_core_names_no_builtin_method():
    """The core knows no built-in method by name."""
    words = r"\b(gradia|haics|res_g|res_l|magi|meanloss|oracle|consensus|phantom|random_mask)\b"
    hits = []
    for path in (ROOT / "esx").rglob("*.py"):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(words, line, re.IGNORECASE):
                hits.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert hits == []
