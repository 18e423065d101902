"""The package's import graph: no import loops, and every import goes down (or sideways) the layer order.

Every `import` / `from ... import` statement of every module under led_hf/ counts, the ones inside
functions too (a lazy import is still a dependency). The layer order is the one docs/architecture.md
draws; a module may import modules of its own layer or of a lower one, never of a higher one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "led_hf"

# lowest first; a group is a subpackage or a top-level module of led_hf
LAYERS: list[set[str]] = [
    {"errors", "version"},
    {"atomic", "precision", "work_folder", "distributed"},
    {"data", "arguments", "config"},
    {"collators", "modeling"},
    {"losses"},
    {"retrieval"},
    {"evaluation"},
    {"trainers"},
    {"mining", "scoring"},
    {"pipeline"},
    {"cli"},
    {"__init__", "__main__"},  # the package root: the public API and `python -m led_hf`
]
RANK = {group: rank for rank, groups in enumerate(LAYERS) for group in groups}


def module_names() -> dict[str, Path]:
    """Dotted name -> file, for every module of the package (a package is its __init__)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("led_hf", *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = module_names()


def imports_of(name: str, path: Path) -> set[str]:
    """The led_hf modules `name` imports anywhere in its file."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from led_hf.retrieval import encode` imports the submodule led_hf.retrieval.encode
            targets = [
                f"{module}.{alias.name}" if f"{module}.{alias.name}" in MODULES else module
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # `import led_hf.x.y` names module led_hf.x.y
                target = target.rpartition(".")[0]
            if target.startswith("led_hf") and target != name:
                found.add(target)
    return found


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def group(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop of `graph` (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_every_group_has_a_layer():
    unknown = sorted({group(module) for module in MODULES} - set(RANK))
    assert not unknown, f"add {unknown} to LAYERS (and to docs/architecture.md)"


def test_no_import_loop_between_modules():
    # a package's __init__ re-exporting its own submodules is not a loop: leave those edges out
    graph = {
        name: {t for t in targets if not (name != "led_hf" and t.startswith(name + ".") and t in MODULES)}
        for name, targets in GRAPH.items()
    }
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_no_import_loop_between_groups():
    graph: dict[str, set[str]] = {}
    for name, targets in GRAPH.items():
        graph.setdefault(group(name), set()).update(group(t) for t in targets if group(t) != group(name))
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down_the_layers(name):
    upward = [
        f"{target} (layer {RANK[group(target)]})"
        for target in sorted(GRAPH[name])
        if RANK[group(target)] > RANK[group(name)]
    ]
    assert not upward, f"{name} (layer {RANK[group(name)]}) imports a higher layer: {', '.join(upward)}"


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from led_hf.retrieval import encode\n    from . import lucene\n")
    assert imports_of("led_hf.retrieval.faiss_search", source) == {
        "led_hf.retrieval.encode",
        "led_hf.retrieval.lucene",
    }
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_losses_load_without_transformers():
    """Losses are functions of tensors: importing them (and the pooling / score functions they share with the
    models) must not load transformers, e.g. in the spawned gloo workers of the DDP tests."""
    import subprocess
    import sys

    code = "import sys, led_hf.losses; print('transformers' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent
    )
    assert out.stdout.strip() == "False"
