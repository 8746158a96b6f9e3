"""Every hook is documented, and the documented examples run."""

from __future__ import annotations

import inspect
import re
import types

import pytest

from esx import hookspecs, testing
from esx.hookspecs import FAMILIES
from esx.plugins import build_registry

from conftest import ROOT

DOC = (ROOT / "docs" / "plugin_hooks.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", DOC, re.S)


HOOKS = [name for name in dir(hookspecs) if name.startswith("register_")]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook):
    sig = inspect.signature(getattr(hookspecs, hook))
    assert f"## {hook}({', '.join(sig.parameters)})" in DOC


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_documented_examples_register_and_keep_the_contract(i):
    mod = types.ModuleType(f"doc_example_{i}")
    exec(compile(BLOCKS[i], f"plugin_hooks.md[{i}]", "exec"), mod.__dict__)
    reg = build_registry([mod])
    assert not reg.broken, reg.broken
    if reg.commands:  # a register_commands example: its command joins esx --help
        from typer.testing import CliRunner

        from esx.cli import build_app

        res = CliRunner().invoke(build_app(reg), ["--help"])
        assert res.exit_code == 0 and "Greet from my plugin" in res.output, res.output
        return
    family, name = next((f, n) for f in FAMILIES for n in reg.names(f))
    cls = reg.get(family, name)
    check = {
        "aggregator": testing.check_aggregator,
        "loss": testing.check_loss,
        "explainer": testing.check_explainer,
        "backbone": testing.check_backbone,
        "dataset": testing.check_dataset,
    }[family]
    check(cls)


def test_contributing_aggregator_example_works():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    mod = types.ModuleType("my_esx_union")
    exec(compile(code, "CONTRIBUTING.md", "exec"), mod.__dict__)
    reg = build_registry([mod])
    assert reg.names("aggregator") == ["union"]
    testing.check_aggregator(reg.get("aggregator", "union"), {"min_votes": 2})


def test_contributing_layout_matches_the_tree():
    """Every core module, plugin package, test folder and top-level folder is in the layout."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    layout = text[text.index("## Layout") :].split("```")[1]
    names = [
        p.name for p in (ROOT / "esx").glob("*.py") if p.name not in ("__init__.py", "__main__.py")
    ]
    names += [f"{p.name}/" for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").is_file()]
    names += [
        f"{p.name}/"
        for p in ROOT.iterdir()
        if p.is_dir()
        and not p.name.startswith(".")
        and p.name not in ("runs", "data")
        and not p.name.endswith(".egg-info")
        and p.name != "build"
    ]
    names += [
        f"{p.name}/" for p in (ROOT / "tests").iterdir() if p.is_dir() and p.name != "__pycache__"
    ]
    missing = [n for n in names if n.removesuffix(".py") not in layout]
    assert missing == [], f"CONTRIBUTING.md's layout misses {missing}"
    for line in layout.splitlines():  # and names nothing that is gone
        first = line.split()[0] if line.strip() else ""
        if first.startswith("esx_") and first.endswith("/"):
            assert (ROOT / "plugins" / first).is_dir(), first


def test_readme_component_table_is_the_registry():
    from esx.plugins import components_markdown

    text = (ROOT / "README.md").read_text()
    start = text.index("<!-- components:")
    block = text[text.index("\n", start) + 1 : text.index("<!-- /components -->")]
    assert block == components_markdown(build_registry()), (
        "README.md's component table is stale: paste the output of `esx plugins --markdown`"
    )
