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
    dumped = yaml.safe_load(dump_recipe(r))
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


def _file(folder, name: str, data) -> object:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def test_base_recipe_inherited_and_flat_when_dumped(tmp_path, registry, tiny_recipe):
    tiny_recipe["aggregator"] = {"name": "consensus", "params": {"threshold": 0.75}}
    _file(tmp_path, "shared/_base.yaml", tiny_recipe)
    child = _file(
        tmp_path,
        "row.yaml",
        "base: shared/_base.yaml\nlabel: Row\ntrain: {epochs: 3}\naggregator: {name: oracle}\n",
    )
    r = load_recipe(child, registry)
    assert r.label == "Row" and r.train.epochs == 3 and r.train.batch_size == 4  # merged
    assert r.aggregator.name == "oracle"  # a new component: the base's params do not follow
    assert r.data.params.n_train == 8  # resolved: the dataset's validated Params
    dumped = yaml.safe_load(dump_recipe(r))
    assert "base" not in dumped and dumped["train"]["lr"] == 1e-3
    assert load_recipe(_file(tmp_path, "flat.yaml", dump_recipe(r)), registry) == r


def test_base_errors_name_the_file_and_line(tmp_path, registry, tiny_recipe):
    _file(tmp_path, "a.yaml", "base: b.yaml\n")
    _file(tmp_path, "b.yaml", "seed: 1\nbase: a.yaml\n")
    with pytest.raises(RecipeError, match=r"b.yaml:2: base: recipes inherit in a cycle: .*a.yaml"):
        load_recipe(tmp_path / "a.yaml", registry)
    missing = _file(tmp_path, "c.yaml", "seed: 1\nbase: nowhere.yaml\n")
    with pytest.raises(RecipeError, match=r"c.yaml:2: base: no recipe file .*nowhere.yaml"):
        load_recipe(missing, registry)
    # a problem in the base is reported at the base's own line
    tiny_recipe["train"]["epochz"] = 2
    _file(tmp_path, "d.yaml", tiny_recipe)
    child = _file(tmp_path, "e.yaml", "base: d.yaml\nseed: 3\n")
    with pytest.raises(RecipeError, match=r"d.yaml:\d+: train.epochz"):
        load_recipe(child, registry)


def test_table1_rows_resolve_to_the_chosen_testbed(registry):
    """The testbed docs/lab/phantom-testbed-search.md chose lives in recipes/table1."""
    from esx.sweep import expand

    rows = expand([ROOT / "recipes" / "table1"])
    assert len(rows) == 11 and not any(p.name.startswith("_") for p in rows)
    losses = {}
    for path in rows:
        r = load_recipe(path, registry)
        assert (r.train.epochs, r.train.lambda_exp, r.train.lr) == (12, 1.0, 1e-4), path
        assert [a.kind for a in r.data.params.annotators].count("wrong_object") == 3, path
        losses[path.stem] = r.loss.name
    # the testbed's guidance loss where the row takes it from _base.yaml; each b) method its own
    own = {"a_baseline": "none", "b_gradia": "gradia", "b_haics": "haics", "b_res_g": "res_g",
           "b_res_l": "res_l"}  # fmt: skip
    assert losses == {stem: own.get(stem, "energy") for stem in losses}


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "is not a text file"),
        (b"", "the file is empty"),
        (b"agregator: {name: consensus}\n", "Did you mean 'aggregator'?"),
    ],
)
def test_bad_recipe_files_exit_2_with_one_message(tmp_path, content, expected):
    p = tmp_path / "r.yaml"
    p.write_bytes(content)
    for command in ("validate", "run"):
        res = _invoke([command, str(p)])
        assert res.exit_code == 2, res.output
        assert expected in res.output and "Traceback" not in res.output


def test_folder_as_recipe_and_set_typo(tmp_path):
    res = _invoke(["validate", str(tmp_path)])
    assert res.exit_code == 2 and "is a folder; give a recipe file" in res.output
    res = _invoke(["validate", str(ROOT / "recipes" / "smoke.yaml"), "--set", "train.epoch=3"])
    assert res.exit_code == 2 and "Did you mean 'epochs'?" in res.output


def test_the_energy_curve_has_the_primary_curves_rows_and_an_unsupervised_floor(registry):
    """recipes/noise_curve_energy differs from recipes/noise_curve in the loss, its weight
    and the true mask only; its Baseline keeps no explanation loss (an override of
    loss.name across a sweep would have made the floor a supervised row)."""
    primary, energy = ROOT / "recipes" / "noise_curve", ROOT / "recipes" / "noise_curve_energy"
    rows = sorted(p.name for p in primary.glob("*.yaml") if not p.name.startswith("_"))
    assert rows == sorted(p.name for p in energy.glob("*.yaml") if not p.name.startswith("_"))
    for row in rows:
        a = load_recipe(primary / row, registry).model_dump(mode="json")
        b = load_recipe(energy / row, registry).model_dump(mode="json")
        assert b["data"]["params"]["of"]["params"].pop("truth") == "digit"
        assert a["data"]["params"]["of"]["params"].pop("truth") == "not_decoy"
        assert (a["train"].pop("lambda_exp"), b["train"].pop("lambda_exp")) == (1000.0, 1.0)
        loss_a, loss_b = a.pop("loss"), b.pop("loss")
        if row == "baseline.yaml":
            assert loss_a["name"] == loss_b["name"] == "none", row
        else:
            assert (loss_a["name"], loss_b["name"]) == ("rrr", "energy"), row
        assert a == b, row
