"""No import cycles inside the eventrouter package.

A cycle makes the import order matter (a module half-initialised when another reads it) and
ties two layers that should not know each other (config <-> store once). Imports inside
functions count: a lazy import hides a cycle, it does not remove it. Imports under
``if TYPE_CHECKING:`` do not (they never run).
"""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Iterator
from pathlib import Path

import eventrouter

PACKAGE = Path(eventrouter.__file__).parent


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _runtime_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """``node`` and everything under it, except the bodies of ``if TYPE_CHECKING:``."""
    yield node
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and ast.unparse(child.test).endswith("TYPE_CHECKING"):
            for other in child.orelse:
                yield from _runtime_nodes(other)
            continue
        yield from _runtime_nodes(child)


def imported_by(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports (a ``from X import Y`` imports ``X.Y`` when
    that is a module, else ``X``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in known else base)
    return {target for target in targets if target in known and target != name}


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported_by(name, path, known) for name, path in known.items()}


def test_the_graph_sees_the_imports():
    graph = import_graph()
    assert "eventrouter.store.base" in graph["eventrouter.store"]
    assert "eventrouter.store.redis" in graph["eventrouter.store"]  # inside a function
    assert "eventrouter.hookspecs" in graph["eventrouter.plugins"]  # from eventrouter import X
    assert "eventrouter.sinks" not in graph["eventrouter.hookspecs"]  # under TYPE_CHECKING


def test_no_import_cycles_inside_eventrouter():
    try:
        graphlib.TopologicalSorter(import_graph()).prepare()
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        raise AssertionError(f"import cycle: {' -> '.join(cycle)}") from None
