"""The shape of the code: the library names no business, its folders are its layers and no
import goes up, every dependency it imports is declared, and the tests test something.

Checks on the source tree itself (no Spark), so they run in a second.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from conftest import CONF, ROOT, usecases

LIB = ROOT / "lib" / "lakeml"

# every package of lakeml and its layer: a module may import only from lower layers, or from
# its own package (the folders say what sits on what)
LAYERS = {
    "core": 0,
    "lake": 1,
    "ops": 1,
    "demo": 2,
    "features": 2,
    "ml": 3,
    "lifecycle": 4,
    "monitor": 4,
    "serving": 5,
    "pipeline": 6,
    "cli": 6,
    "bench": 7,
}


def _py_files(*roots: Path) -> list[Path]:
    return sorted(p for r in roots for p in r.rglob("*.py") if "egg-info" not in str(p))


def _business_words() -> set[str]:
    """The words of the shipped use cases that must not appear in the library: their names,
    databases, entities and labels (e.g. churn, customer_id)."""
    from lakeml.core.config import load_usecase

    words = set()
    for name in usecases():
        uc = load_usecase(CONF, name)
        words |= {uc.name, uc.database, uc.entity, uc.label.column, uc.probability, uc.model.name}
    return {w.lower() for w in words} | {"churn", "customer"}


def test_the_library_names_no_business():
    words = _business_words()
    hits = []
    for root in (ROOT / "lib", ROOT / "jobs", ROOT / "scripts"):
        for p in sorted(x for x in root.rglob("*") if x.is_file() and "egg-info" not in str(x) and "__pycache__" not in str(x)):
            text = p.read_text(errors="replace").lower()
            hits += [f"{p.relative_to(ROOT)}: {w}" for w in sorted(words) if re.search(rf"\b{re.escape(w)}", text)]
    assert len(words) >= 8 and hits == []


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


def _package(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "lakeml" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def test_the_folders_are_the_layers_and_no_import_goes_up():
    assert {p.name for p in LIB.iterdir() if p.is_dir() and p.name != "__pycache__"} | {"pipeline", "cli"} == set(LAYERS)
    upward = []
    for path in _py_files(LIB):
        rel = path.relative_to(LIB.parent).with_suffix("")
        own = _package(".".join(rel.parts))
        if own is None:  # lakeml/__init__.py
            continue
        for mod in _imports(path):
            other = _package(mod)
            if other is not None and other != own and LAYERS[other] >= LAYERS[own]:
                upward.append(f"{'/'.join(rel.parts)}.py imports {mod} ({other}: layer {LAYERS[other]} >= {own}: {LAYERS[own]})")
    assert upward == []


def test_every_package_says_what_it_is():
    undocumented = [str(p.relative_to(ROOT)) for p in LIB.rglob("__init__.py") if not ast.get_docstring(ast.parse(p.read_text()))]
    assert sorted(LIB.rglob("__init__.py")) and undocumented == []


def test_one_concern_per_module_no_module_is_huge():
    sizes = {str(p.relative_to(LIB)): len(p.read_text().splitlines()) for p in _py_files(LIB)}
    assert sizes and {p: n for p, n in sizes.items() if n > 450} == {}


def test_pyproject_declares_every_dependency_the_library_imports():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower().replace("_", "-") for d in project["dependencies"]}
    declared |= {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower().replace("_", "-")
                 for group in project.get("optional-dependencies", {}).values() for d in group}
    dists = importlib.metadata.packages_distributions()
    needed: dict[str, set[str]] = {}  # top-level module -> the distributions that provide it
    for path in _py_files(LIB):
        for mod in _imports(path):
            top = mod.split(".")[0]
            if top != "lakeml" and top not in sys.stdlib_module_names:
                needed[top] = {d.lower().replace("_", "-") for d in dists.get(top, [])}
    # a module is declared when one of the distributions that provide it is (mlflow: mlflow or mlflow-skinny)
    assert needed and {top: sorted(ds) for top, ds in needed.items() if not ds & declared} == {}


def _asserts_in_conditional_blocks(path: Path) -> list[str]:
    found = []

    def walk(node, inside: str | None):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Assert) and inside:
                found.append(f"{path.name}:{child.lineno}: assert inside {inside}")
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                walk(child, None)
            elif isinstance(child, (ast.For, ast.While, ast.If, ast.AsyncFor)):
                for sub in [*child.body, *child.orelse]:
                    if isinstance(sub, ast.Assert):
                        found.append(f"{path.name}:{sub.lineno}: assert inside {type(child).__name__.lower()} (line {child.lineno})")
                    walk(sub, f"{type(child).__name__.lower()} (line {child.lineno})")
            else:
                walk(child, inside)

    walk(ast.parse(path.read_text()), None)
    return found


def test_no_test_asserts_inside_an_if_or_a_loop():
    """An assertion in a branch or a loop may never run, and the test passes having checked
    nothing: compare whole collections instead."""
    files = sorted((ROOT / "tests").glob("test_*.py"))
    assert files and [f for p in files for f in _asserts_in_conditional_blocks(p)] == []


# what opens a Delta table: reading it by name, writing it, its Delta API, SQL on it
_TABLE_ACCESS = re.compile(
    r"\b(?:spark|sparkSession)\.table\(|\.saveAsTable\(|\bDeltaTable\b|\.format\(\s*[\"']delta[\"']\s*\)|\.tableExists\("
    r"|\.insertInto\(|\.writeTo\(|\.toTable\(|(?:DELETE FROM|MERGE INTO|INSERT INTO|UPDATE|DESCRIBE HISTORY|TBLPROPERTIES)\b"
)


def test_every_delta_table_access_of_the_library_goes_through_core_tables():
    """core/tables.py says it owns every Delta read and write (one catalog for table I/O):
    a stage that needs another kind of access adds a verb there."""
    owner = LIB / "core" / "tables.py"
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
            for p in _py_files(LIB) if p != owner
            for i, line in enumerate(p.read_text().splitlines(), 1)
            if _TABLE_ACCESS.search(line) and not line.lstrip().startswith("#")]
    assert _TABLE_ACCESS.search(owner.read_text()) and hits == []


def test_no_line_is_longer_than_140_characters():
    roots = [ROOT / d for d in ("lib", "jobs", "scripts", "conf", "tests")]
    long = [f"{p.relative_to(ROOT)}:{i}" for p in _py_files(*roots)
            for i, line in enumerate(p.read_text().splitlines(), 1) if len(line) > 140]
    assert long == []


def _module_of(path: Path) -> str:
    return ".".join(path.relative_to(LIB.parent).with_suffix("").parts)


def _import_graph() -> dict[str, set[str]]:
    """Module -> the library modules it imports (at any depth of its code: a function-level
    import ties two files as much as a top-level one). A package's ``__init__`` only hands
    names on and is no node."""
    modules = {_module_of(p): p for p in _py_files(LIB) if p.name != "__init__.py"}
    graph: dict[str, set[str]] = {}
    for mod, path in modules.items():
        pkg = mod.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
                targets |= {f"{base}.{a.name}" for a in node.names} | {base}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
        graph[mod] = {t for t in targets if t in modules and t != mod}
    return graph


def test_no_import_circles():
    """Files that import each other are one concern split in two, or a job and its tools in one
    file: a stage's job imports its builders, never the other way round."""
    graph, circles, seen = _import_graph(), [], set()
    for start in sorted(graph):
        stack, path = [(start, iter(sorted(graph[start])))], [start]
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
            elif child == start:
                circle = frozenset(path)
                if circle not in seen:
                    seen.add(circle)
                    circles.append(" -> ".join([*path, start]))
            elif child not in path and child > start:
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
    assert len(graph) > 50 and circles == []
