"""task: regression: the squared error of one linear output against a closed form, finite
differences and PyTorch in float64; the target scaling applied and inverted exactly; the
config's task rules; and a regression run end to end through the CLI (train, eval,
predict, resume, early stopping on val_rmse, gradcheck)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from test_gradients import numeric_gradient

from nncli.build import output_units
from nncli.checkpoint import load_checkpoint
from nncli.cli import main
from nncli.config import config_from_dict
from nncli.data import load_training_data
from nncli.data.splits import stratified_split
from nncli.errors import NncliError
from nncli.inference import Predictor
from nncli.metrics import evaluate_regression
from nncli.nn.losses import Objective, squared_error
from nncli.nn.model import MLP
from nncli.nn.optim import UPDATES, Optimizer
from nncli.rundir import REGRESSION_METRIC_COLUMNS
from nncli.train import MinibatchStep

# ---------------------------------------------------------------- the math


def regression_problem(hidden: tuple[int, ...], activation: str = "tanh", seed: int = 0,
                       n: int = 30, d: int = 5) -> tuple[MLP, np.ndarray, np.ndarray]:
    """A float64 one-output network, inputs X: (n, d) and float targets t: (n,)."""
    rng = np.random.default_rng(seed)
    X, t = rng.standard_normal((n, d)), rng.standard_normal(n) * 2.0 + 0.5
    model = MLP.create(d, hidden, 1, activation, {"normal": 0.5}, rng, "float64")
    return model, X, t


def test_squared_error_of_float_targets_is_one_output_against_the_number() -> None:
    """L_i = (s_i - t_i)^2, dL_i/ds_i = 2 (s_i - t_i); integer labels keep the one-hot form."""
    rng = np.random.default_rng(1)
    scores, t = rng.standard_normal((6, 1)), rng.standard_normal(6)
    losses, dscores = squared_error(scores, t)
    np.testing.assert_array_equal(losses, (scores[:, 0] - t) ** 2)
    np.testing.assert_array_equal(dscores[:, 0], 2.0 * (scores[:, 0] - t))
    labels = np.array([0, 2, 1])
    scores3 = rng.standard_normal((3, 3))
    losses3, _ = squared_error(scores3, labels)
    np.testing.assert_allclose(losses3, ((scores3 - np.eye(3)[labels]) ** 2).sum(axis=1))


def test_linear_regression_loss_and_gradient_equal_the_closed_form() -> None:
    """s = X w + b: L = (1/N) ||s - t||^2 + lambda ||w||^2, dL/dw = (2/N) X^T (s - t) +
    2 lambda w, dL/db = (2/N) sum (s - t), through MLP.loss and the training step."""
    model, X, t = regression_problem(())
    lam = 0.03
    objective = Objective("mse", reg_lambda=lam)
    w, b = model.params["W1"][0], model.params["b1"][0]
    residual = X @ w + b - t
    n = len(t)
    data_loss, reg_loss, grads, _ = model.loss(X, t, objective)
    assert data_loss == pytest.approx(residual @ residual / n, rel=1e-14)
    assert reg_loss == pytest.approx(lam * w @ w, rel=1e-14)
    np.testing.assert_allclose(grads["W1"][0], 2.0 / n * X.T @ residual + 2 * lam * w,
                               rtol=1e-13, atol=1e-15)
    assert grads["b1"][0] == pytest.approx(2.0 / n * residual.sum(), rel=1e-13, abs=1e-15)
    for kind in ("textbook", "fused"):
        step = MinibatchStep(model, Optimizer("adam"), X, t, n, objective, kind).step
        loss, reg, correct, step_grads = step.gradients(X, t)
        assert (loss, correct) == (pytest.approx(data_loss, rel=1e-13), 0)
        for name, g in grads.items():
            np.testing.assert_allclose(step_grads[name], g, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("hidden,activation", [((), "linear"), ((6,), "tanh"),
                                               ((7, 4), "sigmoid"), ((5,), "relu")])
def test_regression_gradients_equal_finite_differences(hidden: tuple[int, ...],
                                                       activation: str) -> None:
    model, X, t = regression_problem(hidden, activation, seed=2)
    objective = Objective("mse", reg_lambda=0.01)
    _, _, grads, _ = model.loss(X, t, objective)

    def total() -> float:
        data_loss, reg_loss, _, _ = model.loss(X, t, objective)
        return data_loss + reg_loss

    for name, value in model.params.items():
        numeric = numeric_gradient(total, value)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-6, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("optimizer", sorted(UPDATES))
@pytest.mark.parametrize("hidden", [(), (6, 5)])
def test_fused_regression_training_equals_textbook(optimizer: str,
                                                   hidden: tuple[int, ...]) -> None:
    """Three epochs of shuffled batches with lambda > 0: every parameter and every step's
    loss agree to 1e-12 in float64, as tests/test_step.py binds the classifiers."""
    model, X, t = regression_problem(hidden, "relu", seed=3, n=40)
    objective = Objective("mse", reg_lambda=0.05)
    runs = {}
    for kind in ("textbook", "fused"):
        net = MLP({k: v.copy() for k, v in model.params.items()}, model.activation_name)
        step = MinibatchStep(net, Optimizer(optimizer), X, t, 16, objective, kind)
        rng = np.random.default_rng(3)
        results = [step(order[i:i + 16], 0.05) for _ in range(3)
                   for order in [rng.permutation(len(t))] for i in range(0, len(t), 16)]
        runs[kind] = (net, results)
    (textbook, res_t), (fused, res_f) = runs["textbook"], runs["fused"]
    for a, b in zip(res_t, res_f):
        assert a[2] == b[2] == 0 and a[:2] == pytest.approx(b[:2], rel=1e-12, abs=1e-15)
    for name, value in textbook.params.items():
        np.testing.assert_allclose(fused.params[name], value, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_regression_trajectory_matches_pytorch_in_float64(optimizer: str) -> None:
    """A 6-5-3-1 tanh MLP, MSE and lambda, five minibatch steps: nncli's training step and
    torch.nn.functional.mse_loss with torch.optim give the same losses and weights."""
    torch = pytest.importorskip("torch")
    from test_torch_parity import (
        assert_same_params,
        make_torch_optimizer,
        torch_scores,
        torch_step_agrees,
    )

    rng = np.random.default_rng(7)
    n, d, lam, lr, mu = 32, 6, 0.01, 0.05, 0.9
    X, t = rng.standard_normal((n, d)), rng.standard_normal(n)
    model = MLP.create(d, (5, 3), 1, "tanh", {"normal": 0.6}, rng, "float64")
    params_t = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in model.params.items()}
    opt_t = make_torch_optimizer(optimizer, [v for k, v in params_t.items() if k[0] == "W"],
                                 [v for k, v in params_t.items() if k[0] == "b"], lr, lam, mu)
    step = MinibatchStep(model, Optimizer(optimizer, mu), X, t, 8, Objective("mse", 1.0,
                                                                             None, lam))
    Xt, tt = torch.tensor(X), torch.tensor(t)
    for k in range(5):
        rows = slice(8 * (k % 4), 8 * (k % 4) + 8)
        data_loss, _, _ = step(np.arange(n)[rows], lr)
        scores = torch_scores(Xt[rows], params_t, torch.tanh)
        torch_step_agrees(opt_t, torch.nn.functional.mse_loss(scores[:, 0], tt[rows]),
                          data_loss)
    assert_same_params(model.params, params_t)


def test_regression_metrics_equal_their_definitions() -> None:
    """mse, rmse, mae, r2 in the target's units (errors (s - t) * scale) and the loss in the
    network's, as scikit-learn's mean_squared_error / mean_absolute_error / r2_score."""
    model, X, t = regression_problem((4,), seed=4)
    shift, scale = 120.0, 7.5
    result = evaluate_regression(model, X, t, Objective("mse"), shift, scale, batch_size=7)
    s = model.scores(X)[:, 0]
    truth, pred = t * scale + shift, s * scale + shift
    assert result.mse == pytest.approx(np.mean((pred - truth) ** 2), rel=1e-12)
    assert result.rmse == pytest.approx(np.sqrt(np.mean((pred - truth) ** 2)), rel=1e-12)
    assert result.mae == pytest.approx(np.mean(np.abs(pred - truth)), rel=1e-12)
    r2 = 1 - np.sum((truth - pred) ** 2) / np.sum((truth - truth.mean()) ** 2)
    assert result.r2 == pytest.approx(r2, rel=1e-12)
    assert result.data_loss == pytest.approx(np.mean((s - t) ** 2), rel=1e-12)
    np.testing.assert_allclose(result.values, pred, rtol=1e-15)


# ---------------------------------------------------------------- config rules


def test_regression_defaults_to_mse_and_a_classifier_to_softmax() -> None:
    reg = config_from_dict({"task": "regression", "data": {"train": "t.csv"}})
    assert (reg.task, reg.loss.type, reg.data.normalize_target) == ("regression", "mse",
                                                                    "standard")
    cls = config_from_dict({"data": {"train": "t.csv"}})
    assert (cls.task, cls.loss.type) == ("classification", "softmax")
    assert config_from_dict(yaml.safe_load(reg.to_yaml())) == reg
    assert config_from_dict({"data": {"train": "t.csv"}, "loss": {"type": "mse"}}).task == \
        "classification"  # mse on one-hot targets stays a classifier's loss


@pytest.mark.parametrize("doc,key", [
    ({"loss": {"type": "softmax"}}, "loss.type"),
    ({"loss": {"type": "svm"}}, "loss.type"),
    ({"loss": {"class_weight": "balanced"}}, "loss.class_weight"),
    ({"train": {"early_stopping": {"metric": "val_acc"}}}, "train.early_stopping.metric"),
    ({"task": "classification", "train": {"early_stopping": {"metric": "val_rmse"}}},
     "train.early_stopping.metric"),
    ({"task": "regresion"}, "task"),
    ({"data": {"normalize_target": "minmax"}}, "data.normalize_target"),
])
def test_task_rules_name_the_key(doc: dict[str, Any], key: str) -> None:
    full = {"task": "regression", **doc, "data": {"train": "t.csv", **doc.get("data", {})}}
    with pytest.raises(NncliError, match=f"config key '{key}'"):
        config_from_dict(full)


# ---------------------------------------------------------------- data and target scaling


def write_regression_table(path: Path, n: int = 60, seed: int = 0,
                           header: tuple[str, ...] = ("x1", "x2", "x3", "y")) -> np.ndarray:
    """A table of 3 features and a target y = 3 x1 - 2 x2 + 0.5 x3 + 150 + noise (units of
    ~tens, as a real target); returns the targets."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = X @ np.array([30.0, -20.0, 5.0]) + 150.0 + rng.normal(scale=2.0, size=n)
    lines = [",".join(header)] + [",".join(f"{v:.6f}" for v in (*row, target))
                                  for row, target in zip(X, y)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return np.array([float(f"{v:.6f}") for v in y])


def regression_doc(root: Path, **train: Any) -> dict[str, Any]:
    return {"task": "regression",
            "data": {"train": str(root / "train.csv"), "test": str(root / "test.csv"),
                     "label_column": "y", "val_split": 0.25},
            "model": {"hidden": [8]},
            "train": {"epochs": 6, "batch_size": 16, "lr": 0.01, "dtype": "float64",
                      **train}}


@pytest.fixture
def regression_files(tmp_path: Path) -> Path:
    write_regression_table(tmp_path / "train.csv", 80, seed=0)
    write_regression_table(tmp_path / "test.csv", 30, seed=1)
    return tmp_path


@pytest.mark.parametrize("normalize_target", ["standard", "none"])
def test_targets_are_scaled_on_the_training_split_and_predictions_inverted(
        regression_files: Path, normalize_target: str) -> None:
    """t = (y - mean) / std of the training split (after val_split) — or y itself for
    none; the network's output s is reported as s * scale + shift."""
    doc = regression_doc(regression_files)
    doc["data"]["normalize_target"] = normalize_target
    cfg = config_from_dict(doc)
    data = load_training_data(cfg)
    targets = write_regression_table(regression_files / "train.csv", 80, seed=0)
    assert data.classes == [] and output_units(cfg.task, data.classes) == 1
    # val_split holds out a plain random quarter (no classes to stratify over)
    keep, held = stratified_split(np.zeros(80, np.int64), 0.25, np.random.default_rng([0, 2]))
    assert (len(data.train.y), len(data.val.y)) == (len(keep), len(held)) == (60, 20)
    kept = targets[keep]
    if normalize_target == "standard":
        assert data.target_shift == kept.mean() and data.target_scale == kept.std()
        assert data.train.y.mean() == pytest.approx(0.0, abs=1e-12)
    else:
        assert (data.target_shift, data.target_scale) == (0.0, 1.0)
    np.testing.assert_array_equal(data.train.y, (kept - data.target_shift) / data.target_scale)
    np.testing.assert_array_equal(data.val.y,
                                  (targets[held] - data.target_shift) / data.target_scale)
    np.testing.assert_allclose(data.train.y * data.target_scale + data.target_shift, kept,
                               rtol=1e-15)
    test_targets = write_regression_table(regression_files / "test.csv", 30, seed=1)
    np.testing.assert_allclose(data.test.y * data.target_scale + data.target_shift,
                               test_targets, rtol=1e-14)


def test_checkpoint_keeps_the_target_scaling_and_predict_inverts_it(
        regression_files: Path) -> None:
    result = run_cli("train", write_yaml(regression_files, regression_doc(regression_files)),
                     "--out", regression_files / "run", "--quiet")
    assert result.exit_code == 0, result.output
    data = load_training_data(config_from_dict(regression_doc(regression_files)))
    ckpt = load_checkpoint(regression_files / "run" / "checkpoints" / "best.npz")
    assert (ckpt.target_shift, ckpt.target_scale) == (data.target_shift, data.target_scale)
    assert ckpt.classes == [] and ckpt.model.sizes[-1] == 1
    rows = (regression_files / "test.csv").read_text().splitlines()[1:4]
    X_raw = np.array([[float(v) for v in row.split(",")[:3]] for row in rows])
    s = ckpt.model.scores(ckpt.normalization.apply(X_raw, "float64"))[:, 0]
    expected = s * ckpt.target_scale + ckpt.target_shift
    got = [p.value for p in Predictor(ckpt_path(regression_files)).predict(
        [",".join(row.split(",")[:3]) for row in rows])]
    np.testing.assert_array_equal(got, expected)


# ---------------------------------------------------------------- through the CLI


def run_cli(*args: Any, input: str | None = None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def write_yaml(root: Path, doc: dict[str, Any], name: str = "reg.yaml") -> Path:
    path = root / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def ckpt_path(root: Path, which: str = "best") -> Path:
    return root / "run" / "checkpoints" / f"{which}.npz"


def test_regression_run_end_to_end(regression_files: Path) -> None:
    """train writes regression columns and test metrics; eval (table and --json) and predict
    (tsv, csv, jsonl, a header in another order) answer in the target's units."""
    root = regression_files
    cfg = write_yaml(root, regression_doc(root))
    result = run_cli("train", cfg, "--out", root / "run", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    with open(root / "run" / "metrics.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == REGRESSION_METRIC_COLUMNS and len(rows) == 7
    assert set(summary["final"]) == set(REGRESSION_METRIC_COLUMNS)
    assert set(summary["test"]) == {"n", "loss", "data_loss", "reg_loss", "mse", "rmse",
                                    "mae", "r2"}
    assert summary["best_metric"] == "val_loss"
    report = json.loads(run_cli("eval", ckpt_path(root), root / "test.csv", "--json").stdout)
    for key in ("n", "loss", "data_loss", "reg_loss", "mse", "rmse", "mae", "r2"):
        assert report[key] == pytest.approx(summary["test"][key], rel=1e-12), key
    assert report["rmse"] == pytest.approx(np.sqrt(report["mse"]), rel=1e-12)
    table = run_cli("eval", ckpt_path(root), root / "test.csv")
    assert table.exit_code == 0 and "rmse" in table.stdout and "r2" in table.stdout
    lines = (root / "test.csv").read_text().splitlines()
    tsv = run_cli("predict", ckpt_path(root), input="\n".join(lines[:4]) + "\n")
    assert tsv.exit_code == 0, tsv.output
    answers = [line.split("\t") for line in tsv.stdout.splitlines()]
    assert [a[0] for a in answers] == ["1", "2", "3"] and all(len(a) == 2 for a in answers)
    assert all(len(a[1].replace("-", "").replace(".", "").lstrip("0")) <= 6 for a in answers)
    jsonl = run_cli("predict", ckpt_path(root), "--format", "jsonl",
                    input="\n".join(lines[:4]) + "\n")
    objects = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert [set(o) for o in objects] == [{"input", "value"}] * 3
    assert [float(a[1]) for a in answers] == [o["value"] for o in objects]
    csv_out = run_cli("predict", ckpt_path(root), "--format", "csv",
                      input="\n".join(lines[:4]) + "\n")
    assert csv_out.stdout.replace(",", "\t") == tsv.stdout
    shuffled = ["y,x3,x1,x2"] + [",".join([c[3], c[2], c[0], c[1]]) for c in
                                 (line.split(",") for line in lines[1:4])]
    reordered = run_cli("predict", ckpt_path(root), input="\n".join(shuffled) + "\n")
    assert reordered.stdout == tsv.stdout


def test_regression_resume_equals_an_uninterrupted_run(regression_files: Path) -> None:
    root = regression_files
    whole = run_cli("train", write_yaml(root, regression_doc(root)), "--out", root / "whole",
                    "--quiet", "--json")
    assert whole.exit_code == 0, whole.output
    short = regression_doc(root, epochs=3)
    first = run_cli("train", write_yaml(root, short, "short.yaml"), "--out", root / "run",
                    "--quiet")
    assert first.exit_code == 0, first.output
    resumed = run_cli("train", write_yaml(root, regression_doc(root), "short.yaml"),
                      "--resume", root / "run", "--quiet", "--json")
    assert resumed.exit_code == 0, resumed.output
    a, b = (json.loads(r.stdout) for r in (whole, resumed))
    for key in REGRESSION_METRIC_COLUMNS:
        if key != "seconds":
            assert a["final"][key] == b["final"][key], key
    assert a["test"] == b["test"]


def test_early_stopping_on_val_rmse(regression_files: Path) -> None:
    """min_delta larger than any RMSE gain: the first epoch is the best, patience 2 stops
    the run two epochs later, best.npz holds epoch 1 and the summary says so."""
    root = regression_files
    doc = regression_doc(root, epochs=40,
                         early_stopping={"patience": 2, "metric": "val_rmse",
                                         "min_delta": 1e6})
    result = run_cli("train", write_yaml(root, doc), "--out", root / "run", "--quiet",
                     "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    rows = [json.loads(line) for line in
            (root / "run" / "metrics.jsonl").read_text().splitlines()]
    assert summary["best_metric"] == "val_rmse" and summary["best_epoch"] == 1
    assert summary["stopped_early"] and len(rows) == 3
    assert summary["best"]["val_rmse"] == rows[0]["val_rmse"]
    assert load_checkpoint(ckpt_path(root)).epoch == 1
    resumed = run_cli("train", write_yaml(root, doc), "--resume", root / "run", "--quiet")
    assert resumed.exit_code == 2 and "stopped early" in resumed.stderr


def test_gradcheck_passes_on_a_regression_config(regression_files: Path) -> None:
    root = regression_files
    for hidden, activation in (([], "relu"), ([6, 4], "tanh")):
        doc = regression_doc(root)
        doc["model"] = {"hidden": hidden, "activation": activation}
        doc["reg"] = {"lambda": 0.01}
        result = run_cli("gradcheck", write_yaml(root, doc), "--json")
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["ok"] and set(report["params"]) == {
            f"{p}{i}" for i in range(1, len(hidden) + 2) for p in "Wb"}


def test_info_shows_one_output_unit(regression_files: Path) -> None:
    root = regression_files
    result = run_cli("info", write_yaml(root, regression_doc(root)), "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["layers"][-1]["out"] == 1 and info["task"] == "regression"
    assert "classes" not in info


def test_not_converged_warning_on_regression(regression_files: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """Plain SGD at a tiny rate: the training loss is still falling at the end."""
    root = regression_files
    doc = regression_doc(root, epochs=20, lr=0.0005, optimizer="sgd")
    result = run_cli("train", write_yaml(root, doc), "--out", root / "run", "--quiet",
                     "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["converged"] is False
    assert "may not have converged" in result.stderr


# ---------------------------------------------------------------- the bundled diabetes table

ROOT = Path(__file__).resolve().parents[1]
REGRESSION_CONFIGS = [ROOT / "configs" / "diabetes-linear.yaml",
                      ROOT / "configs" / "diabetes-regression.yaml"]


def test_the_diabetes_split_is_the_published_table() -> None:
    """442 rows of 10 variables and the target, in their own units (sex 1/2, bmi ~20-40,
    target 25..346), 331 for training and 111 for testing."""
    header = "age,sex,bmi,bp,s1,s2,s3,s4,s5,s6,target"
    tables = {}
    for name, rows in (("train", 331), ("test", 111)):
        lines = (ROOT / "datasets" / "diabetes" / f"{name}.csv").read_text().splitlines()
        assert lines[0] == header and len(lines) == rows + 1
        tables[name] = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    both = np.concatenate(list(tables.values()))
    assert set(both[:, 1]) == {1.0, 2.0} and (both[:, -1].min(), both[:, -1].max()) == (25, 346)


@pytest.mark.parametrize("config", REGRESSION_CONFIGS, ids=[p.stem for p in REGRESSION_CONFIGS])
def test_regression_config_trains_one_epoch_and_checks_its_gradients(
        config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # config paths are relative to the repository root
    result = run_cli("train", config, "--out", tmp_path / "run", "--set", "train.epochs=1",
                     "--quiet", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["epochs"] == 1 and summary["final"]["train_rmse"] > 0
    assert np.isfinite(summary["test"]["rmse"]) and summary["test"]["n"] == 111
    check = run_cli("gradcheck", config, "--samples", "5", "--json")
    assert check.exit_code == 0 and json.loads(check.stdout)["ok"] is True, check.output


def test_the_linear_config_is_as_good_as_least_squares(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """configs/diabetes-linear.yaml as shipped reaches the least-squares fit: its test RMSE
    is scikit-learn's LinearRegression's on the same split (56.3929042, computed by
    datasets/diabetes/make.py --baselines) to 1e-6, R^2 0.3594."""
    monkeypatch.chdir(ROOT)
    result = run_cli("train", REGRESSION_CONFIGS[0], "--out", tmp_path / "run", "--quiet",
                     "--json")
    assert result.exit_code == 0, result.output
    test = json.loads(result.stdout)["test"]
    assert test["rmse"] == pytest.approx(56.3929042, abs=1e-6)
    assert test["r2"] == pytest.approx(0.3594, abs=1e-4)


def test_info_names_a_linear_regression_model(tmp_path: Path) -> None:
    """``info`` on a linear regression config says what the model is, not "classifier"."""
    from helpers_data import cli as run_cli
    result = run_cli("info", str(ROOT / "configs" / "diabetes-linear.yaml"))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("model: linear regression, loss mse")
