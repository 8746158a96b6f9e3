"""Recipe loading and validation: every problem at once, with file, line and key."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from esx.cli import app
from esx.errors import RecipeError
from esx.recipe import dump_recipe, load_recipe, validate_recipe

from conftest import ROOT

RECIPES = sorted((ROOT / "recipes").rglob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[str(p.relative_to(ROOT)) for p in RECIPES])
def test_shipped_recipes_are_valid(path, registry):
    load_recipe(path, registry)


def _write(tmp_path, text: str):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def test_all_problems_reported_with_lines(tmp_path, registry, tiny_recipe):
    tiny_recipe["train"]["epochz"] = 3  # unknown key
    tiny_recipe["train"]["batch_size"] = "big"  # wrong type
    tiny_recipe["aggregator"]["name"] = "consensos"  # unknown component
    tiny_recipe["loss"]["params"] = {"weight": 2}  # param the plugin does not accept
    p = _write(tmp_path, yaml.safe_dump(tiny_recipe, sort_keys=False))
    with pytest.raises(RecipeError) as exc:
        load_recipe(p, registry)
    msg = str(exc.value)
    lines = p.read_text().splitlines()
    assert len(exc.value.problems) == 4, msg

    def line_of(key: str) -> int:
        return next(i for i, line in enumerate(lines, 1) if line.strip().startswith(key))

    assert f"r.yaml:{line_of('epochz')}: train.epochz: Extra inputs are not permitted" in msg
    assert f"r.yaml:{line_of('batch_size')}: train.batch_size:" in msg and "'big'" in msg
    assert "Did you mean 'consensus'" in msg
    assert "loss.params.weight" in msg


def test_component_params_validated_by_plugin(registry, tiny_recipe):
    tiny_recipe["data"]["params"]["image_size"] = 0
    tiny_recipe["explainer"]["params"] = {"compare_at": "nowhere"}
    with pytest.raises(RecipeError) as exc:
        validate_recipe(tiny_recipe, registry)
    msg = str(exc.value)
    assert "data.params.image_size" in msg and "explainer.params.compare_at" in msg


def test_overrides_and_resolved_dump(tmp_path, registry, tiny_recipe):
    p = _write(tmp_path, yaml.safe_dump(tiny_recipe))
    r = load_recipe(
        p, registry, ["train.epochs=5", "aggregator.params.threshold=0.75", "loss.name=none"]
    )
    assert r.train.epochs == 5 and r.loss.name == "none"
    dumped = yaml.safe_load(dump_recipe(r, registry))
    assert dumped["aggregator"]["params"] == {"threshold": 0.75}
    assert dumped["explainer"]["params"]["create_graph"] is True  # defaults filled in


@pytest.mark.parametrize(
    "text, expected",
    [
        ("data: [unclosed\n", "not valid YAML"),
        ("- a\n- b\n", "must be a mapping"),
        ("version: 1\n", "data: Field required"),
    ],
)
def test_malformed_recipes(tmp_path, registry, text, expected):
    with pytest.raises(RecipeError, match=expected):
        load_recipe(_write(tmp_path, text), registry)


def _invoke(args):
    return CliRunner().invoke(app, args, env={"COLUMNS": "200", "NO_COLOR": "1"})


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda r: r["train"].update(lrr=1), "train.lrr"),
        (lambda r: r["train"].update(epochs="ten"), "train.epochs"),
        (lambda r: r["loss"].update(name="gradai"), "Did you mean 'gradia'"),
        (
            lambda r: r["backbone"]["params"].update(weights="/no/such/file.safetensors"),
            "/no/such/file.safetensors",
        ),
    ],
    ids=["unknown-key", "wrong-type", "unknown-component", "missing-weights-file"],
)
def test_cli_bad_recipe_clear_error(tmp_path, tiny_recipe, edit, needle):
    edit(tiny_recipe)
    p = _write(tmp_path, yaml.safe_dump(tiny_recipe))
    res = _invoke(["run", str(p), "--out", str(tmp_path / "run"), "--quiet"])
    assert res.exit_code == 2, res.output
    assert needle in res.output
    assert "Traceback" not in res.output


def test_cli_missing_recipe_file(tmp_path):
    res = _invoke(["validate", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2 and "no such recipe file" in res.output
    assert "Traceback" not in res.output


def test_cli_validate_ok():
    res = _invoke(["validate", str(ROOT / "recipes" / "smoke.yaml")])
    assert res.exit_code == 0 and "ok" in res.output
