"""Import rules: the modules' own imports, read from their source (every ``import nncli.x``
and ``from nncli.x import``, also those inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nncli"


def nncli_imports(path: Path, top_level_only: bool) -> set[str]:
    """The nncli modules that the module at ``path`` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "nncli":
                found |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names
                      if a.name.startswith("nncli.")}
    return found - {path.stem}


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
    return {p.stem: nncli_imports(p, top_level_only) for p in PACKAGE.glob("*.py")}


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_another_that_imports_it_back_at_load_time() -> None:
    graph = module_graph(top_level_only=True)
    assert {"checkpoint", "data", "files", "images", "imagecache"} <= set(graph)
    assert cycles(graph) == []


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
