"""Import rules: the modules' own imports, read from their source (every ``import nncli.x``
and ``from nncli.x import``, also those inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nncli"


def module_name(path: Path) -> str:
    """``nncli/nn/model.py`` -> ``nn.model``; a package's ``__init__.py`` -> its name."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p) for p in PACKAGE.rglob("*.py")} - {""}


def _resolve(dotted: str) -> set[str]:
    """``nncli.nn.model`` -> {nn.model, nn} (importing a submodule runs its packages)."""
    parts = dotted.split(".")[1:]
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & MODULES


def nncli_imports(path: Path, top_level_only: bool) -> set[str]:
    """The nncli modules (``data``, ``nn.model``, ...) that the module at ``path`` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: a relative import (this test reads absolute ones)"
            if node.module and (node.module == "nncli" or node.module.startswith("nncli.")):
                found |= _resolve(node.module)
                for alias in node.names:  # from nncli.nn import model: the module nn.model
                    found |= _resolve(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            found |= {m for a in node.names if a.name.startswith("nncli.")
                      for m in _resolve(a.name)}
    return found - {module_name(path)}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle's node list, found by depth-first search from each node."""
    found: set[tuple[str, ...]] = set()

    def walk(path: list[str]) -> None:
        for nxt in graph.get(path[-1], ()):
            if nxt == path[0]:
                turn = min(range(len(path)), key=path.__getitem__)
                found.add(tuple(path[turn:] + path[:turn]))
            elif nxt not in path and nxt > path[0]:
                walk([*path, nxt])

    for start in graph:
        walk([start])
    return [list(c) for c in sorted(found)]


def module_graph(top_level_only: bool) -> dict[str, set[str]]:
    """Every module of nncli and its subpackages -> the nncli modules it imports."""
    return {module_name(p): nncli_imports(p, top_level_only) for p in PACKAGE.rglob("*.py")
            if module_name(p)}


def test_imports_are_read_with_their_packages() -> None:
    """The reader sees ``from nncli.nn import model``, ``import nncli.fast.blas`` and
    ``from nncli.nn.model import MLP`` inside a function as the modules they load."""
    assert _resolve("nncli.fast.blas") == {"fast", "fast.blas"}
    graph = module_graph(top_level_only=False)
    assert {"nn", "nn.model", "nn.layers", "nn.step", "nn.activations", "nn.losses",
            "nn.optim", "nn.gradcheck", "fast", "fast.blas", "fast.step", "build"} <= set(graph)
    assert "nn.model" in graph["build"] and "nn.gradcheck" in graph["cli"]


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_another_that_imports_it_back_at_load_time() -> None:
    graph = module_graph(top_level_only=True)
    assert {"checkpoint", "data", "files", "images", "imagecache", "nn.model",
            "fast.blas"} <= set(graph)
    assert cycles(graph) == []


# Exceptions to the rule below, each waiting for a move (none: the fused step lives in
# nncli/fast/step.py and wraps nncli/nn/step.py).
PENDING_NN_IMPORTS: set[tuple[str, str]] = set()


def test_the_math_imports_nothing_from_nncli_outside_nncli_nn() -> None:
    """nncli.nn (the lecture) stands on NumPy alone: no config, data, errors or CLI."""
    graph = module_graph(top_level_only=False)
    outside = {(name, imported) for name, imports in graph.items()
               if name == "nn" or name.startswith("nn.")
               for imported in imports if not (imported == "nn" or imported.startswith("nn."))}
    assert outside == PENDING_NN_IMPORTS


def test_the_fast_annex_imports_only_the_math_and_itself() -> None:
    graph = module_graph(top_level_only=False)
    fast = {name: imports for name, imports in graph.items()
            if name == "fast" or name.startswith("fast.")}
    assert fast
    for name, imports in fast.items():
        assert all(m.split(".")[0] in ("nn", "fast") for m in imports), (name, imports)


def test_the_config_takes_its_option_names_from_the_registries() -> None:
    """Adding an activation, loss or optimizer is one entry in its nncli.nn registry."""
    from nncli import config
    from nncli.nn.activations import ACTIVATIONS
    from nncli.nn.losses import LOSSES
    from nncli.nn.optim import UPDATES

    assert config.ACTIVATION_NAMES == tuple(ACTIVATIONS)
    assert config.LOSS_NAMES == tuple(LOSSES)
    assert config.OPTIMIZER_NAMES == tuple(UPDATES)
    graph = module_graph(top_level_only=False)
    assert {"nn.activations", "nn.losses", "nn.optim"} <= graph["config"]
    for name in ("nn.activations", "nn.losses", "nn.optim"):
        assert "config" not in graph[name]


def test_file_plumbing_has_one_owner_that_imports_nothing_above_it() -> None:
    """Atomic writes live in nncli.files, which every writer imports (no reader of data has
    to load the checkpoint module, and so the model and BLAS, to cache pixels)."""
    assert nncli_imports(PACKAGE / "files.py", top_level_only=False) <= {"errors"}
    graph = module_graph(top_level_only=False)
    assert "checkpoint" not in graph["imagecache"] | graph["images"] | graph["rundir"]
    for path in PACKAGE.glob("*.py"):
        if path.stem != "files":
            assert "def atomic_write_bytes" not in path.read_text(encoding="utf-8") or (
                path.stem == "rundir"), path  # rundir wraps it with its error message
