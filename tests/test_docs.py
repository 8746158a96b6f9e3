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


@pytest.mark.parametrize("hook", list(FAMILIES.values()))
def test_every_hook_is_documented(hook):
    sig = inspect.signature(getattr(hookspecs, hook))
    assert f"## {hook}({', '.join(sig.parameters)})" in DOC


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_documented_examples_register_and_keep_the_contract(i):
    mod = types.ModuleType(f"doc_example_{i}")
    exec(compile(BLOCKS[i], f"plugin_hooks.md[{i}]", "exec"), mod.__dict__)
    reg = build_registry([mod])
    assert not reg.broken, reg.broken
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
