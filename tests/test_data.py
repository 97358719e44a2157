"""The data layer for tables and .npz: readers, labels and classes, val_split, normalization.

(Image folders are tested in test_images.py.)
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers_data import blobs, write_table
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nncli.config import config_from_dict
from nncli.data import (
    fit_normalization,
    load_training_data,
    read_source,
    sort_classes,
    stratified_split,
)
from nncli.errors import NncliError


def cfg_for(train: Path | str, **data: object):
    return config_from_dict({"data": {"train": str(train), **data}})


def read(path: Path, **data: object):
    return read_source(path, cfg_for(path, **data).data)


def read_error(path: Path, **data: object) -> str:
    """The NncliError message of reading ``path``; no warnings may escape on the way."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(NncliError) as info:
            read(path, **data)
    return str(info.value)


# ---------------------------------------------------------------- tables


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_table_reads_features_and_labels(tmp_path: Path, suffix: str) -> None:
    X = np.array([[1.5, -2.0, 3.0], [0.25, 1e-3, -7.0]])
    path = write_table(tmp_path / f"t{suffix}", X, ["cat", "dog"])
    raw = read(path)
    assert (raw.X.tolist(), raw.labels.tolist(), raw.features, raw.input_shape) == (
        X.tolist(), ["cat", "dog"], ["f0", "f1", "f2"], (3,))


def test_label_column_anywhere_features_keep_column_order(tmp_path: Path) -> None:
    X = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    path = write_table(tmp_path / "t.csv", X, ["x", "y"], header=["zeta", "alpha", "mid"],
                       label_column="target", label_pos=1)
    assert path.read_text().splitlines()[0] == "zeta,target,alpha,mid"
    raw = read(path, label_column="target")
    assert (raw.features, raw.X.tolist()) == (["zeta", "alpha", "mid"], X.tolist())


def test_string_labels_sorted_by_name_and_encoded(tmp_path: Path) -> None:
    X, _ = blobs(n_per_class=2, n_features=2)
    labels = ["frog", "frog", "cat", "cat", "dog", "dog"]
    data = load_training_data(cfg_for(write_table(tmp_path / "t.csv", X, labels)))
    assert data.classes == ["cat", "dog", "frog"]
    assert data.train.y.tolist() == [2, 2, 0, 0, 1, 1]


def test_numeric_labels_sorted_numerically(tmp_path: Path) -> None:
    X, _ = blobs(n_per_class=2, n_features=2)
    labels = ["10", "10", "2", "2.0", "1", "1"]  # 2 and 2.0 are one class
    data = load_training_data(cfg_for(write_table(tmp_path / "t.csv", X, labels)))
    assert data.classes == ["1", "2", "10"]
    assert data.train.y.tolist() == [2, 2, 1, 1, 0, 0]


def test_mixed_labels_sorted_by_name() -> None:
    assert sort_classes(["10", "2", "b", "a", "2"]) == ["10", "2", "a", "b"]


@pytest.mark.parametrize("body, fragments", [
    ("a,b,label\n1,2,x\n3,,y\n", ["line 3", "column 2", "missing"]),
    ("a,b,label\n1,2,x\n,4,y\n", ["line 3", "column 1", "missing"]),
    ("a,b,label\n1,2,x\n3,abc,y\n", ["line 3", "column 2", "abc"]),
    ("a,b,label\n1,2,x\n3,4,y,5\n", ["line 3", "4"]),
    ("a,b,label\n1,2,x\n3,4,y\n5,6\n", ["line 4", "2"]),
    ("a,b,label\n1,2,x\n3,4,\n", ["line 3", "label"]),
    ("a,b,label\n1,2,x\n3,inf,y\n", ["line 3", "column 2", "inf"]),
], ids=["missing", "missing-first", "non-numeric", "ragged-long", "ragged-short",
        "missing-label", "non-finite"])
def test_bad_table_rows_name_file_line_and_column(tmp_path: Path, body: str,
                                                  fragments: list[str]) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(body)
    # No missing-value markers (issue 12's default takes "" as one): blank cells are errors
    message = read_error(path, na_values=[])
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_missing_label_column_suggests_the_config_key(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b,class\n1,2,x\n")
    message = read_error(path)
    assert str(path) in message and "'label'" in message and "data.label_column" in message


def test_duplicate_label_column_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,label,b,label\n1,x,2,y\n")
    message = read_error(path)
    assert str(path) in message and re.search(r"label.*(2 times|twice|more than once)", message)


@pytest.mark.parametrize("body", ["a,b,label\n", "a,b,label"])
def test_header_only_table_is_an_error(tmp_path: Path, body: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(body)
    message = read_error(path)
    assert str(path) in message and "no rows" in message


def test_one_class_is_an_error(tmp_path: Path) -> None:
    path = write_table(tmp_path / "t.csv", np.eye(3), ["cat"] * 3)
    with pytest.raises(NncliError, match=r"t\.csv: .*only one class \('cat'\)"):
        load_training_data(cfg_for(path))


def test_blank_lines_keep_error_line_numbers_exact(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,label\n1,x\n\n2,y\n3,z\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        raw = read(path)
    assert (raw.X[:, 0].tolist(), raw.label_lines.tolist()) == ([1.0, 2.0, 3.0], [2, 4, 5])


def test_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("\ufefflabel,a\nx,1\ny,2\n", encoding="utf-8")
    raw = read(path)
    assert (raw.features, raw.labels.tolist()) == (["a"], ["x", "y"])


labels_strategy = st.one_of(
    st.lists(st.integers(-1000, 1000), min_size=1, max_size=12),
    st.lists(st.text("abcxyzXYZ_-", min_size=1, max_size=5), min_size=1, max_size=12),
)


@given(X=hnp.arrays(np.float64, st.tuples(st.integers(1, 12), st.integers(1, 5)),
                    elements=st.floats(allow_nan=False, allow_infinity=False)),
       labels=labels_strategy, delimiter=st.sampled_from([",", "\t"]),
       label_pos=st.integers(0, 5))
def test_random_numeric_tables_round_trip_exactly(tmp_path: Path, X: np.ndarray, labels: list,
                                                  delimiter: str, label_pos: int) -> None:
    labels = (labels * X.shape[0])[:X.shape[0]]
    path = tmp_path / ("t.csv" if delimiter == "," else "t.tsv")
    write_table(path, X, labels, label_pos=min(label_pos, X.shape[1]), delimiter=delimiter)
    raw = read(path)
    assert raw.X.dtype == np.float64 and raw.X.shape == X.shape
    assert np.array_equal(raw.X, X) and np.array_equal(np.signbit(raw.X), np.signbit(X))
    assert raw.labels.tolist() == [str(v) for v in labels]


# ---------------------------------------------------------------- .npz


@pytest.mark.parametrize("shape", [(5, 6), (5, 2, 3), (5, 2, 3, 2)])
def test_npz_x_is_flattened_row_major_and_keeps_its_shape(tmp_path: Path,
                                                          shape: tuple[int, ...]) -> None:
    X = np.random.default_rng(0).normal(size=shape)
    path = tmp_path / "d.npz"
    np.savez(path, X=X, y=np.arange(5) % 2)
    raw = read(path)
    assert raw.input_shape == shape[1:]
    assert np.array_equal(raw.X, np.stack([x.ravel(order="C") for x in X]))


@pytest.mark.parametrize("y, labels", [
    (np.array([3, 1, 3]), ["3", "1", "3"]),
    (np.array([3.0, 1.0, 3.0]), ["3", "1", "3"]),
    (np.array(["cat", "dog", "cat"]), ["cat", "dog", "cat"]),
    (np.array([b"cat", b"dog", b"cat"]), ["cat", "dog", "cat"]),
], ids=["int", "float", "str", "bytes"])
def test_npz_labels(tmp_path: Path, y: np.ndarray, labels: list[str]) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, X=np.ones((3, 2)), y=y)
    assert read(path).labels.tolist() == labels


@pytest.mark.parametrize("arrays, fragment", [
    ({"y": np.arange(3)}, "X"),
    ({"X": np.ones((3, 2))}, "y"),
    ({"X": np.ones((3, 2)), "y": np.arange(4)}, "(3,)"),
    ({"X": np.ones(3), "y": np.arange(3)}, "shape"),
    ({"X": np.array([[1.0], [np.nan]]), "y": np.arange(2)}, "example 2"),
], ids=["no-X", "no-y", "lengths", "1-d-X", "nan"])
def test_npz_errors_name_the_file(tmp_path: Path, arrays: dict, fragment: str) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    message = read_error(path)
    assert str(path) in message and fragment in message


class _MakesADirectoryWhenUnpickled:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("key", ["X", "y"])
def test_npz_object_arrays_are_refused_never_unpickled(tmp_path: Path, key: str) -> None:
    marker = tmp_path / "unpickled"
    trap = np.empty(2, dtype=object)
    trap[:] = [_MakesADirectoryWhenUnpickled(marker), 1]
    arrays = {"X": np.ones((2, 2)), "y": np.arange(2)}
    arrays[key] = trap if key == "y" else np.array([[trap[0], 1.0], [1.0, 1.0]], dtype=object)
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    message = read_error(path)
    assert str(path) in message and "pickle" in message
    assert not marker.exists()


def test_a_file_that_is_not_an_archive_is_not_called_pickled(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    path.write_bytes(b"not a zip file at all")
    message = read_error(path)
    assert str(path) in message and "pickle" not in message


# ---------------------------------------------------------------- val_split


def test_stratified_split_holds_out_round_fraction_of_each_class() -> None:
    counts = {0: 2, 1: 3, 2: 4, 3: 10, 4: 1}
    y = np.random.default_rng(0).permutation(np.repeat(list(counts), list(counts.values())))
    keep, held = stratified_split(y, 0.3, np.random.default_rng(7))
    expected = {k: (max(1, round(0.3 * c)) if c >= 2 else 0) for k, c in counts.items()}
    assert {k: int((y[held] == k).sum()) for k in counts} == expected
    assert np.intersect1d(keep, held).size == 0
    assert np.array_equal(np.sort(np.concatenate([keep, held])), np.arange(len(y)))


@given(y=st.lists(st.integers(0, 4), min_size=1, max_size=60),
       fraction=st.floats(0.01, 0.99), seed=st.integers(0, 2**32 - 1))
def test_stratified_split_properties(y: list[int], fraction: float, seed: int) -> None:
    y = np.array(y)
    keep, held = stratified_split(y, fraction, np.random.default_rng(seed))
    again = stratified_split(y, fraction, np.random.default_rng(seed))
    assert np.array_equal(keep, again[0]) and np.array_equal(held, again[1])
    assert np.array_equal(np.sort(np.concatenate([keep, held])), np.arange(len(y)))
    for k in np.unique(y):
        n, out = int((y == k).sum()), int((y[held] == k).sum())
        assert set(y[keep]) == set(y)  # every class keeps a training example
        assert out == (0 if n == 1 else min(max(round(fraction * n), 1), n - 1))


def test_val_split_depends_on_the_seed_only(tmp_path: Path) -> None:
    X, y = blobs(n_per_class=20)
    path = write_table(tmp_path / "t.csv", X, y)

    def val_rows(seed: int) -> np.ndarray:
        cfg = config_from_dict({"seed": seed, "data": {"train": str(path), "val_split": 0.25,
                                                       "normalize": "none"}})
        data = load_training_data(cfg, dtype="float64")
        assert len(data.val.y) == 15 and np.bincount(data.val.y).tolist() == [5, 5, 5]
        return data.val.X

    assert np.array_equal(val_rows(3), val_rows(3))
    assert not np.array_equal(val_rows(3), val_rows(4))


def test_val_split_that_holds_out_nothing_is_an_error(tmp_path: Path) -> None:
    path = write_table(tmp_path / "t.csv", np.eye(3), ["x", "y", "z"])
    with pytest.raises(NncliError, match=r"data\.val_split.*t\.csv"):
        load_training_data(cfg_for(path, val_split=0.3))


# ---------------------------------------------------------------- normalization


def test_fit_normalization_kinds() -> None:
    X = np.array([[1.0, -4.0, 5.0, 0.0], [3.0, 2.0, 5.0, 0.0], [8.0, -1.0, 5.0, 0.0]])
    assert fit_normalization(X, "none", False).shift is None
    scale = fit_normalization(X, "scale", False)
    assert scale.shift.tolist() == [0.0] * 4 and scale.scale.tolist() == [8.0, 4.0, 5.0, 1.0]
    assert fit_normalization(X, "scale", True).scale.tolist() == [255.0] * 4
    mean = fit_normalization(X, "mean", False)
    assert np.allclose(mean.shift, X.mean(axis=0)) and mean.scale.tolist() == [1.0] * 4
    std = fit_normalization(X, "standard", False)
    assert np.allclose(std.shift, X.mean(axis=0))
    assert np.allclose(std.scale, [np.std(X[:, 0]), np.std(X[:, 1]), 1.0, 1.0])


def test_normalization_is_learned_on_the_training_part_only(tmp_path: Path) -> None:
    X, y = blobs(n_per_class=10)
    X[:, 1] = 7.0  # a constant column
    path = write_table(tmp_path / "t.csv", X, y)
    data = load_training_data(cfg_for(path, val_split=0.3), dtype="float64")
    norm = data.normalization
    raw_train = data.train.X * norm.scale + norm.shift
    raw_val = data.val.X * norm.scale + norm.shift
    # The un-normalized training rows are the rows of the file not held out.
    assert len(raw_train) + len(raw_val) == len(X)
    assert all(np.isclose(X, r).all(axis=1).any() for r in np.concatenate([raw_train, raw_val]))
    assert np.allclose(norm.shift, raw_train.mean(axis=0))
    assert not np.allclose(norm.shift, X.mean(axis=0))
    assert np.allclose(norm.scale, np.where(raw_train.std(axis=0) > 0, raw_train.std(axis=0), 1))
    assert norm.scale[1] == 1.0 and np.all(data.train.X[:, 1] == 0.0)
    assert np.allclose(data.train.X.mean(axis=0), 0.0) and np.allclose(
        data.train.X[:, [0, 2, 3]].std(axis=0), 1.0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_splits_come_in_the_compute_dtype(tmp_path: Path, dtype: str) -> None:
    X, y = blobs()
    path = write_table(tmp_path / "t.csv", X, y)
    data = load_training_data(cfg_for(path, val_split=0.25), dtype=dtype)
    assert data.train.X.dtype == dtype and data.val.X.dtype == dtype


def test_val_table_columns_are_matched_by_name(tmp_path: Path) -> None:
    X, y = blobs()
    train = write_table(tmp_path / "t.csv", X, y)
    same = write_table(tmp_path / "v.csv", X[:6], y[:6])
    permuted = write_table(tmp_path / "p.csv", X[:6, ::-1], y[:6], header=["f3", "f2", "f1", "f0"])
    a = load_training_data(cfg_for(train, val=str(same)))
    b = load_training_data(cfg_for(train, val=str(permuted)))
    assert np.array_equal(a.val.X, b.val.X)


def test_val_data_with_a_label_the_training_data_lacks(tmp_path: Path) -> None:
    X, y = blobs()
    train = write_table(tmp_path / "t.csv", X, y)
    val = write_table(tmp_path / "v.csv", X[:3], [0, 7, 1])
    with pytest.raises(NncliError, match=r"v\.csv: line 3: label '7'"):
        load_training_data(cfg_for(train, val=str(val)))


@pytest.mark.parametrize("dtype, fails", [("float32", True), ("float64", False)])
def test_values_beyond_the_compute_dtype_are_an_error_naming_the_line(
        tmp_path: Path, dtype: str, fails: bool) -> None:
    X, y = blobs(n_per_class=4)
    train = write_table(tmp_path / "t.csv", X, y)
    X[2, 1] = 1e300
    val = write_table(tmp_path / "v.csv", X[:5], y[:5])
    cfg = cfg_for(train, val=str(val))
    if not fails:
        assert np.isfinite(load_training_data(cfg, dtype=dtype).val.X).all()
        return
    with pytest.raises(NncliError, match=r"v\.csv: line 4: .*float32"):
        load_training_data(cfg, dtype=dtype)
