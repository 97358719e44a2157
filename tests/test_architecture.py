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
    assert {"checkpoint", "data", "files", "data.images", "data.imagecache", "nn.model",
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
    assert "checkpoint" not in graph["data.imagecache"] | graph["data.images"] | graph["rundir"]
    for path in PACKAGE.rglob("*.py"):  # the data package's image cache included
        if path.stem != "files":
            assert "def atomic_write_bytes" not in path.read_text(encoding="utf-8") or (
                path.stem == "rundir"), path  # rundir wraps it with its error message


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` that can run: all but the bodies of ``if TYPE_CHECKING:``
    (imports for annotations only, never executed)."""
    found: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        found.append(node)
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING",
                                                                    "typing.TYPE_CHECKING"):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))
    return found


def _loads(node: ast.AST) -> set[str]:
    """The nncli modules one import statement loads (none for any other node)."""
    if isinstance(node, ast.ImportFrom) and node.module and (
            node.module == "nncli" or node.module.startswith("nncli.")):
        return _resolve(node.module) | {m for alias in node.names
                                        for m in _resolve(f"{node.module}.{alias.name}")}
    if isinstance(node, ast.Import):
        return {m for a in node.names if a.name.startswith("nncli.") for m in _resolve(a.name)}
    return set()


def runtime_graph() -> dict[str, set[str]]:
    """Every module -> the nncli modules it imports when it runs, lazy imports inside
    functions included, annotation-only imports (under ``if TYPE_CHECKING:``) left out."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        if name:
            tree = ast.parse(path.read_text(encoding="utf-8"))
            graph[name] = {m for node in _runtime_nodes(tree) for m in _loads(node)} - {name}
    return graph


def _in_data(name: str) -> bool:
    return name == "data" or name.startswith("data.")


# All that the data package stands on when it runs, through any chain of imports: the error
# type (defined in nncli.nn's dependency-free errors module, re-exported by nncli.errors),
# file plumbing, signals, test pauses and the memory check.
DATA_MAY_REACH = {"errors", "nn", "nn.errors", "files", "interrupts", "testhooks", "memory"}


def test_the_data_package_imports_no_model_checkpoint_blas_or_commands() -> None:
    """nncli.data reads, labels, splits and normalizes; it never imports the math, the
    annex, the checkpoint, the builder, training or the CLI — nor the config, whose values
    it is given — not even lazily, nor through the modules it imports."""
    graph = runtime_graph()
    data = {name for name in graph if _in_data(name)}
    assert {"data", "data.types", "data.sources", "data.images", "data.tables"} <= data
    forbidden = ("nn", "fast", "checkpoint", "build", "train", "cli", "config")
    outside = {m for name in data for m in graph[name] if not _in_data(m)}
    assert not {m for m in outside if m.split(".")[0] in forbidden}, outside
    reached, todo = set(), list(outside)
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(graph.get(module, ()))
    assert reached <= DATA_MAY_REACH, reached - DATA_MAY_REACH


def test_no_import_cycle_runs_through_the_data_package() -> None:
    """Lazy imports included: the registry imports the readers, the readers the nouns, and
    nothing imports back (the package's __init__ re-exports lazily and imports nothing)."""
    graph = runtime_graph()
    assert graph["data"] == set()
    assert [c for c in cycles(graph) if any(_in_data(m) for m in c)] == []
    for reader in ("data.images", "data.folders", "data.imagecache", "data.tables",
                   "data.arrays", "data.npzfile"):
        assert not graph[reader] & {"data.sources", "data.prepare"}, reader
