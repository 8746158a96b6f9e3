"""``esx new plugin``: a plugin package to start from, added to the command line through the
``register_commands`` hook (:mod:`esx_template.template` holds the files it writes)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import esx

new_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Start something new from a template."
)


@new_app.command("plugin")
def new_plugin(
    folder: Annotated[Path, typer.Argument(help="the new package's folder (new or empty)")],
    family: Annotated[str, typer.Option(help="aggregator or loss")] = "aggregator",
    name: Annotated[str, typer.Option(help="the component's name, e.g. my_vote")] = "my_vote",
) -> None:
    """Write an installable plugin package: a component with typed parameters, its entry
    point, a test using esx.testing, a tiny recipe and a README."""
    from esx_template.template import new_plugin as write

    files = write(folder, family, name)
    typer.echo("\n".join(["wrote:", *(f"  {f}" for f in files)]))
    typer.echo(
        f"next: pip install -e {folder} && python -m pytest {folder}/tests && "
        f"esx run {folder}/recipe.yaml --out runs/{name}"
    )


@esx.hookimpl
def register_commands(app: typer.Typer) -> None:
    app.add_typer(new_app, name="new")
