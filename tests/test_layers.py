"""Imports run one way: every module imports only from its own layer or the ones below.

The layers (README "Layout"), bottom to top: errors, spec, protocol, transport, the node API,
the built-in nodes, the runtime, the tools, the CLI, and the ``pinflow`` front door. Every
import counts, at module level or inside a function, under ``TYPE_CHECKING`` or not: a lazy
import that goes up is still a loop in the design. Modules of one layer must not import each
other in a cycle either.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROOTS = {"pinflow": REPO / "pinflow", "pinflow.nodes": REPO / "nodes",
         "pinflow.transport": REPO / "transport"}
BUILT_IN_NODES = {"camera", "detector", "gpu_consumer", "sink", "latency_probe", "framing"}
LAYERS = ["errors", "spec", "protocol", "transport", "node API", "built-in nodes", "runtime",
          "tools", "cli", "front door"]


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in ROOTS.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if package == "pinflow" and parts[0] in ("nodes", "transport"):
                continue
            name = ".".join((package, *parts))
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def layer_of(module: str) -> int:
    parts = module.split(".")
    second = parts[1] if len(parts) > 1 else ""
    if module == "pinflow":
        return LAYERS.index("front door")
    if second in ("cli", "__main__"):
        return LAYERS.index("cli")
    if second in ("tools", "testing"):
        return LAYERS.index("tools")
    if second == "runtime":
        return LAYERS.index("runtime")
    if second == "nodes":
        built_in = len(parts) > 2 and parts[2] in BUILT_IN_NODES
        return LAYERS.index("built-in nodes" if built_in else "node API")
    if second in ("transport", "protocol", "spec", "errors"):
        return LAYERS.index(second)
    raise AssertionError(f"{module} is in no layer: add it to tests/test_layers.py and README")


def _imports(module: str, path: Path) -> list[tuple[str, int]]:
    """(imported pinflow module, line) for every import statement in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.append((candidate if candidate in MODULES else node.module, node.lineno))
    return [(name, line) for name, line in found if name.split(".")[0] == "pinflow"]


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


def test_imports_never_go_up_a_layer() -> None:
    upward = []
    for module, path in sorted(MODULES.items()):
        mine = layer_of(module)
        for target, line in _imports(module, path):
            if layer_of(target) > mine:
                upward.append(f"{path.relative_to(REPO)}:{line}: {module} ({LAYERS[mine]}) "
                              f"imports {target} ({LAYERS[layer_of(target)]})")
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    graph = {module: {t for t, _ in _imports(module, path) if t in MODULES and t != module}
             for module, path in MODULES.items()}
    # A package's __init__ imported by its own modules is the package being loaded, not a loop.
    for module, targets in graph.items():
        targets -= {t for t in targets if module.startswith(t + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*stack[stack.index(target):], target]))
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("module", ["pinflow", "pinflow.spec", "pinflow.errors"])
def test_the_front_door_and_the_spec_load_no_runtime(module: str) -> None:
    """``import pinflow`` and what ``pinflow validate`` needs load no node runtime, data
    plane, numpy, zenoh or pyarrow (a fresh interpreter, so nothing else was imported)."""
    import subprocess
    import sys

    heavy = ["numpy", "zenoh", "pyarrow", "msgspec", "torch", "pinflow.nodes.node",
             "pinflow.transport", "pinflow.runtime"]
    code = (f"import sys, {module}; "
            f"print(','.join(m for m in {heavy!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60).stdout.strip()
    assert loaded == "", f"import {module} loaded {loaded}"
