"""Training through the CLI: the run directory, reproducibility, learning, early stopping and
divergence."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers_data import (
    blobs,
    cli,
    cli_subprocess,
    config_doc,
    load_npz,
    metrics_csv,
    metrics_jsonl,
    separable,
    train_run,
    write_table,
    write_yaml,
)

from nncli.config import config_from_dict, load_config
from nncli.inference import evaluate_checkpoint
from nncli.rundir import RunDir

COLUMNS = ["epoch", "step", "lr", "loss", "data_loss", "reg_loss", "train_acc", "val_loss",
           "val_acc", "seconds"]


@pytest.fixture
def table(tmp_path: Path) -> Path:
    """24 rows, 4 features, classes cat/dog/frog."""
    X, y = blobs(n_per_class=8)
    return write_table(tmp_path / "train.csv", X, np.array(["cat", "dog", "frog"])[y])


def small(table: Path, **sections) -> dict:
    train = {"epochs": 3, "batch_size": 5, "lr": 0.1, **sections.pop("train", {})}
    return config_doc(table, train=train, **sections)


# ---------------------------------------------------------------- run directory


def test_run_directory_layout(tmp_path: Path, table: Path) -> None:
    doc = small(table, data={"val_split": 0.25}, model={"hidden": [5]}, reg={"lambda": 0.01})
    config = write_yaml(tmp_path / "cfg.yaml", doc)
    result = cli("train", config, "--out", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.stderr
    run = tmp_path / "run"

    assert config_from_dict(yaml.safe_load((run / "config.yaml").read_text())) == \
        load_config(config)

    header, rows = metrics_csv(run)
    assert header == COLUMNS
    assert [r[0] for r in rows] == ["1", "2", "3"]
    jrows = metrics_jsonl(run)
    assert [list(r) for r in jrows] == [COLUMNS] * 3
    assert [[float(c) for c in r] for r in rows] == [[r[c] for c in COLUMNS] for r in jrows]

    for name in ("last", "best"):
        arrays, meta = load_npz(run / "checkpoints" / f"{name}.npz")
        assert {"W1", "b1", "W2", "b2"} <= set(arrays)
        assert arrays["W1"].shape == (5, 4) and arrays["W2"].shape == (3, 5)
        assert meta["format"] == 1 and meta["classes"] == ["cat", "dog", "frog"]
        assert meta["input_shape"] == [4] and "nncli_version" in meta and "config" in meta
    assert load_npz(run / "checkpoints" / "last.npz")[1]["epoch"] == 3

    summary = json.loads((run / "summary.json").read_text())
    assert {"epochs", "best_epoch", "final", "best", "wall_seconds",
            "samples_per_sec"} <= set(summary)
    assert summary["epochs"] == 3 and summary["final"] == jrows[-1]
    assert summary["best"] == jrows[summary["best_epoch"] - 1]
    best_val = min(r["val_loss"] for r in jrows)
    assert summary["best"]["val_loss"] == best_val
    assert load_npz(run / "checkpoints" / "best.npz")[1]["epoch"] == summary["best_epoch"]


def test_train_json_prints_one_object_on_stdout_and_progress_on_stderr(
        tmp_path: Path, table: Path) -> None:
    config = write_yaml(tmp_path / "cfg.yaml", small(table))
    result = cli("train", config, "--out", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "epoch 3" in result.stderr and "{" not in result.stderr


def test_runs_without_out_go_to_runs_name_then_name_2(tmp_path: Path, table: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_yaml(tmp_path / "exp.yaml", small(table, train={"epochs": 1}))
    write_yaml(tmp_path / "other.yaml", {"name": "named", **small(table, train={"epochs": 1})})
    for config in ("exp.yaml", "exp.yaml", "other.yaml"):
        result = cli("train", config, "--quiet", "--json")
        assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["exp", "exp-2", "named"]
    assert (tmp_path / "runs" / "exp-2" / "checkpoints" / "last.npz").exists()


def test_set_overrides_reach_the_saved_config_and_the_model(tmp_path: Path, table: Path) -> None:
    run = train_run(tmp_path / "run", small(table), "--set", "train.lr=0.05",
                    "--set", "model.hidden=[3]", "--set", "train.epochs=2", "--seed", "9")
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert (saved["train"]["lr"], saved["model"]["hidden"], saved["train"]["epochs"],
            saved["seed"]) == (0.05, [3], 2, 9)
    assert load_npz(run / "checkpoints" / "last.npz")[0]["W1"].shape == (3, 4)
    assert len(metrics_csv(run)[1]) == 2


def test_val_columns_are_empty_without_validation(tmp_path: Path, table: Path) -> None:
    run = train_run(tmp_path / "run", small(table))
    _, rows = metrics_csv(run)
    assert all(r[7] == "" and r[8] == "" for r in rows)
    assert all(r["val_loss"] is None and r["val_acc"] is None for r in metrics_jsonl(run))


@pytest.mark.parametrize("batch_size, per_epoch", [(5, 5), (24, 1), (7, 4), ("full", 1)])
def test_step_counts_updates(tmp_path: Path, table: Path, batch_size, per_epoch: int) -> None:
    run = train_run(tmp_path / "run", small(table, train={"batch_size": batch_size}))
    assert per_epoch == math.ceil(24 / (24 if batch_size == "full" else batch_size))
    assert [int(r[1]) for r in metrics_csv(run)[1]] == [per_epoch, 2 * per_epoch, 3 * per_epoch]
    assert load_npz(run / "checkpoints" / "last.npz")[1]["step"] == 3 * per_epoch


def test_loss_is_data_loss_plus_reg_loss(tmp_path: Path, table: Path) -> None:
    run = train_run(tmp_path / "run", small(table, reg={"lambda": 0.1}))
    rows = metrics_jsonl(run)
    assert all(r["reg_loss"] > 0 for r in rows)
    for r in rows:
        assert r["loss"] == pytest.approx(r["data_loss"] + r["reg_loss"], rel=1e-12)


def test_train_columns_are_taken_before_the_update_and_val_after_the_epoch(
        tmp_path: Path, table: Path) -> None:
    X, y = blobs(n_per_class=4, seed=3)
    val = write_table(tmp_path / "val.csv", X, np.array(["cat", "dog", "frog"])[y])
    doc = config_doc(table, data={"val": str(val)}, reg={"lambda": 0.05},
                     train={"epochs": 2, "batch_size": "full", "lr": 0.3, "dtype": "float64"})
    rows = metrics_jsonl(train_run(tmp_path / "two", doc))
    doc["train"] = {**doc["train"], "epochs": 1}
    after_one = train_run(tmp_path / "one", doc) / "checkpoints" / "last.npz"
    on_train, on_val = evaluate_checkpoint(after_one, table), evaluate_checkpoint(after_one, val)
    # Full batch: epoch 2's training columns describe the weights after epoch 1 ...
    assert rows[1]["data_loss"] == pytest.approx(on_train["data_loss"], rel=1e-9)
    assert rows[1]["reg_loss"] == pytest.approx(on_train["reg_loss"], rel=1e-9)
    assert rows[1]["train_acc"] == pytest.approx(on_train["accuracy"], abs=1e-12)
    # ... and epoch 1's val columns too.
    assert rows[0]["val_loss"] == pytest.approx(on_val["loss"], rel=1e-9)
    assert rows[0]["val_acc"] == pytest.approx(on_val["accuracy"], abs=1e-12)


def test_lr_column_follows_a_step_schedule(tmp_path: Path, table: Path) -> None:
    schedule = {"step": {"every": 2, "gamma": 0.5}}
    run = train_run(tmp_path / "run", small(table, train={"epochs": 5,
                                                          "lr_schedule": schedule}))
    assert [r["lr"] for r in metrics_jsonl(run)] == [0.1, 0.1, 0.05, 0.05, 0.025]


def test_run_files_stay_valid_json_when_a_metric_is_not_finite(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.create()
    run.start_metrics()
    row = {c: float(i) for i, c in enumerate(COLUMNS)}
    run.append_metrics({**row, "val_loss": float("nan"), "val_acc": float("inf")})
    run.write_summary({"final": {**row, "val_loss": float("nan")}, "best": None})
    strict = {"parse_constant": lambda name: pytest.fail(f"{name} is not JSON")}
    assert json.loads((run.path / "metrics.jsonl").read_text(), **strict)["val_loss"] is None
    assert json.loads((run.path / "summary.json").read_text(), **strict)["final"]["val_loss"] \
        is None
    assert metrics_csv(run.path)[1][0][7] == "nan"


# ---------------------------------------------------------------- reproducibility


def _weights(run: Path) -> dict[str, np.ndarray]:
    return load_npz(run / "checkpoints" / "last.npz")[0]


def _rows_without_seconds(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in metrics_jsonl(run)]


def test_same_seed_same_run_other_seed_other_weights(tmp_path: Path, table: Path) -> None:
    doc = small(table, data={"val_split": 0.25}, model={"hidden": [6]},
                train={"optimizer": "adam", "lr": 0.01})
    a = train_run(tmp_path / "a", doc, "--seed", "5")
    b = train_run(tmp_path / "b", doc, "--seed", "5")
    c = train_run(tmp_path / "c", doc, "--seed", "6")
    assert _rows_without_seconds(a) == _rows_without_seconds(b)
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    assert wa.keys() == wb.keys() and {"opt_m_W1", "opt_u_W1"} <= set(wa)
    assert all(np.array_equal(wa[k], wb[k]) and wa[k].dtype == wb[k].dtype for k in wa)
    assert not np.array_equal(wa["W1"], wc["W1"])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_is_kept_in_the_weights(tmp_path: Path, table: Path, dtype: str) -> None:
    run = train_run(tmp_path / "run", small(table, model={"hidden": [3]},
                                             train={"dtype": dtype}))
    arrays = _weights(run)
    assert {arrays[k].dtype.name for k in ("W1", "b1", "W2", "b2")} == {dtype}


# ---------------------------------------------------------------- learning


@pytest.mark.parametrize("sections", [
    {"loss": {"type": "softmax"}},
    {"loss": {"type": "svm"}},
    {"model": {"hidden": [16], "activation": "relu"}},
], ids=["softmax", "svm", "mlp"])
def test_training_separates_separable_classes(tmp_path: Path, sections: dict) -> None:
    X, y = separable(n_per_class=20)
    table = write_table(tmp_path / "sep.csv", X, np.array(["a", "b", "c"])[y])
    # Before training, the same model is far from perfect (the test would notice no learning).
    doc = config_doc(table, train={"epochs": 30, "batch_size": 8, "lr": 0.05,
                                   "checkpoint_every": 30}, **sections)
    untrained = train_run(tmp_path / "r0", {**doc, "train": {**doc["train"], "lr": 1e-12,
                                                             "epochs": 1}})
    assert evaluate_checkpoint(untrained / "checkpoints" / "last.npz", table)["accuracy"] < 0.9
    run = train_run(tmp_path / "run", doc)
    assert evaluate_checkpoint(run / "checkpoints" / "last.npz", table)["accuracy"] >= 0.95
    rows = metrics_jsonl(run)
    assert rows[-1]["loss"] < rows[0]["loss"]


# ---------------------------------------------------------------- early stopping


def test_early_stopping_keeps_best_and_last(tmp_path: Path, table: Path) -> None:
    # mse with a large full-batch step overshoots: val loss rises after the first epoch.
    doc = config_doc(table, data={"val_split": 0.25}, loss={"type": "mse"},
                     train={"epochs": 10, "batch_size": "full", "lr": 0.7, "optimizer": "sgd",
                            "early_stopping": {"patience": 1}})
    run = train_run(tmp_path / "run", doc)
    rows = metrics_jsonl(run)
    assert len(rows) == 2 and rows[1]["val_loss"] > rows[0]["val_loss"]
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["epochs"], summary["best_epoch"]) == (2, 1)
    best, best_meta = load_npz(run / "checkpoints" / "best.npz")
    last, last_meta = load_npz(run / "checkpoints" / "last.npz")
    assert (best_meta["epoch"], last_meta["epoch"]) == (1, 2)
    # best.npz holds exactly the weights after epoch 1.
    doc["train"] = {**doc["train"], "epochs": 1, "early_stopping": None}
    one = _weights(train_run(tmp_path / "one", doc))
    assert np.array_equal(best["W1"], one["W1"]) and not np.array_equal(last["W1"], one["W1"])


# ---------------------------------------------------------------- divergence

DIVERGED = re.compile(r"^Error: loss became \S+ at epoch (\d+), step (\d+) — try a smaller "
                      r"train\.lr")


def _no_nan_checkpoints(run: Path) -> list[dict]:
    metas = []
    for path in sorted((run / "checkpoints").glob("*.npz")):
        arrays, meta = load_npz(path)
        assert all(np.isfinite(a).all() for a in arrays.values() if a.dtype.kind == "f"), path
        metas.append(meta)
    return metas


def test_divergence_exits_1_with_one_error_line(tmp_path: Path, table: Path) -> None:
    config = write_yaml(tmp_path / "cfg.yaml", config_doc(
        table, loss={"type": "mse"}, train={"epochs": 5, "batch_size": 4, "lr": 1e30}))
    proc = cli_subprocess("train", config, "--out", tmp_path / "run", "--quiet")
    assert proc.returncode == 1 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and DIVERGED.match(proc.stderr), proc.stderr
    _no_nan_checkpoints(tmp_path / "run")


def test_divergence_after_some_epochs_leaves_a_finite_last_checkpoint(
        tmp_path: Path, table: Path) -> None:
    config = write_yaml(tmp_path / "cfg.yaml", config_doc(
        table, loss={"type": "mse"}, train={"epochs": 100, "batch_size": "full", "lr": 3.0,
                                       "optimizer": "sgd"}))
    result = cli("train", config, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 1
    match = DIVERGED.match(result.stderr)
    assert match, result.stderr
    epoch, step = int(match[1]), int(match[2])
    assert epoch > 2 and step == epoch  # full batch: one update per epoch
    metas = _no_nan_checkpoints(tmp_path / "run")
    assert max(m["epoch"] for m in metas) == epoch - 1
    assert len(metrics_jsonl(tmp_path / "run")) == epoch - 1


def test_mlp_divergence_prints_only_the_error_line(tmp_path: Path, table: Path) -> None:
    config = write_yaml(tmp_path / "cfg.yaml", config_doc(
        table, loss={"type": "mse"}, model={"hidden": [8]},
        train={"epochs": 5, "batch_size": 4, "lr": 1e30}))
    proc = cli_subprocess("train", config, "--out", tmp_path / "run", "--quiet")
    assert proc.returncode == 1
    assert len(proc.stderr.splitlines()) == 1 and DIVERGED.match(proc.stderr), proc.stderr
