"""Array folders (X.npy + y.npy, read memory-mapped): the same training as the same data in
an .npz, statistics in blocks equal to the in-memory ones, the block shuffle, the lazy
normalized view, memory that does not follow N, and one error line per bad folder."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers_data import cli, config_doc, load_npz, metrics_jsonl, write_yaml
from hypothesis import given
from hypothesis import strategies as st

from nncli.config import config_from_dict
from nncli.data import Normalization, fit_normalization, load_training_data, rowview
from nncli.data.normalize import fit_normalization_rows
from nncli.data.rowview import NormalizedRows, block_order
from nncli.train import train


def write_folder(folder: Path, X: np.ndarray, y: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "X.npy", X)
    np.save(folder / "y.npy", y)
    return folder


def data_of(kind: str, n: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """X (n, 12) of float32 / uint8 / float64 images (n, 3, 4), labels strings or ints."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    if kind == "uint8":
        X = (rng.integers(0, 200, (n, 12)) + 18 * labels[:, None]).astype(np.uint8)
        return X, labels  # int labels
    X = rng.normal(size=(n, 12)) * 3 + labels[:, None]
    if kind == "float64-images":
        return X.reshape(n, 3, 4), np.array(["7", "12", "100"])[labels]
    return X.astype(np.float32), np.array(["cat", "dog", "eel"])[labels]


CASES = {  # X kind, data section, train section
    "float32-standard-adam": ("float32", {"val_split": 0.2, "normalize": "standard"},
                              {"optimizer": "adam"}),
    "uint8-scale-sgd": ("uint8", {"val_split": 0.25, "test_split": 0.2, "normalize": "scale"},
                        {"optimizer": "sgd"}),
    "float64-images-mean": ("float64-images", {"val_split": 0.2, "normalize": "mean"},
                            {"optimizer": "momentum"}),
}


def run(tmp_path: Path, source: Path, data: dict[str, Any], train_keys: dict[str, Any],
        name: str) -> Path:
    doc = config_doc(source, data=data, model={"hidden": [10]},
                     train={"epochs": 3, "batch_size": 16, "lr": 0.05, "dtype": "float64",
                            **train_keys})
    out = tmp_path / name
    result = cli("train", write_yaml(tmp_path / f"{name}.yaml", doc), "--out", out, "--quiet")
    assert result.exit_code == 0, result.stderr
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_array_folder_trains_to_the_weights_of_the_same_npz(tmp_path: Path,
                                                               case: str) -> None:
    kind, data, train_keys = CASES[case]
    X, y = data_of(kind)
    np.savez(tmp_path / "same.npz", X=X, y=y)
    folder = write_folder(tmp_path / "arrays", X, y)
    from_npz = run(tmp_path, tmp_path / "same.npz", data, train_keys, "npz")
    from_folder = run(tmp_path, folder, data, train_keys, "folder")
    a, meta_a = load_npz(from_npz / "checkpoints" / "last.npz")
    b, meta_b = load_npz(from_folder / "checkpoints" / "last.npz")
    for key in ("W1", "b1", "W2", "b2", "norm_shift", "norm_scale"):
        if key in a:
            np.testing.assert_array_equal(b[key], a[key], err_msg=key)
    assert metrics_jsonl(from_folder) and [
        {k: v for k, v in row.items() if k != "seconds"} for row in metrics_jsonl(from_folder)
    ] == [{k: v for k, v in row.items() if k != "seconds"} for row in metrics_jsonl(from_npz)]
    summary = json.loads((from_folder / "summary.json").read_text())
    if "test_split" in data:
        expected = json.loads((from_npz / "summary.json").read_text())["test"]
        assert summary["test"] == expected


@given(n=st.integers(1, 40), D=st.integers(1, 6), elements=st.integers(1, 60),
       kind=st.sampled_from(["scale", "mean", "standard"]),
       dtype=st.sampled_from(["float32", "float64", "uint8"]), seed=st.integers(0, 2 ** 16))
def test_statistics_in_blocks_equal_the_in_memory_ones(n: int, D: int, elements: int,
                                                       kind: str, dtype: str,
                                                       seed: int) -> None:
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, D)) * 50 + 20).astype(dtype) if dtype != "uint8" else \
        rng.integers(0, 256, (n, D)).astype(np.uint8)
    rows = np.flatnonzero(rng.random(n) < 0.7) if n > 2 else None
    reference = fit_normalization(X if rows is None else X[rows], kind, False)
    blocked = fit_normalization_rows(X, rows, kind, False, elements)
    np.testing.assert_allclose(blocked.shift, reference.shift, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(blocked.scale, reference.scale, rtol=1e-12)
    whole = fit_normalization_rows(X, rows, kind, False, n * D)  # one block: exact
    np.testing.assert_array_equal(whole.shift, reference.shift)
    np.testing.assert_array_equal(whole.scale, reference.scale)


@given(n=st.integers(1, 300), row_bytes=st.integers(1, 64), block_bytes=st.integers(1, 900),
       seed=st.integers(0, 2 ** 16))
def test_the_block_shuffle_is_a_reproducible_permutation_block_by_block(
        n: int, row_bytes: int, block_bytes: int, seed: int) -> None:
    order = block_order(n, row_bytes, np.random.default_rng(seed), block_bytes)
    np.testing.assert_array_equal(np.sort(order), np.arange(n))  # every row exactly once
    again = block_order(n, row_bytes, np.random.default_rng(seed), block_bytes)
    np.testing.assert_array_equal(order, again)
    per_block = max(1, block_bytes // row_bytes)
    if n <= per_block:  # one block: the in-memory order itself
        np.testing.assert_array_equal(order, np.random.default_rng(seed).permutation(n))
    # the epoch reads one block at a time: each run of a block's length lies in one block
    start = 0
    while start < n:
        block = order[start] // per_block
        size = min(per_block, n - block * per_block)
        assert set((order[start:start + size] // per_block).tolist()) == {block}
        start += size


def test_a_file_of_several_blocks_trains_and_sees_every_row_once_an_epoch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = data_of("float32", n=200)
    folder = write_folder(tmp_path / "arrays", X, y)
    monkeypatch.setattr(rowview, "BLOCK_BYTES", 12 * 4 * 25)  # 25 rows a block: 7 blocks
    seen: list[np.ndarray] = []
    take = NormalizedRows.take

    def spy(self: NormalizedRows, idx: np.ndarray, *args: Any, **kw: Any) -> np.ndarray:
        if kw.get("out") is not None:  # the training step's gather (scoring reads slices)
            seen.append(np.asarray(idx).copy())
        return take(self, idx, *args, **kw)

    monkeypatch.setattr(NormalizedRows, "take", spy)
    cfg = config_from_dict(config_doc(folder, data={"val_split": 0.2},
                                      model={"hidden": [8]},
                                      train={"epochs": 2, "batch_size": 10, "lr": 0.05}))
    result = train(cfg, out=tmp_path / "run")
    n_train = 160
    assert np.isfinite(result.summary["final"]["loss"])
    epochs = np.concatenate(seen).reshape(2, n_train)
    for epoch in epochs:
        np.testing.assert_array_equal(np.sort(epoch), np.arange(n_train))
        assert not np.array_equal(epoch, np.random.default_rng(0).permutation(n_train))
    first_batch_blocks = set((epochs[0][:10] // 25).tolist())
    assert len(first_batch_blocks) == 1  # a batch comes from one block


@pytest.mark.parametrize("read_elements", [24, 1 << 16])  # reads in chunks of 2 rows, or 1
def test_the_view_reads_what_normalizing_the_rows_in_memory_gives(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_elements: int) -> None:
    monkeypatch.setattr(rowview, "READ_ELEMENTS", read_elements)
    X, y = data_of("uint8", n=50)
    folder = write_folder(tmp_path / "arrays", X, y)
    mapped = np.load(folder / "X.npy", mmap_mode="r")
    rows = np.array([1, 2, 5, 8, 13, 21, 34, 40, 41, 49])
    norm = fit_normalization(X[rows], "standard", False)
    for dtype in ("float32", "float64"):
        expected = norm.apply(X[rows], dtype)
        view = NormalizedRows(mapped, rows, norm, dtype)
        assert view.shape == (10, 12) and len(view) == 10 and view.dtype == np.dtype(dtype)
        out = np.empty((3, 12), dtype=dtype)
        got = view.take(np.array([7, 0, 3]), axis=0, out=out, mode="clip")
        assert got is out
        np.testing.assert_array_equal(out, expected[[7, 0, 3]])
        np.testing.assert_array_equal(view[2:9], expected[2:9])
        np.testing.assert_array_equal(view[::3], expected[::3])
        np.testing.assert_array_equal(view[-1], expected[-1])
        np.testing.assert_array_equal(view.materialize(), expected)
    whole = NormalizedRows(mapped, None, Normalization("none"), "float32")
    np.testing.assert_array_equal(whole[10:21], X[10:21].astype(np.float32))
    np.testing.assert_array_equal(whole[:], X.astype(np.float32))


def test_training_reads_the_file_mapped_and_never_copies_it_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    n, D = 80_000, 125  # X.npy: 40 MB of float32
    X = rng.normal(size=(n, D)).astype(np.float32)
    folder = write_folder(tmp_path / "big", X, rng.integers(0, 4, n))
    del X
    modes: list[Any] = []
    real_load = np.load

    def load(path: Any, *args: Any, **kw: Any) -> Any:
        if str(path).endswith("X.npy"):
            modes.append(kw.get("mmap_mode"))
        return real_load(path, *args, **kw)

    monkeypatch.setattr(np, "load", load)
    cfg = config_from_dict(config_doc(folder, data={"val_split": 0.1, "normalize": "standard"},
                                      model={"hidden": [8]},
                                      train={"epochs": 1, "batch_size": 256, "lr": 0.01}))
    tracemalloc.start()
    try:
        result = train(cfg, out=tmp_path / "run")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert modes == ["r"]
    assert np.isfinite(result.summary["final"]["val_loss"])
    assert peak < 10e6, f"traced peak {peak / 1e6:.1f} MB for a 40 MB X"


def test_eval_scores_an_array_folder_as_the_same_npz(tmp_path: Path) -> None:
    X, y = data_of("float32")
    np.savez(tmp_path / "same.npz", X=X, y=y)
    folder = write_folder(tmp_path / "arrays", X, y)
    run_dir = run(tmp_path, folder, {"val_split": 0.2}, {}, "folder")
    best = run_dir / "checkpoints" / "best.npz"
    on_folder = cli("eval", best, folder, "--json")
    on_npz = cli("eval", best, tmp_path / "same.npz", "--json")
    assert on_folder.exit_code == 0, on_folder.stderr
    a, b = json.loads(on_folder.stdout), json.loads(on_npz.stdout)
    assert a["n"] == 90 and {k: v for k, v in a.items() if k != "data"} == \
        {k: v for k, v in b.items() if k != "data"}
    predicted = cli("predict", best, folder)
    assert predicted.exit_code == 2 and "score it with nncli eval" in predicted.stderr


def _bad_folders(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Each bad folder and the file its error must name."""
    good_X, good_y = np.zeros((6, 3), np.float32), np.arange(6) % 2
    made: dict[str, tuple[Path, str]] = {}

    def folder(name: str, X: Any = None, y: Any = None, raw_x: bytes | None = None) -> Path:
        path = tmp_path / name
        path.mkdir()
        if X is not None:
            np.save(path / "X.npy", X)
        if raw_x is not None:
            (path / "X.npy").write_bytes(raw_x)
        if y is not None:
            np.save(path / "y.npy", y)
        return path

    made["no y"] = (folder("no-y", X=good_X), "y.npy")
    made["no X"] = (folder("no-x", y=good_y), "X.npy")
    made["N differs"] = (folder("n", good_X, np.arange(5)), "y.npy")
    made["int64 X"] = (folder("int", good_X.astype(np.int64), good_y), "X.npy")
    made["1-D X"] = (folder("flat", np.zeros(6, np.float32), good_y), "X.npy")
    made["objects"] = (folder("obj", good_X, np.array([1, "a", None, 2, 3, 4], object)),
                       "y.npy")
    made["Fortran"] = (folder("fortran", np.asfortranarray(np.ones((6, 3), np.float32)),
                              good_y), "X.npy")
    folder("truncated", good_X, good_y)
    data = (tmp_path / "truncated" / "X.npy").read_bytes()
    (tmp_path / "truncated" / "X.npy").write_bytes(data[:-10])
    made["truncated"] = (tmp_path / "truncated", "X.npy")
    made["not npy"] = (folder("text", y=good_y, raw_x=b"1,2,3\n"), "X.npy")
    folder("negative", good_X, good_y)
    data = (tmp_path / "negative" / "X.npy").read_bytes()
    (tmp_path / "negative" / "X.npy").write_bytes(
        data.replace(b"'shape': (6, 3)", b"'shape': (-6,3)"))
    made["negative shape"] = (tmp_path / "negative", "X.npy: damaged .npy header")
    made["NaN"] = (folder("nan", np.array([[0, 1, np.nan]] * 6, np.float32), good_y),
                   "example 1")
    made["one class"] = (folder("one", good_X, np.zeros(6, int)), "only one class")
    return made


def test_each_bad_array_folder_is_one_error_line_naming_the_file(tmp_path: Path) -> None:
    for what, (folder, named) in _bad_folders(tmp_path).items():
        config = write_yaml(tmp_path / f"{folder.name}.yaml",
                            config_doc(folder, train={"epochs": 1}))
        result = cli("train", config, "--out", tmp_path / f"run-{folder.name}", "--quiet")
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2, (what, result.stderr)
        assert len(lines) == 1 and lines[0].startswith("Error: "), (what, result.stderr)
        assert named in lines[0] and "Traceback" not in result.stderr, (what, lines[0])


def test_a_folder_without_arrays_is_still_an_image_folder(tmp_path: Path) -> None:
    from nncli.data import source_kind

    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    write_folder(tmp_path / "arrays", *data_of("float32", n=6))
    assert source_kind(tmp_path / "imgs") == "folder"
    assert source_kind(tmp_path / "arrays") == "arrays"
    data = load_training_data(config_from_dict(config_doc(tmp_path / "arrays")))
    assert isinstance(data.train.X, NormalizedRows) and data.kind == "array"
