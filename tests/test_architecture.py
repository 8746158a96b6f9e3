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
    with (core / "reporting" / "report.py").open("a") as f:
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


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(core: Path) -> dict[str, set[str]]:
    """Module -> the modules of ``core``'s package it imports, anywhere in its body."""
    root = core.parent
    modules = {_module_name(p, root): p for p in core.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = _imported(node)
            if isinstance(node, ast.ImportFrom) and node.level:  # relative: resolve it
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                targets = [f"{base}.{node.module}" if node.module else base]
            if isinstance(node, ast.ImportFrom):
                targets += [f"{t}.{a.name}" for t in targets[:1] for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    for name in graph:  # importing a.b runs a/__init__.py first, which imports nothing here
        graph[name].discard(core.name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in graph[todo.pop()] - seen:
            seen.add(w)
            todo.append(w)
    return seen


def long_functions(core: Path, limit: int = 60) -> list[str]:
    hits = []
    for path in sorted(core.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    hits.append(f"{path.relative_to(core.parent)}:{node.lineno}: {node.name} {n}")
    return hits


def test_no_import_cycle_and_training_does_not_import_reporting():
    graph = import_graph(ROOT / "esx")
    assert {"esx.trainer", "esx.reporting.html", "esx.cli"} <= set(graph)
    assert cycles(graph) == []
    assert not {m for m in reaches(graph, "esx.trainer") if m.startswith("esx.reporting")}


def test_no_core_function_over_60_lines_and_the_cli_and_trainer_stay_small():
    assert long_functions(ROOT / "esx") == []
    assert len((ROOT / "esx" / "cli.py").read_text().splitlines()) <= 250
    assert len((ROOT / "esx" / "trainer.py").read_text().splitlines()) < 300


def test_the_structure_guards_catch_planted_violations(tmp_path):
    core = tmp_path / "esx"
    shutil.copytree(ROOT / "esx", core, ignore=shutil.ignore_patterns("__pycache__"))
    with (core / "runtime.py").open("a") as f:
        f.write("\n\ndef _late():\n    from esx.trainer import Trainer\n\n    return Trainer\n")
    with (core / "trainer.py").open("a") as f:
        f.write("\n\ndef _page(out):\n    from esx.reporting import html\n")
        f.write("\n    return html.write_run_page(out)\n" + "    pass\n" * 60)
    graph = import_graph(core)
    assert any({"esx.runtime", "esx.trainer"} <= set(c) for c in cycles(graph))
    assert "esx.reporting.html" in reaches(graph, "esx.trainer")
    assert [h.split(": ")[1].split()[0] for h in long_functions(core)] == ["_page"]


def private_imports(folders: list[Path], plugins: set[str]) -> list[str]:
    """``file:line: module.name`` for every import, in ``folders``, of another plugin's
    private name (a name or a module whose name starts with ``_``)."""
    hits = []
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            own = path.relative_to(folder).parts[0]
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                for module in _imported(node):
                    top = module.split(".")[0]
                    if top not in plugins or top == own:
                        continue
                    names = [a.name for a in node.names] if isinstance(node, ast.ImportFrom) else []
                    private = [n for n in [*module.split(".")[1:], *names] if n.startswith("_")]
                    if private and private != ["__init__"]:
                        where = path.relative_to(folder.parent)
                        hits.append(f"{where}:{node.lineno}: {module} {' '.join(private)}")
    return hits


def test_plugins_meet_through_public_names():
    folders = [ROOT / "plugins", ROOT / "experiments", ROOT / "benchmarks"]
    assert private_imports(folders, plugin_packages()) == []


def test_the_private_import_guard_catches_a_planted_violation(tmp_path):
    plugins = tmp_path / "plugins"
    shutil.copytree(ROOT / "plugins", plugins, ignore=shutil.ignore_patterns("__pycache__"))
    with (plugins / "esx_lidc_readers" / "dataset.py").open("a") as f:
        f.write("\nfrom esx_phantom.render import _private_helper  # noqa\n")
    with (plugins / "esx_folder" / "dataset.py").open("a") as f:
        f.write("\nfrom esx_folder.dataset import _own_private  # noqa  (its own: allowed)\n")
    hits = private_imports([plugins], plugin_packages())
    assert [h.split(": ")[1] for h in hits] == ["esx_phantom.render _private_helper"], hits
