"""Runs written by the code before the restructure of issue 11 (commit 4c5f9a3) still work.

``tests/fixtures/format1/`` holds two run folders that nncli wrote at that commit — a
tanh MLP on the breast-cancer table (class weights, λ, adam, standardized) and a linear SVM
on the digits images (plain SGD, the fused step) — and what that code printed for them:
``eval --json``, ``predict``, and the arrays of ``last.npz`` after resuming each run for
more epochs. Today's code must load them, print the same, and resume them to the same
weights and optimizer state, bit for bit.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers_data import cli

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "format1"
ROOT = Path(__file__).resolve().parents[1]
EVAL_DATA = {"table": "datasets/breast_cancer/test.csv", "image": "datasets/digits/test"}
PREDICT_ARGS = {"table": ("--top-k", "2"), "image": ("--format", "csv")}
PREDICT_FILE = {"table": "table-predict.tsv", "image": "image-predict.csv"}
RESUME_EPOCHS = {"table": 5, "image": 4}


@pytest.fixture(autouse=True)
def _at_the_repository_root(monkeypatch: pytest.MonkeyPatch) -> None:
    # The runs' configs and the recorded predictions name the bundled datasets relatively.
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("kind", ["table", "image"])
def test_eval_of_an_old_checkpoint_prints_what_the_old_code_printed(kind: str) -> None:
    result = cli("eval", str(FIXTURES / kind), EVAL_DATA[kind], "--json")
    assert result.exit_code == 0, result.output
    expected = json.loads((FIXTURES / f"{kind}-eval.json").read_text())
    got = json.loads(result.stdout)
    # the one field that names where the run lay when it was recorded
    assert expected.pop("checkpoint") == f"/tmp/fxruns/{kind}"
    assert got.pop("checkpoint") == str(FIXTURES / kind)
    assert got == expected


@pytest.mark.parametrize("kind", ["table", "image"])
def test_predict_with_an_old_checkpoint_prints_what_the_old_code_printed(kind: str) -> None:
    result = cli("predict", str(FIXTURES / kind), EVAL_DATA[kind], *PREDICT_ARGS[kind])
    assert result.exit_code == 0, result.output
    assert result.stdout == (FIXTURES / PREDICT_FILE[kind]).read_text()


@pytest.mark.parametrize("kind", ["table", "image"])
def test_resuming_an_old_run_gives_the_old_codes_weights_bit_for_bit(kind: str,
                                                                      tmp_path: Path) -> None:
    run = shutil.copytree(FIXTURES / kind, tmp_path / kind)
    result = cli("train", str(FIXTURES / f"{kind}.yaml"), "--resume", str(run), "--quiet",
                 "--set", f"train.epochs={RESUME_EPOCHS[kind]}")
    assert result.exit_code == 0, result.output
    with np.load(FIXTURES / f"{kind}-resumed.npz") as want, \
            np.load(run / "checkpoints" / "last.npz") as got:
        assert set(want.files) <= set(got.files)
        for name in want.files:
            assert got[name].dtype == want[name].dtype, name
            assert np.array_equal(got[name], want[name]), name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, RESUME_EPOCHS[kind] + 1))
