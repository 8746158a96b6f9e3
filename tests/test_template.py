"""`esx new plugin`: the package it writes registers, keeps its contract and its recipe runs."""

from __future__ import annotations

import importlib
import sys

import pytest
import tomllib
import yaml
from typer.testing import CliRunner

from esx.cli import build_app
from esx.plugins import build_registry
from esx.recipe import validate_recipe


@pytest.mark.parametrize("family", ["aggregator", "loss"])
def test_template_package_works(tmp_path, family, monkeypatch):
    name = f"tpl_{family}"
    folder = tmp_path / name
    res = CliRunner().invoke(
        build_app(), ["new", "plugin", str(folder), "--family", family, "--name", name]
    )
    assert res.exit_code == 0, res.output
    meta = tomllib.loads((folder / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["esx"] == {name: f"esx_{name}"}
    monkeypatch.syspath_prepend(str(folder))
    module = importlib.import_module(f"esx_{name}")
    reg = build_registry([module])
    assert reg.names(family) == [name] and not reg.broken
    test_file = folder / "tests" / f"test_{name}.py"
    namespace: dict = {}
    exec(compile(test_file.read_text(), str(test_file), "exec"), namespace)
    namespace[f"test_{name}_keeps_the_{family}_contract"]()  # the generated test passes
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
    full = build_registry()
    full.add(family, name, reg.get(family, name), name, f"esx-{name}", "0.1.0")
    validate_recipe(recipe, full)  # the generated recipe is valid with the plugin installed
    sys.modules.pop(f"esx_{name}", None)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--family", "dataset"], "the template covers aggregator, loss"),
        (["--name", "My-Vote"], "use lower-case letters"),
    ],
)
def test_template_refuses_bad_options(tmp_path, args, message):
    res = CliRunner().invoke(build_app(), ["new", "plugin", str(tmp_path / "p"), *args])
    assert res.exit_code == 2 and message in res.output, res.output


def test_template_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    res = CliRunner().invoke(build_app(), ["new", "plugin", str(tmp_path)])
    assert res.exit_code == 2 and "not an empty folder" in res.output
