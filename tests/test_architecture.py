"""How the code is laid out: one owner of the results folder, no import circles, a framework
named only in its record, impl and tox env, and no file past 400 lines."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = sorted([*ROOT.glob("harness/**/*.py"), *ROOT.glob("impls/**/*.py")])


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def module_level_imports(path: Path) -> set[str]:
    """The harness and impls modules a module imports when it is imported (not inside functions)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("harness", "impls"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] in ("harness", "impls")}
    return found


def test_no_module_imports_itself_back_through_a_circle():
    graph = {module_name(p): module_level_imports(p) for p in CODE}
    graph = {m: {i for i in imports if i in graph and i != m} for m, imports in graph.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start])

    circles = [m for m in graph if reaches(m, m, {m})]
    assert not circles, f"import circles through {circles}"


def test_only_the_store_names_a_cells_result_file():
    pattern = re.compile(r"\.id\}\.json|\.id\s*\+\s*['\"]\.json|glob\(\s*['\"]\*\.json")
    owners = [p.relative_to(ROOT).as_posix() for p in CODE if pattern.search(p.read_text())]
    assert owners == ["harness/store.py"]


def test_frameworks_are_named_only_in_their_record_and_impl():
    names = re.compile(r"[\"'](torch|keras|jax|tensorflow)[\"']")
    allowed = {"impls/records.py"} | {p.relative_to(ROOT).as_posix() for p in ROOT.glob("impls/**/*.py")}
    strays = {p.relative_to(ROOT).as_posix(): names.findall(p.read_text()) for p in CODE
              if p.relative_to(ROOT).as_posix() not in allowed and names.search(p.read_text())}
    assert not strays


def test_no_file_of_the_harness_or_impls_passes_400_lines():
    long = {p.relative_to(ROOT).as_posix(): n for p in CODE if (n := len(p.read_text().splitlines())) > 400}
    assert not long


def imports_anywhere(path: Path) -> set[str]:
    """Every harness and impls module a file imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module in ("harness", "impls"):  # from harness import stats
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("harness", "impls"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] in ("harness", "impls")}
    return found


def test_the_analysis_layer_reads_results_and_never_the_driver_executors_or_report():
    allowed = ("harness.analysis", "harness.stats", "harness.results", "harness.cell", "harness.spec", "impls.records")
    for path in sorted(ROOT.glob("harness/analysis/*.py")):
        strays = {m for m in imports_anywhere(path) if not m.startswith(allowed)}
        assert not strays, f"{path.name} imports {strays}"


def test_the_driver_decides_when_to_stop_without_the_report():
    tree = ast.parse((ROOT / "harness" / "drive.py").read_text())
    for function in (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name != "main"):
        reached = {n.module for n in ast.walk(function) if isinstance(n, ast.ImportFrom)}
        assert not {m for m in reached if m and m.startswith("harness.report")}, function.name
    assert not {m for m in module_level_imports(ROOT / "harness" / "drive.py") if m.startswith("harness.report")}
