"""The package boundaries of ARCHITECTURE.md, read from the code's own imports: every
import counts (module level, function-local and under TYPE_CHECKING)."""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT

PACKAGES = ("config", "engine", "worker", "producer", "bench")
MAX_LINES = 420


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _imported(path: Path) -> Iterator[str]:
    """Every module name an import statement in `path` names (absolute imports only)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                extension = ROOT.joinpath(*full.split(".")).with_suffix(".pyi").exists()
                yield full if full in MODULES or extension else node.module


def _project_module(name: str) -> str | None:
    """The project module an imported name resolves to (None: outside the project, or the
    C extension engine._native, which imports nothing of ours)."""
    if name.startswith("engine._native"):
        return None
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        deps = {m for i in _imported(path) if (m := _project_module(i)) and m != name}
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

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
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _imports_of(package: str) -> dict[str, set[str]]:
    """module -> every name it imports (project or not), for the modules of a package."""
    return {name: set(_imported(path)) for name, path in MODULES.items()
            if name == package or name.startswith(package + ".")}


def _offenders(package: str, allowed: tuple[str, ...], denied: tuple[str, ...]) -> list[str]:
    """Imports of `package` that start with a denied prefix and no allowed one."""
    bad = []
    for module, names in _imports_of(package).items():
        for name in sorted(names):
            if name.startswith(denied) and not name.startswith(allowed):
                bad.append(f"{module} imports {name}")
    return bad


def test_the_producer_knows_only_the_workers_wire_contract() -> None:
    assert _offenders("producer", ("worker.protocol",), ("worker",)) == []


def test_the_engine_knows_no_redis_arq_asyncio_or_farm() -> None:
    denied = ("redis", "arq", "asyncio", "uvloop", "worker", "producer", "bench")
    assert _offenders("engine", (), denied) == []


def test_the_worker_knows_no_producer_and_config_knows_nothing_of_ours() -> None:
    assert _offenders("worker", (), ("producer", "bench")) == []
    assert _offenders("config", (), ("engine", "worker", "producer", "bench")) == []


def test_the_bench_uses_only_public_apis() -> None:
    # A package's public API is what its __init__ exports (and the worker's wire contract).
    public = ("engine", "worker", "producer", "worker.protocol", "config")
    bad = [f"{module} imports {name}" for module, names in _imports_of("bench").items()
           for name in sorted(names)
           if name.split(".")[0] in ("engine", "worker", "producer") and name not in public]
    assert bad == []


@pytest.mark.parametrize("package", ["engine", "worker", "producer"])
def test_every_public_name_resolves(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"


def test_no_source_file_is_over_the_size_limit() -> None:
    files = [*MODULES.values(), *(ROOT / "engine" / "native").glob("*.[ch]")]
    long = {str(p.relative_to(ROOT)): n for p in files
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
