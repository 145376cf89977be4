"""The library's shape: a few shared modules at the top, one package per stage, no import cycles
between them, and unit tests laid out like the packages."""

import ast
from pathlib import Path

from conftest import REPO

LIBRARY = REPO / "scripts" / "hcsflow"


def _units():
    """Top-level modules and packages of hcsflow (the nodes of the import graph)."""
    modules = sorted(p.stem for p in LIBRARY.glob("*.py") if p.stem != "__init__")
    packages = sorted(p.name for p in LIBRARY.iterdir() if (p / "__init__.py").exists())
    return modules, packages


def _imported_units(path: Path) -> set[str]:
    """The hcsflow units a file imports, at module level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] == "hcsflow":
                if len(parts) > 1:
                    out.add(parts[1])
                else:  # from hcsflow import io, checks
                    out.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "hcsflow" and len(parts) > 1:
                    out.add(parts[1])
    return out


def import_graph() -> dict[str, set[str]]:
    modules, packages = _units()
    graph = {}
    for unit in modules + packages:
        files = [LIBRARY / f"{unit}.py"] if unit in modules else (LIBRARY / unit).rglob("*.py")
        graph[unit] = set().union(*(_imported_units(f) for f in files)) - {unit}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as a path (first node repeated at the end), or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_find_cycle_known_answers():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_few_modules_at_the_top_and_one_package_per_stage():
    modules, packages = _units()
    assert len(modules) <= 8, modules
    for stage in ("ingest", "segment", "cells", "classify", "deep", "predict"):
        assert stage in packages


def test_no_import_cycles_between_packages():
    graph = import_graph()
    assert find_cycle(graph) is None, f"import cycle between hcsflow units: {find_cycle(graph)}"
    # the shared modules sit below every stage
    for shared in ("io", "runner", "batches"):
        assert graph[shared] <= {"io", "runner", "batches"}, (shared, graph[shared])


def test_every_package_has_a_docstring_and_its_unit_tests_mirror_it():
    _, packages = _units()
    for package in packages:
        doc = ast.get_docstring(ast.parse((LIBRARY / package / "__init__.py").read_text()))
        assert doc and len(doc) > 60, f"hcsflow.{package} needs a docstring saying what it does"
        assert list((REPO / "tests" / "unit" / package).glob("test_*.py")), package
