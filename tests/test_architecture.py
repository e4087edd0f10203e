"""How the code is laid out: stages that import only the stages above them, no import circles at
any depth, one owner of the results folder, a framework named only in its record, impl and tox env
(and in the plans that choose it), and no file, tests included, past 400 lines."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = sorted([*ROOT.glob("harness/**/*.py"), *ROOT.glob("impls/**/*.py")])
# The stages, in the order the data flows and may be imported: a module may import its own stage
# and those above it, never one below (harness/__init__.py says what each owns). The framework
# modules (impls/) count as measure's, and no harness module imports them (the cell's process
# loads them by the name the registry, harness.plan.frameworks, gives).
STAGES = ("plan", "data", "measure", "run", "analysis", "report", "drive", "archive")


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


MODULES = {module_name(p) for p in CODE}


def stage(module: str) -> int:
    """The rank of a module's stage; -1 for the package harness itself."""
    parts = module.split(".")
    if parts[0] == "impls":  # the framework modules: loaded by name in the cell's process
        return STAGES.index("measure")
    return STAGES.index(parts[1]) if len(parts) > 1 and parts[1] in STAGES else -1


def all_imports(path: Path) -> dict[str, int]:
    """Every harness and impls module a file imports, at module level or inside a function, with the
    line. `from harness.x import y` counts as harness.x.y where that is a module, else as harness.x."""
    found = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("harness", "impls"):
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.setdefault(name if name in MODULES else node.module, node.lineno)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in ("harness", "impls"):
                    found.setdefault(alias.name, node.lineno)
    return found


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {module it imports: line}, over harness/ and impls/."""
    graph = {module_name(p): all_imports(p) for p in CODE}
    return {m: {i: line for i, line in imports.items() if i in graph and i != m} for m, imports in graph.items()}


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Each import circle once, from its first module in sorted order, as the modules along it."""
    found = []

    def walk(path: list[str]) -> None:
        for n in sorted(graph[path[-1]]):
            if n == path[0]:
                found.append(path + [n])
            elif n not in path and n > path[0]:
                walk(path + [n])

    for m in sorted(graph):
        walk([m])
    return found


def climbing(graph: dict[str, dict[str, int]]) -> list[str]:
    """Imports of a later stage than the importer's, as 'module:line -> module'."""
    return [f"{m}:{line} -> {i}" for m, imports in sorted(graph.items()) for i, line in sorted(imports.items())
            if stage(i) > stage(m)]


def test_no_import_circles_at_any_depth():
    found = circles(import_graph())
    assert not found, "import circles: " + "; ".join(" -> ".join(c) for c in found)


def test_every_module_has_a_stage_and_none_imports_a_later_one():
    assert sorted(m for m in MODULES if stage(m) < 0) == ["harness"]
    assert not climbing(import_graph())
    graph = import_graph()
    assert not [m for m in graph if m.startswith("harness") and any(i.startswith("impls") for i in graph[m])]


def test_the_checks_see_a_planted_circle_and_a_climbing_import(tmp_path):
    graph = import_graph()
    assert "harness.plan.spec" in graph["harness.plan.cell"]
    planted = {**graph, "harness.plan.spec": {**graph["harness.plan.spec"], "harness.plan.cell": 1}}
    assert ["harness.plan.cell", "harness.plan.spec", "harness.plan.cell"] in circles(planted)
    inside = {**graph, "harness.plan.cell": {**graph["harness.plan.cell"], "harness.report.read": 99}}
    assert climbing(inside) == ["harness.plan.cell:99 -> harness.report.read"]
    # read from a file: an import inside a function counts, and a module named in `from package import`
    fake = tmp_path / "store.py"
    fake.write_text("def f():\n    from harness.run import launch\n    from harness.plan.spec import MODELS\n")
    assert all_imports(fake) == {"harness.run.launch": 2, "harness.plan.spec": 3}


def test_each_package_opens_with_a_docstring_saying_what_it_owns():
    for package in [ROOT / "harness", *(ROOT / "harness" / s for s in STAGES)]:
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc and len(doc) > 80, package


def test_only_the_store_names_a_cells_result_file():
    pattern = re.compile(r"\.id\}\.json|\.id\s*\+\s*['\"]\.json|glob\(\s*['\"]\*\.json")
    owners = [p.relative_to(ROOT).as_posix() for p in CODE if pattern.search(p.read_text())]
    assert owners == ["harness/measure/store.py"]


# Frameworks a harness string may name: only in the registry and where it says what to run (plans),
# or in an example of a command line, or a path a framework owns; each such string is listed here,
# so that a new one is seen.
FRAMEWORK_WORDS = re.compile(r"\b(torch|keras|jax|tensorflow|flax|optax)\b")
PLANS_OF_FRAMEWORKS = ("harness/plan/frameworks.py", "harness/plan/plans.py", "harness/plan/loop_plans.py")
NAMED_IN_EXAMPLES = (".keras/datasets/mnist.npz", "--python takes FRAMEWORK=PATH, e.g. torch=",
                     "the interpreter of a framework's environment, e.g. torch=", "Adam in the torch/optax form",
                     "python -m harness.run --framework numpy", "rows with words, e.g. scan",
                     "run it in its tox env (tox -e torch,keras,jax)")


def strings_naming_a_framework(path: Path) -> list[str]:
    """The string constants of a file, docstrings aside, that name a framework as a word."""
    tree = ast.parse(path.read_text())
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docstrings and FRAMEWORK_WORDS.search(n.value)]


def test_frameworks_are_named_only_in_the_registry_their_impls_and_the_plans():
    """A fourth framework touches its record, its impl and its tox env: no harness logic names one."""
    strays = {}
    for path in ROOT.glob("harness/**/*.py"):
        where = path.relative_to(ROOT).as_posix()
        found = [s for s in strings_naming_a_framework(path) if where not in PLANS_OF_FRAMEWORKS
                 and not any(example in s for example in NAMED_IN_EXAMPLES)]
        if found:
            strays[where] = found
    assert not strays
    assert strings_naming_a_framework(ROOT / "harness" / "plan" / "plans.py")  # the check sees them


def test_no_file_of_the_harness_impls_or_tests_passes_400_lines():
    files = [*CODE, *ROOT.glob("tests/*.py")]
    long = {p.relative_to(ROOT).as_posix(): n for p in files if (n := len(p.read_text().splitlines())) > 400}
    assert not long


def test_the_analysis_layer_reads_results_and_never_the_driver_executors_or_report():
    allowed = ("harness.analysis", "harness.measure.results", "harness.measure.store", "harness.plan.cell",
               "harness.plan.errors", "harness.plan.spec",
               "harness.plan.frameworks")
    for path in sorted(ROOT.glob("harness/analysis/*.py")):
        strays = {m for m in all_imports(path) if not m.startswith(allowed)}
        assert not strays, f"{path.name} imports {strays}"


def test_the_driver_decides_when_to_stop_without_the_report():
    """Only main, once the rounds are over, calls the report; no other function of the driver names it."""
    tree = ast.parse((ROOT / "harness" / "drive" / "rounds.py").read_text())
    from_report = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                   and (n.module or "").startswith("harness.report") for a in n.names}
    assert from_report
    for function in (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name != "main"):
        used = {n.id for n in ast.walk(function) if isinstance(n, ast.Name)}
        assert not used & from_report, function.name


def test_the_readmes_map_names_every_stage_in_order_and_nothing_else():
    text = (ROOT / "README.md").read_text().split("## What is here\n", 1)[1].split("\n## ", 1)[0]
    mapped = re.findall(r"^\| `harness/(\w+)/` \|", text, re.M)
    packages = sorted(p.parent.name for p in (ROOT / "harness").glob("*/__init__.py"))
    assert mapped == list(STAGES) and sorted(mapped) == packages
    assert not [p.name for p in (ROOT / "harness").glob("*.py") if p.name != "__init__.py"]  # no module outside a stage
