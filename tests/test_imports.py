"""The package's import structure: no import cycles, and the catalog imports and loads without torch.

The graph counts every explicit import of a `generator` module, at module level and inside
functions alike (a function-level import is still a dependency, only a deferred one):
`import generator.a.b` and `from generator.a import b` (b a module) are edges to generator.a.b;
`from generator.a import name` (name not a module) is an edge to the package generator.a.
Relative imports are resolved. A package's implicit import of its parent `__init__` is not
counted."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import generator

PACKAGE = Path(generator.__file__).parent


def module_names() -> dict[str, Path]:
    """Every module of the package by dotted name (packages by their __init__.py)."""
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("generator", *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imports_of(name: str, source: str, is_package: bool, modules: set[str]) -> set[str]:
    """The generator modules that one module imports anywhere in its source."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    names = module_names()
    return {name: imports_of(name, path.read_text(encoding="utf-8"), path.name == "__init__.py", set(names))
            for name, path in names.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path [a, b, ..., a], or None (depth-first search with colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_module_relative_and_function_level_imports():
    graph = import_graph()
    assert "generator.cli" in graph and graph["generator.__main__"] == {"generator.cli"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    source = ("import generator.store\nfrom . import site\nfrom .methods import run\n"
              "def f():\n    import torch\n    from generator.methods.topics import x\n")
    modules = {"generator", "generator.store", "generator.site", "generator.methods", "generator.methods.topics",
               "generator.build"}
    assert imports_of("generator.build", source, False, modules) == {
        "generator.store", "generator.site", "generator.methods", "generator.methods.topics"}
    assert imports_of("generator.methods", "from . import topics\nfrom .. import store\n", True, modules) == {
        "generator.methods.topics", "generator.store"}


def test_the_generator_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


HEAVY = ("torch", "torchvision", "faiss", "sklearn")  # what checking a catalog must not load
REPO = PACKAGE.parent
CATALOGS = [REPO / "catalog.yaml", *sorted((REPO / "catalogs").glob("*.yaml"))]


def heavy_modules_after(code: str) -> list[str]:
    """The HEAVY modules loaded after running `code` in a fresh interpreter."""
    probe = f"{code}\nimport sys; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return [name for name in done.stdout.strip().split(",") if name]


def test_importing_the_catalog_loads_neither_torch_nor_faiss():
    assert heavy_modules_after("import generator.catalog") == []


@pytest.mark.parametrize("path", CATALOGS, ids=lambda path: path.name)
def test_loading_a_catalog_loads_neither_torch_nor_faiss(path):
    """`atlas` checks a catalog in a fraction of a second: the class table and the torchvision
    names it validates against are data, not a loaded torchvision."""
    if "../shared/" in path.read_text(encoding="utf-8") and not (REPO.parent / "shared").is_dir():
        pytest.skip("this catalog names files in ../shared, which is not here")
    code = f"from generator.catalog import load_catalog; load_catalog({str(path)!r})"
    assert heavy_modules_after(code) == []
