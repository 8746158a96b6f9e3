"""The hook specifications of esx: one ``register_<family>(register)`` hook per family,
and ``register_commands(app)`` for command-line commands.

A plugin is a module (or object) with functions decorated by
:data:`esx.hookimpl`. Each component hook is called once, at start-up, with a
``register`` callback; the plugin calls ``register(name, cls)`` for every
component it provides. No hook returns a value and none stops at the first
result: every plugin's components and commands are collected.

``cls`` is a class deriving from the family's base class in
:mod:`esx.interfaces`, or its import path ``"package.module:Class"`` (imported
when a recipe first uses it, so the command line starts without importing the
plugin's dependencies). Its ``Params`` attribute (a pydantic model) declares
and validates the ``params:`` block a recipe may give it. A plugin's
registrations are atomic: one refused name registers none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("esx")
hookimpl = pluggy.HookimplMarker("esx")

Register = Callable[[str, Any], None]


@hookspec
def register_backbones(register: Register) -> None:
    """Register classifiers: subclasses of :class:`esx.interfaces.Backbone`.

    :param register: call ``register(name, cls)`` once per backbone.
    """


@hookspec
def register_explainers(register: Register) -> None:
    """Register explanation methods: subclasses of :class:`esx.interfaces.Explainer`.

    :param register: call ``register(name, cls)`` once per explainer.
    """


@hookspec
def register_aggregators(register: Register) -> None:
    """Register annotation aggregators: subclasses of :class:`esx.interfaces.Aggregator`.

    :param register: call ``register(name, cls)`` once per aggregator.
    """


@hookspec
def register_losses(register: Register) -> None:
    """Register explanation-supervision losses: subclasses of :class:`esx.interfaces.Loss`.

    :param register: call ``register(name, cls)`` once per loss.
    """


@hookspec
def register_datasets(register: Register) -> None:
    """Register datasets: subclasses of :class:`esx.interfaces.Dataset`.

    :param register: call ``register(name, cls)`` once per dataset.
    """


@hookspec
def register_commands(app: Any) -> None:
    """Add commands to the ``esx`` command line.

    Called once when the command line starts, after esx's own commands exist.

    :param app: the ``typer.Typer`` of the ``esx`` command: add commands with
        ``@app.command()`` or groups with ``app.add_typer(sub, name=...)``. A
        command that raises :class:`esx.errors.EsxError` exits with status 2 and
        the error's message, like esx's own commands.
    """


#: The component families, in the order a recipe lists them, with their hooks.
FAMILIES: dict[str, str] = {
    "dataset": "register_datasets",
    "backbone": "register_backbones",
    "explainer": "register_explainers",
    "aggregator": "register_aggregators",
    "loss": "register_losses",
}
