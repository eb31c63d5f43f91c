"""The import rule of docs/architecture.md, read from the source with ``ast`` (nothing is imported).

Every import counts: at module level, under ``if TYPE_CHECKING:``, and inside a
function, because a reader meets them all. ``check`` returns the breaches as
sentences; the test asserts there are none, and feeds it broken trees to show it
would see them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

# A package may import its own modules and those of a lower rank; two packages of one rank never meet.
RANK = {"core": 0, "process": 1, "cdf": 2, "pubsub": 2, "flow": 3, "cli": 4}

# Third-party libraries a layer must never import (the edges own their libraries; only the CLI draws).
NETWORK = ("httpx", "google", "grpc", "orjson", "flask", "functions_framework", "werkzeug", "opentelemetry")
NEVER = {
    "core": (*NETWORK, "rich"),
    "process": ("httpx", "grpc", "ijson", "orjson", "flask", "functions_framework", "rich"),
    "cdf": ("google", "grpc", "flask", "functions_framework", "rich", "opentelemetry"),
    "pubsub": ("httpx", "ijson", "orjson", "flask", "functions_framework", "rich", "opentelemetry"),
    "flow": ("rich", "flask", "functions_framework", "opentelemetry"),
    "cli": ("flask", "functions_framework"),
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # what it imports, dotted (``from a import b`` counts as ``a.b`` when that is a module)
    line: int
    guarded: bool  # under ``if __name__ == "__main__":``


def package_of(module: str) -> str | None:
    """``handlers.core.trigger`` → ``core``; the root package and ``main`` have none."""
    parts = module.split(".")
    return parts[1] if parts[0] == "handlers" and len(parts) > 2 else None


def read_tree(root: Path, folders: tuple[str, ...] = ("handlers",)) -> dict[str, str]:
    """Every module of ``folders`` (``handlers/`` alone by default) and ``main.py`` under ``root``, by dotted name."""
    sources = {"main": (root / "main.py").read_text()}
    for path in sorted(p for folder in folders for p in (root / folder).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        sources[name] = path.read_text()
    return sources


def imports_of(module: str, source: str, modules: Mapping[str, str]) -> Iterator[Import]:
    """Every import in ``source``, wherever it stands."""
    tree = ast.parse(source)
    guarded = {id(n) for node in ast.walk(tree) if _is_main_guard(node) for n in ast.walk(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno, id(node) in guarded)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                yield Import(module, full if full in modules else node.module, node.lineno, id(node) in guarded)


def _is_main_guard(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)


def check(sources: Mapping[str, str]) -> list[str]:
    """Every breach of the rule in ``sources`` (dotted name → text), as one sentence each."""
    found = [i for module, text in sources.items() for i in imports_of(module, text, sources)]
    return [*_layer_breaches(found), *_main_breaches(found), *_cycles(found, sources)]


def _layer_breaches(found: list[Import]) -> Iterator[str]:
    for i in found:
        own, theirs = package_of(i.module), package_of(i.target)
        if own is None:
            continue
        top = i.target.split(".")[0]
        if top in NEVER[own]:
            yield f"{i.module}:{i.line} imports {i.target}: handlers.{own} never imports {top}"
        if theirs is not None and theirs != own and RANK[theirs] >= RANK[own]:
            yield f"{i.module}:{i.line} imports {i.target}: handlers.{own} may not import handlers.{theirs}"


def _main_breaches(found: list[Import]) -> Iterator[str]:
    for i in found:
        if i.module == "main" and package_of(i.target) == "cli" and not i.guarded:
            yield f"main:{i.line} imports {i.target}: the function's path never loads the CLI"


def _cycles(found: list[Import], sources: Mapping[str, str]) -> Iterator[str]:
    graph: dict[str, set[str]] = {m: set() for m in sources}
    for i in found:
        if i.target in sources and i.target != i.module:
            graph[i.module].add(i.target)
    seen: set[frozenset[str]] = set()
    for cycle in _strongly_connected(graph):
        if len(cycle) > 1 and frozenset(cycle) not in seen:
            seen.add(frozenset(cycle))
            yield "import cycle: " + " → ".join(sorted(cycle))


def _strongly_connected(graph: Mapping[str, set[str]]) -> Iterator[list[str]]:
    """Tarjan's algorithm, iterative enough for a tree this size."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> Iterator[list[str]]:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                yield from visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            yield component

    for node in sorted(graph):
        if node not in index:
            yield from visit(node)
