"""The package layout of docs/architecture.md, enforced: layers import only downwards, a backend
imports no other backend (only ``backends/shared``), and there is no import circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "airflow_provider_runners"

#: Lower number = lower layer. A module may import its own layer or lower ones.
LAYERS: list[tuple[str, int]] = [
    ("airflow_provider_runners.exceptions", 0),
    ("airflow_provider_runners.core", 1),
    ("airflow_provider_runners.connections", 1),
    ("airflow_provider_runners.defaults", 1),
    # old import paths kept as aliases of core modules
    ("airflow_provider_runners.specs", 1),
    ("airflow_provider_runners.catalog", 1),
    ("airflow_provider_runners.handles", 1),
    ("airflow_provider_runners.lineage", 1),
    ("airflow_provider_runners.backends", 2),
    # the reaper writes evidence; evidence callbacks end runners through governance.ending
    ("airflow_provider_runners.governance.reaper", 5),
    ("airflow_provider_runners.governance", 3),
    ("airflow_provider_runners.evidence", 4),
    ("airflow_provider_runners.hooks", 5),
    ("airflow_provider_runners.testing", 5),
    ("airflow_provider_runners.triggers", 5),
    ("airflow_provider_runners.dask_modules", 5),
    ("airflow_provider_runners.dask_jobs", 5),
    ("airflow_provider_runners.links", 5),
    ("airflow_provider_runners.notifications", 5),
    ("airflow_provider_runners.ol_facets", 5),
    ("airflow_provider_runners.templated_spec", 5),
    ("airflow_provider_runners.sensors", 6),
    ("airflow_provider_runners.operators", 6),
    ("airflow_provider_runners.taskgroup", 7),
    ("airflow_provider_runners.decorators", 7),
    ("airflow_provider_runners.demo", 8),
    ("airflow_provider_runners.cli", 9),
    ("airflow_provider_runners.plugins", 9),
    ("airflow_provider_runners.get_provider_info", 9),
]


def _layer(module: str) -> int:
    for prefix, layer in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return layer
    if module == "airflow_provider_runners":
        return 0  # the root only holds __version__ and lazy public names (importlib, not imports)
    raise AssertionError(f"{module} is in no layer of docs/architecture.md; add it to LAYERS")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Modules of this package that ``path`` imports, at any depth, outside ``if TYPE_CHECKING``."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("airflow_provider_runners")
        ):
            found.add(node.module)
            for alias in node.names:  # ``from pkg import module``
                candidate = f"{node.module}.{alias.name}"
                if (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").exists() or (
                    PACKAGE.parent / candidate.replace(".", "/") / "__init__.py"
                ).exists():
                    found.add(candidate)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("airflow_provider_runners"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


GRAPH = {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def _backend_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) >= 3 and parts[1] == "backends" and (PACKAGE / "backends" / parts[2]).is_dir():
        return parts[2]
    return None


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_only_go_down(module: str) -> None:
    upward = sorted(dep for dep in GRAPH[module] if _layer(dep) > _layer(module))
    assert not upward, f"{module} (layer {_layer(module)}) imports upward: {upward}"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if _backend_of(m) not in (None, "shared")))
def test_backends_do_not_import_each_other(module: str) -> None:
    own = _backend_of(module)
    others = sorted(dep for dep in GRAPH[module] if _backend_of(dep) not in (None, "shared", own))
    assert not others, f"{module} imports another backend: {others}"


def test_no_import_circles() -> None:
    """Between modules (a package's ``__init__`` re-exporting its own modules is not a circle)."""
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def edges(module: str) -> list[str]:
        return [
            d for d in GRAPH.get(module, ()) if d in GRAPH and d != module and not module.startswith(d + ".")
        ]

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for dep in edges(module):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[module] = 2

    for module in GRAPH:
        if module not in state:
            visit(module)
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)
