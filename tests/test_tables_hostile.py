"""The bad-input table for tables as they come: each case is one ``Error:`` line naming its
culprit, exit 2, no traceback, nothing written, every file left as it was (as in
tests/test_hostile.py, whose snapshot rule this follows)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from nncli.cli import main

ROWS = ["species,island,bill_length_mm,sex",
        "Adelie,Torgersen,39.1,male", "Adelie,Dream,NA,female", "Gentoo,Biscoe,46.1,NA",
        "Gentoo,Biscoe,47.3,male", "Adelie,Torgersen,38.2,female", "Gentoo,Dream,48.0,female"]


def invoke(*args: Any, input: str | None = None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def config(root: Path, source: str | Path | None = None, name: str = "bad.yaml",
           **data: Any) -> Path:
    doc = {"data": {"train": str(source or root / "train.csv"), "label_column": "species",
                    **data}, "train": {"epochs": 1}}
    return write(root / name, yaml.safe_dump(doc, sort_keys=False))


def train(root: Path, cfg: Path) -> list[str]:
    return ["train", str(cfg), "--out", str(root / "new-run"), "--quiet"]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``train.csv`` (text columns and NA cells), its config and a finished run."""
    root = tmp_path_factory.mktemp("tables")
    write(root / "train.csv", "\n".join(ROWS) + "\n")
    result = invoke("train", config(root, name="cfg.yaml"), "--out", root / "run", "--quiet")
    assert result.exit_code == 0, result.stderr
    return root


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- the cases


def mixed_column(root: Path):
    bad = write(root / "mixed.csv", "\n".join([*ROWS, "Adelie,Dream,big,male"]) + "\n")
    return train(root, config(root, bad)), "column 'bill_length_mm' holds numbers"


def missing_error_with_a_gap(root: Path):
    return (train(root, config(root, missing="error")),
            "line 3: column 'bill_length_mm': missing value (data.missing is error")


def columns_names_an_unknown_column(root: Path):
    return (train(root, config(root, columns={"iland": "category"})),
            "'data.columns.iland': no column 'iland' in")


def columns_names_the_label_column(root: Path):
    return (train(root, config(root, columns={"species": "category"})),
            "'data.columns.species': 'species' is the label column")


def columns_bad_type(root: Path):
    return (train(root, config(root, columns={"island": "text"})),
            "config key 'data.columns.island': unknown value 'text'")


def columns_not_a_mapping(root: Path):
    return train(root, config(root, columns=["island"])), "config key 'data.columns'"


def declared_number_holds_text(root: Path):
    return (train(root, config(root, columns={"island": "number"})),
            "line 2, column 2: not a number: 'Torgersen'")


def na_values_not_a_list(root: Path):
    return train(root, config(root, na_values={"NA": 1})), "config key 'data.na_values'"


def missing_bad_value(root: Path):
    return train(root, config(root, missing="drop")), "config key 'data.missing'"


def both_test_and_test_split(root: Path):
    return (train(root, config(root, test=str(root / "train.csv"), test_split=0.3)),
            "'data.test' and 'data.test_split'")


def split_of_one(root: Path):
    return train(root, config(root, test_split=1.0)), "config key 'data.test_split'"


def everything_ignored(root: Path):
    cfg = config(root, columns={"island": "ignore", "bill_length_mm": "ignore",
                                "sex": "ignore"})
    return train(root, cfg), "no feature columns besides 'species'"


def predict_header_lacks_a_category_column(root: Path):
    return (["predict", str(root / "run"), str(write(root / "rows.csv",
                                                     "island,bill_length_mm\nDream,40\n"))],
            "lacks the feature column(s) sex")


def predict_stdin_header_lacks_a_category_column(root: Path):
    return (["predict", str(root / "run"), "-"], "stdin: line 1: the header lacks the "
                                                 "feature column(s) island",
            "bill_length_mm,sex\n40,male\n")


def predict_a_number_column_given_text(root: Path):
    return (["predict", str(root / "run"), "Dream,long,male"],
            "input row 1: not a number: 'long' (column bill_length_mm)")


def eval_table_lacks_a_category_column(root: Path):
    table = write(root / "eval.csv", "species,bill_length_mm,sex\nAdelie,39,male\n")
    return ["eval", str(root / "run"), str(table)], "lacks the feature column(s) island"


def eval_number_column_with_text(root: Path):
    table = write(root / "eval.csv", "species,island,bill_length_mm,sex\n"
                                     "Adelie,Dream,thirty,male\n")
    return (["eval", str(root / "run"), str(table)],
            "eval.csv: line 2, column 3: not a number: 'thirty'")


def damaged_encoding(root: Path):
    src = root / "run" / "checkpoints" / "last.npz"
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    meta["encoding"]["columns"][0]["categories"] = ["a", "a"]
    arrays["meta"] = np.array(json.dumps(meta))
    target = root / "damaged.npz"
    np.savez(target, **arrays)
    return ["info", str(target)], "damaged.npz: damaged checkpoint (missing or invalid encoding"


Case = Callable[[Path], tuple]
CASES: dict[str, Case] = {f.__name__: f for f in [
    mixed_column, missing_error_with_a_gap, columns_names_an_unknown_column,
    columns_names_the_label_column, columns_bad_type, columns_not_a_mapping,
    declared_number_holds_text, na_values_not_a_list, missing_bad_value,
    both_test_and_test_split, split_of_one, everything_ignored,
    predict_header_lacks_a_category_column, predict_stdin_header_lacks_a_category_column,
    predict_a_number_column_given_text, eval_table_lacks_a_category_column,
    eval_number_column_with_text, damaged_encoding,
]}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_table_input_is_one_error_line_and_touches_nothing(
        case: str, base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "case"
    shutil.copytree(base, root)
    argv, culprit, *stdin = CASES[case](root)
    monkeypatch.chdir(root)
    before = snapshot(root)
    result = invoke(*argv, input=stdin[0] if stdin else None)
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.stdout)
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr
    line = result.stderr.rstrip("\n")
    assert line.startswith("Error: ") and culprit in line, line
    assert "Traceback" not in result.stdout + result.stderr and result.stdout == ""
    assert snapshot(root) == before
