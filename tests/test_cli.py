"""The command line as a newcomer meets it: a version, and help that reads cleanly."""

from __future__ import annotations

from typer.testing import CliRunner

from esx import __version__
from esx.cli import build_app


def test_version():
    res = CliRunner().invoke(build_app(), ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"esx {__version__}"


def test_help_has_no_stray_metavars_and_lists_plugin_commands():
    app = build_app()
    for args in (["--help"], ["run", "--help"], ["data", "prepare", "lidc", "--help"]):
        res = CliRunner().invoke(app, args, env={"COLUMNS": "120"})
        assert res.exit_code == 0 and "<bool>" not in res.output, (args, res.output)
    assert "data" in CliRunner().invoke(app, ["--help"]).output  # from the esx_prepare plugin
