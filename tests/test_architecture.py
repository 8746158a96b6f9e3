"""The core knows no plugin: no module under esx/ imports a plugin package or names a method.

The import guard parses every module (``import``, ``from ... import``,
``importlib.import_module``/``__import__`` with a literal name, at any depth,
inside functions too), so neither a lazy import nor a comment-free one slips
through; the test plants violations in a copy of esx/ to prove it catches them.
"""

from __future__ import annotations

import ast
import re
import shutil
from importlib.metadata import entry_points
from pathlib import Path

from conftest import ROOT

#: method names and the keys only one plugin writes (MAGI's report, the phantom's extras)
WORDS = (
    r"\b(gradia|haics|res_g|res_l|magi|meanloss|oracle|consensus|phantom|random_mask"
    r"|deeplift|staple|generation|imputation|cue_present|lidc|pancreas)\b"
)


def plugin_packages() -> set[str]:
    """Every package under plugins/ and every module an ``esx`` entry point loads."""
    found = {p.name for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").is_file()}
    found |= {ep.value.split(":")[0].split(".")[0] for ep in entry_points(group="esx")}
    return found - {"esx"}


def _imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module]
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
        if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
            return [node.args[0].value]
    return []


def plugin_imports(core: Path, plugins: set[str]) -> list[str]:
    """``file:line: module`` for every import of a plugin package under ``core``."""
    hits = []
    for path in sorted(core.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for module in _imported(node):
                if module.split(".")[0] in plugins:
                    hits.append(f"{path.relative_to(core.parent)}:{node.lineno}: {module}")
    return hits


def named_methods(core: Path) -> list[str]:
    hits = []
    for path in sorted(core.rglob("*.py")):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(WORDS, line, re.IGNORECASE):
                hits.append(f"{path.relative_to(core.parent)}:{i}: {line.strip()}")
    return hits


def test_core_imports_no_plugin():
    plugins = plugin_packages()
    assert {"esx_magi", "esx_timm", "esx_prepare"} <= plugins  # the guard sees the plugins
    assert plugin_imports(ROOT / "esx", plugins) == []


def test_core_names_no_builtin_method():
    assert named_methods(ROOT / "esx") == []


def test_the_guards_catch_planted_violations(tmp_path):
    core = tmp_path / "esx"
    shutil.copytree(ROOT / "esx", core, ignore=shutil.ignore_patterns("__pycache__"))
    assert plugin_imports(core, plugin_packages()) == [] and named_methods(core) == []
    with (core / "trainer.py").open("a") as f:
        f.write(
            "\n\ndef _lazy():\n    from esx_magi.report import evaluate\n\n    return evaluate\n"
        )
    with (core / "report.py").open("a") as f:
        f.write("\nimport importlib\n\nPLUGIN = importlib.import_module('esx_phantom')\n")
    with (core / "cli.py").open("a") as f:
        f.write("\nimport esx_prepare.commands  # noqa\n")
    with (core / "evaluation.py").open("a") as f:
        f.write("\nKEY = 'generation'\n")
    hits = plugin_imports(core, plugin_packages())
    assert [h.split(": ")[1] for h in hits] == [
        "esx_prepare.commands",
        "esx_phantom",
        "esx_magi.report",
    ], hits
    assert any("evaluation.py" in h for h in named_methods(core))
