"""The package's shape: no import cycles, imports only downward through the layers, short modules.

Read from the source with `ast` (nothing is imported), every import counted, including those
inside functions. Layers are matched by module name prefix, so new modules fall into place:

    0 foundation   affinegan_tf (package), errors, files, config, machine_load, compute_settings
    1 data         affinegan_tf.data.*, affinegan_tf.toy.* (files -> frames -> cache -> tf.data)
    2 model        layers, networks, intensity, losses, nonfinite, optimizers, ema, gan
    3 run          calibration, run_folder, recipes, checkpoints, rendering, animation
    4 training     samples, callbacks, distributed, training, speed
    5 products     export.*, generation, evaluation.*, and any module not named here
    6 entry points demo, cli, __main__

A module may import its own layer and the layers below it, never one above.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "affinegan_tf"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
MAX_LINES = 500

LAYERS = (
    (
        "foundation",
        ("affinegan_tf", "errors", "files", "config", "machine_load", "compute_settings"),
    ),
    ("data", ("data", "toy")),
    (
        "model",
        (
            "conv_forms",
            "layers",
            "networks",
            "intensity",
            "losses",
            "nonfinite",
            "optimizers",
            "ema",
            "gan",
        ),
    ),
    ("run", ("calibration", "run_folder", "recipes", "checkpoints", "rendering", "animation")),
    ("training", ("samples", "callbacks", "distributed", "training", "speed")),
    ("products", ("export", "generation", "evaluation")),
    ("entry points", ("demo", "cli", "__main__")),
)
DEFAULT_LAYER = "products"

# Exceptions, each with its reason; the test fails when one is no longer needed, so that it is
# removed rather than left to hide a new problem.
LONG_MODULES: dict[str, str] = {  # "affinegan_tf/path.py": "why it is allowed, until when"
    "affinegan_tf/data/pipeline.py": "503 lines after the pure-TF stream (issue 15): split next",
}
KNOWN_CYCLES: dict[frozenset[str], str] = {}  # frozenset of module names: "why, until when"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def resolve(name: str) -> str:
    """The package module an imported name lives in (a module, else its package)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports_of(module: str) -> set[str]:
    """The package modules `module` imports, anywhere in its body."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names = [f"{base}.{alias.name}" for alias in node.names] or [base]
        else:
            continue
        for name in names:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                target = resolve(name)
                if target != module:
                    found.add(target)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def layer_of(module: str) -> int:
    if module == PACKAGE:
        return 0
    first = module.split(".")[1]
    for rank, (_, prefixes) in enumerate(LAYERS):
        if first in prefixes:
            return rank
    return [name for name, _ in LAYERS].index(DEFAULT_LAYER)


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_import_graph_is_read():
    assert {"affinegan_tf.gan", "affinegan_tf.training", "affinegan_tf.cli"} <= set(MODULES)
    assert "affinegan_tf.intensity" in GRAPH["affinegan_tf.gan"]
    assert "affinegan_tf.export.signature" in GRAPH["affinegan_tf.export.saved_model"]


def test_no_import_cycles():
    cycles = [frozenset(component) for component in strongly_connected(GRAPH)]
    new = [sorted(cycle) for cycle in cycles if cycle not in KNOWN_CYCLES]
    assert not new, f"import cycles: {new}"
    gone = [sorted(cycle) for cycle in KNOWN_CYCLES if cycle not in cycles]
    assert not gone, f"these cycles are gone: remove them from KNOWN_CYCLES: {gone}"


def test_lower_layers_never_import_upper_ones():
    names = [name for name, _ in LAYERS]
    upward = [
        f"{module} ({names[layer_of(module)]}) imports {target} ({names[layer_of(target)]})"
        for module, targets in GRAPH.items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "imports against the one-way flow:\n" + "\n".join(upward)


def test_nothing_imports_the_command_line():
    importers = [module for module, targets in GRAPH.items() if "affinegan_tf.cli" in targets]
    assert importers in ([], ["affinegan_tf.__main__"]), importers


def test_modules_stay_short():
    lengths = {
        str(path.relative_to(ROOT.parent)): len(path.read_text().splitlines())
        for path in MODULES.values()
    }
    long = {path: count for path, count in lengths.items() if count > MAX_LINES}
    unexplained = sorted(set(long) - set(LONG_MODULES))
    assert not unexplained, f"modules over {MAX_LINES} lines: {[(p, long[p]) for p in unexplained]}"
    stale = sorted(set(LONG_MODULES) - set(long))
    assert not stale, f"now short or gone, remove from LONG_MODULES: {stale}"
