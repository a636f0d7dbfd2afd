"""The layer rules of DESIGN.md, checked on the source: imports point down, no cycles, one size.

Every ``import`` of a ``lawsearch`` module, at the top of a file or inside a
function (a lazy import is still a dependency), is an edge of the module graph.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lawsearch"
BENCHMARKS = PACKAGE.parent / "benchmarks"
#: the most lines a module holds before its docstring must say why one concept needs them
MAX_LINES = 600

#: layer of each top-level part (an import may only point to the same layer or below)
LAYERS: dict[str, int] = {
    "_errors": 1,
    "_picklable": 1,
    "_curve": 1,
    "_fit": 1,
    "laws": 1,
    "schedules": 1,
    "schedule_opt": 1,
    "mixtures": 1,
    "_surrogate": 1,
    "intrinsic_dim": 1,
    "examples": 1,
    "fitting": 1,
    "recorded": 1,
    "optuna": 2,
    "train": 3,
    "search": 4,
    "config": 4,
    "storage": 4,
    "_reconnect": 4,
    "study": 4,
    "preflight": 4,
    "report": 5,
    "runner": 5,
    "cli": 6,
    "__main__": 6,
}
#: third-party packages a layer must not import (even lazily)
FORBIDDEN: dict[int, tuple[str, ...]] = {
    1: ("optuna", "torch", "transformers", "datasets", "matplotlib", "plotly", "sqlalchemy"),
    2: ("torch", "transformers", "datasets"),
    3: ("optuna", "sqlalchemy", "matplotlib", "plotly"),
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> Iterator[str]:
    """Every module an import statement of ``path`` names (``from M import a``: M.a or M)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                yield sub if sub in MODULES else node.module


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        targets = {_resolve(n) for n in _imports(path) if n.startswith("lawsearch")}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_every_top_level_part_has_a_layer() -> None:
    parts = {m.split(".")[1] for m in MODULES if "." in m}
    assert parts <= set(LAYERS), (
        f"give these a layer in tests/test_architecture.py: {parts - set(LAYERS)}"
    )


def test_no_import_cycle() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles inside lawsearch/: {cycles}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) is not None))
def test_imports_point_down(module: str) -> None:
    mine = _layer(module)
    assert mine is not None
    up = sorted(t for t in _graph()[module] if (layer := _layer(t)) is not None and layer > mine)
    assert not up, f"{module} (layer {mine}) imports higher layers: {up}"
    banned = FORBIDDEN.get(mine, ())
    heavy = sorted({n for n in _imports(MODULES[module]) if n.split(".")[0] in banned})
    assert not heavy, f"{module} (layer {mine}) must not import {heavy}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_size(module: str) -> None:
    path = MODULES[module]
    lines = path.read_text(encoding="utf-8").count("\n")
    if lines <= MAX_LINES:
        return
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    assert "one concept" in doc.lower(), (
        f"{module} has {lines} lines (> {MAX_LINES}); split it, or say in its docstring why "
        "one concept needs them ('... one concept ...')."
    )


@pytest.mark.parametrize("path", sorted(BENCHMARKS.glob("*.py")), ids=lambda p: p.name)
def test_benchmarks_import_no_cli_module(path: Path) -> None:
    """Benchmarks measure the library (``lawsearch.runner``, ...), not the command line's code.

    A benchmark of the CLI as users run it starts ``python -m lawsearch`` as a process.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    named = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            named += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            named += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    cli = sorted({n for n in named if n == "lawsearch.cli" or n.startswith("lawsearch.cli.")})
    assert not cli, f"benchmarks/{path.name} imports {cli}; call lawsearch.runner instead"
