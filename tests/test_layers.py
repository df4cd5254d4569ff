"""The import graph of ``resourceloop``: acyclic, ``TYPE_CHECKING`` imports included, in layers.

Read from the source with ``ast`` (every ``import`` statement, wherever it stands), so an
import hidden under ``if TYPE_CHECKING:`` or inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import resourceloop

ROOT = Path(resourceloop.__file__).parent

#: Each layer imports only from layers before it (the core's layers; STYLE.md, "Imports").
LAYERS: list[set[str]] = [
    {"warnings", "_compat", "_errors"},
    {"_locks"},
    {"_config"},
    {"_state"},
    {"_registry"},
    {"_force", "_reach"},
    {"_release"},
    {"_loop_run"},
    {"_lifecycle"},
    {"_closehook", "_reaper"},
    {"_runtime"},
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__")


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - node.level + 1]
                stem = ".".join([*base, node.module] if node.module else base)
                targets = [f"{stem}.{a.name}".strip(".") for a in node.names] + [stem]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "resourceloop"
            ):
                stem = (node.module or "").removeprefix("resourceloop").lstrip(".")
                targets = [f"{stem}.{a.name}".strip(".") for a in node.names] + [stem]
            for target in targets:
                if target in modules and target != name:
                    edges[name].add(target)
                    break
    return edges


def test_the_import_graph_has_no_cycle() -> None:
    """No module imports, even for type checking only, a module that imports it back."""
    edges = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)
    assert cycles == []


def test_the_core_imports_only_from_the_layers_before_it() -> None:
    """``_state`` knows only the leaf, ``_lifecycle`` nothing of its triggers, and so on."""
    edges = _graph()
    layer_of = {module: i for i, layer in enumerate(LAYERS) for module in layer}
    wrong = [
        f"{module} -> {target}"
        for module, targets in edges.items()
        if module in layer_of
        for target in targets
        if target in layer_of and layer_of[target] >= layer_of[module] and target != module
    ]
    assert wrong == []
