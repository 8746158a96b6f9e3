"""A third-party plugin extends esx with no change in esx/: a CLI command through
``register_commands`` and a report table through ``Component.tables``.

The plugin is installed for a subprocess as a distribution with an ``esx``
entry point, exactly as ``pip install`` would; ``esx --help`` lists its
command, ``esx run`` prints its table and ``esx report`` renders it.
"""

from __future__ import annotations

import json

import yaml

from conftest import esx_cli, fake_distribution

PLUGIN = '''
import typer

import esx
from esx.interfaces import Aggregator, AggregatorOutput, Params
from esx.types import Table, Targets


class Union(Aggregator):
    """Pixel on where any valid mask marks it."""

    Params = Params

    def forward(self, batch):
        masks = (batch.masks * batch.mask_valid[..., None, None]).amax(1, keepdim=True)
        return AggregatorOutput(Targets(masks, batch.annotated.float()[:, None]))

    def report(self, loader, device):
        return {"annotated": sum(int(b.annotated.sum()) for b in loader)}

    def tables(self, report):
        return [Table("Union coverage", ["images", "annotated"], [["test", report["annotated"]]],
                      note="Annotated test images the union would supervise.")]


@esx.hookimpl
def register_aggregators(register):
    register("union_cov", Union)


@esx.hookimpl
def register_commands(app):
    @app.command("union-hello")
    def hello(name: str = "world"):
        """Greet from the union plugin."""
        typer.echo(f"hello {name} from the union plugin")
'''


def test_third_party_command_and_report_table(tmp_path, tiny_recipe):
    site = tmp_path / "site"
    site.mkdir()
    fake_distribution(site, "esx-union", "union", "esx_union_mod", PLUGIN)

    help_text = esx_cli(["--help"], site)
    assert help_text.returncode == 0, help_text.stderr
    assert "union-hello" in help_text.stdout and "Greet from the union plugin" in help_text.stdout
    hello = esx_cli(["union-hello", "--name", "reader"], site)
    assert hello.stdout.strip() == "hello reader from the union plugin", hello.stderr

    recipe = tmp_path / "union.yaml"
    tiny_recipe["aggregator"] = {"name": "union_cov"}
    recipe.write_text(yaml.safe_dump(tiny_recipe))
    run = esx_cli(["run", str(recipe), "--out", str(tmp_path / "runs" / "union")], site)
    assert run.returncode == 0, run.stderr
    assert "Union coverage" in run.stdout and "Annotated test images" in run.stdout
    metrics = json.loads((tmp_path / "runs" / "union" / "metrics.json").read_text())
    assert metrics["aggregator"] == {"annotated": metrics["tables"][0]["rows"][0][1]}

    rep = esx_cli(["report", str(tmp_path / "runs")], site)
    assert rep.returncode == 0, rep.stderr
    md = (tmp_path / "runs" / "report.md").read_text()
    assert "## Union coverage" in md and "Annotated test images the union" in md
    assert (tmp_path / "runs" / "union_coverage.csv").is_file()


def test_a_third_party_aggregator_joins_the_noise_curve_with_one_recipe(tmp_path):
    """docs/benchmarks/noise_curve.md: a recipe that names the curve's base and the
    plugin's aggregator is one more line of the curve, beside the built-in rows."""
    from conftest import ROOT

    site = tmp_path / "site"
    site.mkdir()
    fake_distribution(site, "esx-union", "union", "esx_union_mod", PLUGIN)
    mine = tmp_path / "my_rows" / "union.yaml"
    mine.parent.mkdir()
    base = ROOT / "recipes" / "noise_curve" / "_base.yaml"
    mine.write_text(f"base: {base}\nlabel: Union\naggregator: {{name: union_cov}}\n")
    curve = ROOT / "recipes" / "noise_curve"
    small = ["n_train=60", "n_val=30", "n_test=30"]
    sets = [f"data.params.of.params.{s}" for s in small] + ["train.epochs=1", "eval.overlays=0"]
    out = tmp_path / "runs"
    sweep = esx_cli(
        [
            "sweep", str(curve / "baseline.yaml"), str(curve / "oracle.yaml"), str(mine),
            "--vary", "data.params.level=0,1", "--out", str(out),
            *[a for s in sets for a in ("--set", s)],
        ],
        site,
    )  # fmt: skip
    assert sweep.returncode == 0, sweep.stdout + sweep.stderr
    rep = esx_cli(
        [
            "report", str(out), "--curve", "data.params.level", "--floor", "Baseline",
            "--ceiling", "Oracle", "--versus", "Union", "--metrics", "accuracy",
        ],
        site,
    )  # fmt: skip
    assert rep.returncode == 0, rep.stdout + rep.stderr
    import csv

    rows = list(csv.DictReader((out / "curve.csv").open()))
    union = {float(r["data.params.level"]) for r in rows if r["line"] == "Union"}
    assert union == {0.0, 1.0}
