"""The nncli.data package itself: one source registry, one column-matching rule (for
training tables, eval tables and predict's headers alike), and public names re-exported from
``nncli.data`` without loading the rooms a caller does not use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nncli.data
from nncli.data import RawData, align_features, feature_positions, label_positions
from nncli.data.sources import SOURCES, TABLE_SUFFIXES, source_kind
from nncli.errors import NncliError
from nncli.streaming import TableReader

# ---------------------------------------------------------------- the registry


@pytest.mark.parametrize(("name", "kind"), [("t.csv", "table"), ("t.TSV", "table"),
                                            ("t.tab", "table"), ("a.npz", "npz")])
def test_a_file_s_kind_comes_from_its_suffix_in_the_registry(name: str, kind: str) -> None:
    assert source_kind(Path(name)) == kind
    assert Path(name).suffix.lower() in SOURCES[kind].suffixes


def test_a_folder_is_the_folder_source_and_an_unknown_suffix_lists_every_kind(
        tmp_path: Path) -> None:
    assert source_kind(tmp_path) == "folder"
    with pytest.raises(NncliError) as info:
        source_kind(tmp_path / "data.parquet")
    assert str(info.value) == (f"{tmp_path / 'data.parquet'}: unknown data kind '.parquet' "
                               f"(expected an image folder, a .csv/.tsv table, an .npz "
                               f"with X and y or a folder with X.npy and y.npy)")


def test_every_table_suffix_has_a_delimiter_and_belongs_to_the_table_source() -> None:
    assert SOURCES["table"].suffixes == tuple(TABLE_SUFFIXES)
    assert set(TABLE_SUFFIXES.values()) == {",", "\t"}


# ---------------------------------------------------------------- one column rule


names = st.lists(st.sampled_from("abcdefg"), min_size=1, max_size=8)


@given(names, st.randoms(use_true_random=False))
def test_feature_positions_find_every_training_column_by_name_in_any_order(
        features: list[str], random) -> None:
    given_order = list(features)
    random.shuffle(given_order)
    positions = feature_positions(given_order, features, "t.csv")
    assert [given_order[p] for p in positions] == features
    assert sorted(positions) == list(range(len(features)))


def test_a_repeated_name_matches_its_occurrences_in_order() -> None:
    assert feature_positions(["x", "b", "x"], ["x", "x", "b"], "t.csv") == [0, 2, 1]


@pytest.mark.parametrize(("header", "fragment"), [
    (["a"], "lacks the feature column(s) b"),
    (["a", "b", "z"], "names column(s) the model was not trained on: z"),
    (["a", "b", "b"], "names column(s) more often than the training data: b"),
])
def test_a_header_that_does_not_match_is_one_error_naming_the_columns(
        header: list[str], fragment: str) -> None:
    with pytest.raises(NncliError) as info:
        feature_positions(header, ["a", "b"], "t.csv")
    assert str(info.value).startswith("t.csv: ") and fragment in str(info.value)
    assert str(info.value).endswith("(the training feature columns: a, b)")


def test_tables_and_predict_s_headers_are_matched_by_the_same_rule() -> None:
    """The error for a header is word for word the same whether the rows come as an eval
    table (align_features) or under a header on predict's stdin (TableReader)."""
    header = ["b", "label", "z"]
    raw = RawData(X=np.zeros((1, 2)), labels=np.array(["x"]), input_shape=(2,),
                  source="stdin: line 1", kind="table", features=["b", "z"])
    with pytest.raises(NncliError) as table_error:
        align_features(raw, ["a", "b"])
    reader = TableReader(["a", "b"], "label", 2, "model.npz was trained on table rows")
    with pytest.raises(NncliError) as predict_error:
        reader.layout_from_header(header, "stdin: line 1")
    assert str(predict_error.value) == str(table_error.value)
    assert reader.layout_from_header(["label", "b", "a"], "s").positions == (2, 1)


def test_the_label_column_is_found_once_or_not_at_all() -> None:
    assert label_positions(["a", "y"], "y", "t.csv") == [1]
    assert label_positions(["a"], "y", "t.csv") == []
    with pytest.raises(NncliError, match=r"^t.csv: the label column 'y' appears 2 times in "
                                         r"the header$"):
        label_positions(["y", "a", "y"], "y", "t.csv")


# ---------------------------------------------------------------- the package's names


def test_every_public_name_is_the_one_in_its_module() -> None:
    import importlib

    for name in nncli.data.__all__:
        home = nncli.data._MODULE_OF[name]
        module = importlib.import_module(f"nncli.data.{home}")
        assert getattr(nncli.data, name) is getattr(module, name), name
    with pytest.raises(AttributeError):
        nncli.data.no_such_name  # noqa: B018


def test_importing_the_package_or_its_nouns_loads_no_reader() -> None:
    """The nouns cost what they are (the checkpoint loads them), not the readers: no
    Pillow, decode pools, table parser or registry comes with them."""
    code = ("import sys, nncli.data, nncli.data.types; "
            "print(sorted(m for m in sys.modules if m.startswith(('nncli.data.', 'PIL', "
            "'multiprocessing', 'concurrent', 'nncli.config'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['nncli.data.types']"
