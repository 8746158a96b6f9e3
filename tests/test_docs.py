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

DOC = "".join(
    (ROOT / "docs" / "reference" / page).read_text() for page in ("hooks.md", "component-extras.md")
)
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


def test_the_plugin_guide_aggregator_example_works():
    text = (ROOT / "docs" / "howto" / "write-a-plugin.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    mod = types.ModuleType("my_esx_union")
    exec(compile(code, "write-a-plugin.md", "exec"), mod.__dict__)
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


def test_methods_page_component_table_is_the_registry():
    from esx.plugins import components_markdown

    text = (ROOT / "docs" / "explanation" / "methods.md").read_text()
    start = text.index("<!-- components:")
    block = text[text.index("\n", start) + 1 : text.index("<!-- /components -->")]
    assert block == components_markdown(build_registry()), (
        "docs/explanation/methods.md's component table is stale: paste the output of "
        "`esx plugins --markdown`"
    )


def _user_pages() -> list:
    return [p for p in (ROOT / "docs").rglob("*.md") if "lab" not in p.relative_to(ROOT).parts]


def test_the_reference_pages_are_what_the_code_generates():
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr


def test_every_parameter_and_recipe_key_has_a_description():
    from pydantic import BaseModel

    from esx.recipe import Recipe

    missing = []
    reg = build_registry()
    for family in FAMILIES:
        for name in reg.names(family):
            for field, info in reg.get(family, name).Params.model_fields.items():
                if not (info.description or "").strip():
                    missing.append(f"{family} {name}: {field}")

    def walk(model: type[BaseModel], prefix: str) -> None:
        for field, info in model.model_fields.items():
            if not (info.description or "").strip():
                missing.append(f"recipe key {prefix}{field}")
            ann = info.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{field}.")

    walk(Recipe, "")
    assert missing == []


def test_readme_is_short_and_one_click_from_the_plugin_guide_and_magi():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    links = re.findall(r"\]\(([^)#]+)", text)
    assert "docs/howto/write-a-plugin.md" in links
    assert "docs/explanation/magi.md" in links and "docs/benchmarks/table1.md" in links
    for link in links:
        if not link.startswith("http"):
            assert (ROOT / link).exists(), link


def test_no_user_page_over_400_lines_and_no_machine_paths():
    long = [str(p) for p in _user_pages() if len(p.read_text().splitlines()) > 400]
    assert long == []
    paths = re.compile(r"(/work/|/root/|/home/\w|Runs under `/)")
    for p in (ROOT / "docs").rglob("*.md"):  # the lab notebook's generated tables too
        hit = paths.search(p.read_text())
        assert hit is None, f"{p}: {hit.group(0)}"


def test_every_lab_entry_is_dated_with_a_summary_on_top():
    for p in (ROOT / "docs" / "lab").glob("*.md"):
        if p.name == "index.md":
            continue
        second = [line for line in p.read_text().splitlines()[1:] if line.strip()][0]
        assert re.match(r"\*\d{4}-\d{2}-\d{2}( to \d{4}-\d{2}-\d{2})?\.\* ", second), p
        assert p.name in (ROOT / "docs" / "lab" / "index.md").read_text(), p


def test_every_page_is_in_the_site():
    nav = (ROOT / "mkdocs.yml").read_text()
    for p in (ROOT / "docs").rglob("*.md"):
        assert str(p.relative_to(ROOT / "docs")) in nav, p
