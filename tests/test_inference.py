"""Using checkpoints: normalization stored and applied, ``nncli eval`` and ``nncli predict``."""

from __future__ import annotations

import csv
import io
import json
import select
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers_data import (
    ROOT,
    blobs,
    cli,
    config_doc,
    forward,
    load_npz,
    softmax,
    table_text,
    train_run,
    write_table,
)

from nncli.config import config_from_dict
from nncli.data import load_training_data
from nncli.train import train

CLASSES = np.array(["cat", "dog", "frog"])


@pytest.fixture
def data(tmp_path: Path) -> tuple[np.ndarray, np.ndarray, Path]:
    """30 rows, 4 features, classes cat/dog/frog; returns X, labels, path."""
    X, y = blobs(n_per_class=10, seed=1)
    return X, CLASSES[y], write_table(tmp_path / "train.csv", X, CLASSES[y])


@pytest.fixture
def model(tmp_path: Path, data) -> Path:
    """A small float64 MLP checkpoint with L2, deliberately undertrained (it makes mistakes)."""
    doc = config_doc(data[2], model={"hidden": [5], "activation": "tanh"},
                     reg={"lambda": 0.05},
                     train={"epochs": 2, "batch_size": 8, "lr": 0.02, "dtype": "float64"})
    return train_run(tmp_path / "run", doc) / "checkpoints" / "last.npz"


def eval_json(checkpoint: Path, data: Path, *extra: str) -> dict:
    result = cli("eval", checkpoint, data, "--json", *extra)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


# ---------------------------------------------------------------- normalization


@pytest.mark.parametrize("normalize", ["none", "scale", "mean", "standard"])
def test_checkpoint_stores_the_training_normalization(tmp_path: Path, data,
                                                      normalize: str) -> None:
    X, labels, path = data
    doc = config_doc(path, data={"normalize": normalize, "val_split": 0.2},
                     train={"epochs": 1})
    arrays, _ = load_npz(train_run(tmp_path / "run", doc) / "checkpoints" / "last.npz")
    if normalize == "none":
        assert "norm_shift" not in arrays and "norm_scale" not in arrays
        return
    norm = load_training_data(config_from_dict(doc)).normalization  # on the training part
    assert np.array_equal(arrays["norm_shift"], norm.shift)
    assert np.array_equal(arrays["norm_scale"], norm.scale)
    assert arrays["norm_shift"].shape == arrays["norm_scale"].shape == (4,)
    # (x - shift) / scale of the training rows has the promised statistics.
    z = (X - arrays["norm_shift"]) / arrays["norm_scale"]
    if normalize == "scale":
        assert np.all(arrays["norm_shift"] == 0) and np.abs(z).max() <= 1.5
    else:
        assert np.abs(z.mean(axis=0)).max() < 0.5


def test_eval_reproduces_in_process_training_accuracy_on_huge_features(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    X, y = blobs(n_per_class=15, seed=2)
    X = X * np.array([1e6, 1e-3, 1e9, 1.0]) + np.array([1e8, -5.0, 0.0, 3e7])
    X[:, 3] = 42.0  # constant column: scale 1
    path = write_table(tmp_path / "huge.csv", X, CLASSES[y])
    cfg = config_from_dict(config_doc(path.name, data={"normalize": "standard"},
                                      train={"epochs": 5, "lr": 0.1, "batch_size": 10}))
    result = train(cfg, out="run")
    dataset = load_training_data(cfg).train
    scores = result.model.scores(dataset.X)
    in_process = float((scores.argmax(axis=1) == dataset.y).mean())
    report = eval_json(Path("run/checkpoints/last.npz"), path)
    assert report["accuracy"] == in_process and in_process >= 0.9
    assert load_npz(Path("run/checkpoints/last.npz"))[0]["norm_scale"][3] == 1.0


# ---------------------------------------------------------------- eval


def test_eval_json_matches_a_direct_computation(tmp_path: Path, data, model: Path) -> None:
    X, labels, _ = data
    # An unbalanced evaluation set, so rows-vs-columns mistakes in the confusion show.
    pick = np.r_[0:10, 10:13, 20:27]
    path = write_table(tmp_path / "eval.csv", X[pick], labels[pick])
    report = eval_json(model, path)
    assert {"n", "loss", "data_loss", "reg_loss", "accuracy", "classes", "per_class",
            "confusion"} <= set(report)

    arrays, meta = load_npz(model)
    classes = meta["classes"]
    y = np.array([classes.index(v) for v in labels[pick]])
    scores = forward(arrays, X[pick], activation="tanh")
    data_loss = float(np.mean(-np.log(softmax(scores)[np.arange(len(y)), y])))
    reg_loss = 0.05 * float((arrays["W1"] ** 2).sum() + (arrays["W2"] ** 2).sum())
    pred = scores.argmax(axis=1)
    confusion = np.zeros((3, 3), dtype=int)
    for t, p in zip(y, pred):
        confusion[t, p] += 1
    assert 0 < confusion.trace() < len(y), "the model should make some mistakes"

    assert report["classes"] == classes == ["cat", "dog", "frog"]
    assert report["n"] == 20 and report["confusion"] == confusion.tolist()
    assert report["accuracy"] == pytest.approx(np.mean(pred == y), abs=1e-12)
    assert report["data_loss"] == pytest.approx(data_loss, rel=1e-9)
    assert report["reg_loss"] == pytest.approx(reg_loss, rel=1e-9)
    assert report["loss"] == pytest.approx(report["data_loss"] + report["reg_loss"], rel=1e-12)
    for k, name in enumerate(classes):
        tp, predicted, support = confusion[k, k], confusion[:, k].sum(), confusion[k].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        assert report["per_class"][name] == pytest.approx(
            {"precision": precision, "recall": recall, "f1": f1, "support": support})


def test_eval_loss_includes_class_weights_accuracy_does_not(tmp_path: Path, data) -> None:
    X, labels, path = data
    doc = config_doc(path, loss={"class_weight": {"cat": 3.0}},
                     train={"epochs": 1, "lr": 0.01, "dtype": "float64"})
    ckpt = train_run(tmp_path / "run", doc) / "checkpoints" / "last.npz"
    report = eval_json(ckpt, path)
    arrays, meta = load_npz(ckpt)
    y = np.array([meta["classes"].index(v) for v in labels])
    scores = forward(arrays, X)
    losses = -np.log(softmax(scores)[np.arange(len(y)), y])
    w = np.where(y == 0, 3.0, 1.0)
    assert report["data_loss"] == pytest.approx(float(w @ losses / w.sum()), rel=1e-9)
    assert report["accuracy"] == pytest.approx(np.mean(scores.argmax(axis=1) == y))


def test_eval_batch_size_does_not_change_the_result(data, model: Path) -> None:
    a, b = eval_json(model, data[2]), eval_json(model, data[2], "--batch-size", "7")
    assert b["data_loss"] == pytest.approx(a["data_loss"], rel=1e-12)
    assert (a["confusion"], a["accuracy"]) == (b["confusion"], b["accuracy"])


def test_eval_text_report(model: Path, data) -> None:
    result = cli("eval", model, data[2])
    assert result.exit_code == 0 and "accuracy" in result.stdout and "frog" in result.stdout


def test_eval_matches_table_columns_by_name(tmp_path: Path, data, model: Path) -> None:
    X, labels, path = data
    permuted = write_table(tmp_path / "p.csv", X[:, [2, 0, 3, 1]], labels,
                           header=["f2", "f0", "f3", "f1"], label_pos=2)
    a, b = eval_json(model, path), eval_json(model, permuted)
    assert (a["loss"], a["confusion"]) == (b["loss"], b["confusion"])


def test_eval_on_npz(tmp_path: Path) -> None:
    X, y = blobs(n_per_class=6, n_features=6)
    np.savez(tmp_path / "d.npz", X=X.reshape(-1, 2, 3), y=y * 10)
    doc = config_doc(tmp_path / "d.npz", train={"epochs": 2})
    ckpt = train_run(tmp_path / "run", doc) / "checkpoints" / "last.npz"
    assert load_npz(ckpt)[1]["input_shape"] == [2, 3]
    report = eval_json(ckpt, tmp_path / "d.npz")
    assert report["classes"] == ["0", "10", "20"] and report["n"] == 18


def test_eval_unknown_label_is_exit_2_naming_it(tmp_path: Path, data, model: Path) -> None:
    X, _, _ = data
    path = write_table(tmp_path / "u.csv", X[:3], ["cat", "horse", "dog"])
    result = cli("eval", model, path)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("Error:") and len(result.stderr.splitlines()) == 1
    assert "'horse'" in result.stderr and "u.csv" in result.stderr and "line 3" in result.stderr


def test_eval_wrong_feature_count_is_exit_2(tmp_path: Path, data, model: Path) -> None:
    X, labels, _ = data
    path = write_table(tmp_path / "w.csv", X[:, :3], labels)
    result = cli("eval", model, path)
    assert result.exit_code == 2 and result.stderr.startswith("Error:")
    assert "w.csv" in result.stderr and "3" in result.stderr and "4" in result.stderr


def test_eval_value_beyond_float32_is_exit_2_not_nan(tmp_path: Path, data) -> None:
    X, labels, path = data
    ckpt = train_run(tmp_path / "run", config_doc(path, train={"epochs": 1})
                     ) / "checkpoints" / "last.npz"
    X = X.copy()
    X[1, 0] = -1e300
    result = cli("eval", ckpt, write_table(tmp_path / "big.csv", X, labels), "--json")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("Error:") and "big.csv: line 3" in result.stderr
    rows = [",".join(repr(float(v)) for v in row) for row in X[:2]]
    result = cli("predict", ckpt, "--keep-going", "--", *rows)
    assert result.exit_code == 2 and result.stdout.startswith("1\t")
    assert "input row 2" in result.stderr and "nan" not in result.stdout


# ---------------------------------------------------------------- predict


def rows_of(X: np.ndarray) -> list[str]:
    return [",".join(repr(float(v)) for v in row) for row in X]


def expected_probs(checkpoint: Path, X: np.ndarray) -> np.ndarray:
    arrays, meta = load_npz(checkpoint)
    return softmax(forward(arrays, X, activation=meta["config"]["model"]["activation"]))


def test_predict_tsv_default_in_input_order(data, model: Path) -> None:
    X, _, _ = data
    result = cli("predict", model, "--", *rows_of(X[[0, 15, 29, 1]]))
    assert result.exit_code == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    probs = expected_probs(model, X[[0, 15, 29, 1]])
    assert [line[0] for line in lines] == ["1", "2", "3", "4"]
    assert [line[1] for line in lines] == CLASSES[probs.argmax(axis=1)].tolist()
    assert np.allclose([float(line[2]) for line in lines], probs.max(axis=1), rtol=1e-5)


@pytest.mark.parametrize("loss", ["softmax", "svm", "mse"])
def test_predict_jsonl_probabilities_are_the_softmax_of_the_scores(
        tmp_path: Path, data, loss: str) -> None:
    X, _, path = data
    ckpt = train_run(tmp_path / "run", config_doc(path, loss={"type": loss},
                                                  train={"epochs": 1, "lr": 0.05})
                     ) / "checkpoints" / "last.npz"
    result = cli("predict", ckpt, "--format", "jsonl", "--top-k", "3", "--", *rows_of(X[:5]))
    assert result.exit_code == 0, result.stderr
    objs = [json.loads(line) for line in result.stdout.splitlines()]
    probs = expected_probs(ckpt, X[:5])
    for i, obj in enumerate(objs):
        assert set(obj) >= {"input", "label", "probability", "top"} and obj["input"] == str(i + 1)
        assert (obj["label"], obj["probability"]) == (obj["top"][0]["label"],
                                                      obj["top"][0]["probability"])
        got = {t["label"]: t["probability"] for t in obj["top"]}
        assert got == pytest.approx(dict(zip(CLASSES, probs[i])), rel=1e-5)
        assert [t["probability"] for t in obj["top"]] == sorted(got.values(), reverse=True)


def test_predict_csv_and_top_k(data, model: Path) -> None:
    X, _, _ = data
    result = cli("predict", model, "--format", "csv", "--top-k", "2", "--", *rows_of(X[:6]))
    assert result.exit_code == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert len(rows) == 6 and all(len(r) == 5 for r in rows)
    probs = expected_probs(model, X[:6])
    for i, (inp, l1, p1, l2, p2) in enumerate(rows):
        top2 = np.argsort(-probs[i])[:2]
        assert (inp, l1, l2) == (str(i + 1), CLASSES[top2[0]], CLASSES[top2[1]])
        assert float(p1) >= float(p2) and float(p1) + float(p2) <= 1 + 1e-6
        assert float(p2) == pytest.approx(probs[i, top2[1]], rel=1e-5)


@pytest.mark.parametrize("header", [None, "f0,f1,f2,f3", "f0,f1,f2,f3,label"])
def test_predict_stdin_with_and_without_header(data, model: Path, header: str | None) -> None:
    X, labels, _ = data
    rows = rows_of(X[:4])
    if header and header.endswith("label"):
        rows = [f"{r},{lab}" for r, lab in zip(rows, labels[:4])]
    text = "\n".join(([header] if header else []) + rows) + "\n"
    with_header = cli("predict", model, input=text)
    plain = cli("predict", model, "--", *rows_of(X[:4]))
    assert with_header.exit_code == 0, with_header.stderr
    assert with_header.stdout == plain.stdout and len(plain.stdout.splitlines()) == 4
    assert [line.split("\t")[0] for line in with_header.stdout.splitlines()] == ["1", "2", "3",
                                                                                  "4"]
    assert cli("predict", model, "-", input=text).stdout == plain.stdout


def test_predict_stdin_header_in_another_column_order(data, model: Path) -> None:
    X, labels, _ = data
    order = [3, 1, 0, 2]
    lines = ["label,f3,f1,f0,f2"] + [f"{lab}," + r for lab, r in zip(labels[:4],
                                                                     rows_of(X[:4, order]))]
    result = cli("predict", model, input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == cli("predict", model, "--", *rows_of(X[:4])).stdout


def test_predict_stdin_header_with_numeric_column_names(tmp_path: Path, data) -> None:
    X, labels, _ = data
    path = write_table(tmp_path / "num.csv", X, labels, header=["0", "1", "2", "3"])
    ckpt = train_run(tmp_path / "run", config_doc(path, train={"epochs": 1})
                     ) / "checkpoints" / "last.npz"
    text = "0,1,2,3,label\n" + "".join(f"{r},{lab}\n" for r, lab in zip(rows_of(X[:3]),
                                                                         labels[:3]))
    result = cli("predict", ckpt, input=text)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == cli("predict", ckpt, "--", *rows_of(X[:3])).stdout


def test_predict_missing_table_file_is_named(tmp_path: Path, model: Path) -> None:
    result = cli("predict", model, tmp_path / "nope.csv")
    assert result.exit_code == 2 and "nope.csv" in result.stderr
    assert result.stderr.startswith("Error:")


def test_predict_expands_a_table_file_argument(tmp_path: Path, data, model: Path) -> None:
    X, labels, path = data
    tsv = tmp_path / "rows.tsv"
    tsv.write_text(table_text(X[5:9], labels[5:9], label_pos=1, delimiter="\t"))
    from_files = cli("predict", model, path, tsv)
    assert from_files.exit_code == 0, from_files.stderr
    expected = cli("predict", model, "--", *rows_of(X), *rows_of(X[5:9]))
    assert from_files.stdout == expected.stdout and len(expected.stdout.splitlines()) == 34


def test_predict_bad_row_is_exit_2(data, model: Path) -> None:
    X, _, _ = data
    good = rows_of(X[:2])
    result = cli("predict", model, "--", good[0], "1,2,x,4", good[1])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error:") and "row 2" in result.stderr
    short = cli("predict", model, "1,2,3")
    assert short.exit_code == 2 and "Error:" in short.stderr and "4" in short.stderr


def test_predict_keep_going_skips_bad_rows_and_still_exits_2(data, model: Path) -> None:
    X, _, _ = data
    good = rows_of(X[:2])
    for args, stdin in [(("--", good[0], "1,2,x,4", good[1]), None),
                        ((), "\n".join([good[0], "1,2,3", good[1]]) + "\n")]:
        result = cli("predict", model, "--keep-going", *args, input=stdin)
        assert result.exit_code == 2
        assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["1", "3"]
        assert result.stderr.count("Error:") == 1 and "row 2" in result.stderr


def test_predict_answers_each_line_before_stdin_ends(data, model: Path) -> None:
    X, _, _ = data
    with subprocess.Popen([sys.executable, "-m", "nncli.cli", "predict", str(model)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True, cwd=ROOT) as proc:
        try:
            for i, row in enumerate(rows_of(X[:2]), start=1):
                proc.stdin.write(row + "\n")
                proc.stdin.flush()
                ready, _, _ = select.select([proc.stdout], [], [], 30)
                assert ready, "no output while stdin is still open"
                assert proc.stdout.readline().startswith(f"{i}\t")
            proc.stdin.close()
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_predict_row_arguments_may_start_with_a_minus_sign(model: Path) -> None:
    result = cli("predict", model, "-1.5,2,3,4")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("1\t")
