"""``nncli trace``: its dW/db are the gradient of the full loss on that one example computed by
the checked backward path (``MLP.loss``), its centered differences agree with them, and it
names the chain rule's steps; a bad example or source is one ``Error:`` line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers_data import blobs, cli, config_doc, train_run, write_table, write_yaml

from nncli.build import class_weights, model_from_config, objective_from_config, output_units
from nncli.checkpoint import load_checkpoint
from nncli.config import load_config
from nncli.data import load_training_data
from nncli.nn.model import MLP


def table(root: Path, n_per_class: int = 6) -> Path:
    X, y = blobs(n_per_class, n_features=4, n_classes=3, seed=1)
    return write_table(root / "t.csv", X, [f"c{v}" for v in y])


def traced(*args: Any) -> dict[str, Any]:
    result = cli("trace", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def reference(model: MLP, x: np.ndarray, y: np.ndarray, objective: Any
              ) -> dict[str, np.ndarray]:
    """The checked backward path's gradients of the full loss on the batch of one (x, y)."""
    _, _, grads, _ = model.loss(x, y, objective)
    return grads


def assert_matches(trace: dict[str, Any], grads: dict[str, np.ndarray]) -> None:
    layers = [b["layer"] for b in trace["backward"]]
    assert layers == sorted(layers, reverse=True)  # from the last layer down
    for b in trace["backward"]:
        i = b["layer"]
        np.testing.assert_allclose(np.array(b["dW"]), grads[f"W{i}"], rtol=0, atol=1e-10)
        np.testing.assert_allclose(np.array(b["db"]), grads[f"b{i}"], rtol=0, atol=1e-10)
    assert [n["param"] for n in trace["numeric"]] == [f"W{i}" for i in sorted(layers)]
    for n in trace["numeric"]:
        assert n["h"] > 0
        row, col = n["index"]
        assert n["analytic"] == pytest.approx(grads[n["param"]][row, col], abs=1e-12)
        assert n["numeric"] == pytest.approx(n["analytic"], rel=1e-5, abs=1e-8)


def config_reference(cfg_path: Path, example: int) -> tuple[dict[str, np.ndarray], MLP]:
    cfg = load_config(cfg_path)
    data = load_training_data(cfg, splits=("train",), dtype="float64")
    model = model_from_config(cfg, data.train.X.shape[1], output_units(cfg.task, data.classes),
                              "float64")
    objective = objective_from_config(cfg, class_weights(cfg, data))
    rows = slice(example, example + 1)
    return reference(model, data.train.X[rows], data.train.y[rows], objective), model


@pytest.mark.parametrize("hidden", [[], [6, 5]])
@pytest.mark.parametrize("loss", ["softmax", "svm"])
def test_a_configs_trace_is_the_gradient_of_the_full_loss_on_that_example(
        tmp_path: Path, hidden: list[int], loss: str) -> None:
    doc = config_doc(table(tmp_path), model={"hidden": hidden, "activation": "tanh"},
                     loss={"type": loss, "class_weight": "balanced"}, reg={"lambda": 0.05})
    cfg = write_yaml(tmp_path / "c.yaml", doc)
    trace = traced(cfg, "--example", "4")
    grads, model = config_reference(cfg, 4)
    assert trace["example"] == 4 and trace["label"] == "c0"
    assert trace["input"].endswith("line 6")
    assert len(trace["forward"]) == len(hidden) + 1
    assert "a" not in trace["forward"][-1] and all("a" in f for f in trace["forward"][:-1])
    assert trace["loss"]["type"] == loss
    assert trace["loss"]["reg_loss"] == pytest.approx(
        0.05 * sum(float((w ** 2).sum()) for k, w in model.params.items() if k[0] == "W"))
    assert trace["loss"]["total"] == pytest.approx(
        trace["loss"]["data_loss"] + trace["loss"]["reg_loss"])
    assert sum(trace["probabilities"]) == pytest.approx(1.0)
    assert_matches(trace, grads)


def test_a_checkpoints_trace_uses_its_weights_and_normalization_on_other_data(
        tmp_path: Path) -> None:
    run = train_run(tmp_path / "run", config_doc(
        table(tmp_path), model={"hidden": [5]}, reg={"lambda": 0.01}, train={"epochs": 3}))
    X, y = blobs(3, n_features=4, n_classes=3, seed=7)
    other = write_table(tmp_path / "other.csv", X, [f"c{v}" for v in y])
    ckpt_path = run / "checkpoints" / "last.npz"
    trace = traced(ckpt_path, "--example", "5", "--data", other)
    ckpt = load_checkpoint(ckpt_path)
    model = MLP({k: v.astype(np.float64) for k, v in ckpt.model.params.items()},
                ckpt.model.activation_name)
    x = ckpt.normalization.apply(X[5:6], "float64")
    np.testing.assert_allclose(trace["x"], x[0], rtol=0, atol=1e-12)
    assert trace["label"] == "c1"
    objective = objective_from_config(ckpt.config, ckpt.class_weights)
    assert_matches(trace, reference(model, x, np.array([1]), objective))


def test_a_regression_trace_has_no_probabilities_and_the_mse_gradient(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(12, 3))
    t = X @ np.array([1.5, -2.0, 0.5]) + 10.0
    data = write_table(tmp_path / "r.csv", X, [repr(float(v)) for v in t], label_column="y")
    for hidden in ([], [4]):
        cfg = write_yaml(tmp_path / "r.yaml", config_doc(
            data, task="regression", model={"hidden": hidden}, reg={"lambda": 0.1},
            data={"label_column": "y"}))
        trace = traced(cfg, "--example", "2")
        assert trace["probabilities"] is None and trace["loss"]["type"] == "mse"
        assert trace["label"] == pytest.approx(t[2])
        assert len(trace["scores"]) == 1
        grads, _ = config_reference(cfg, 2)
        assert_matches(trace, grads)


def test_the_human_trace_names_the_chain_rules_steps(tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path / "c.yaml", config_doc(table(tmp_path), model={"hidden": [5]}))
    result = cli("trace", cfg)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for step in ("forward", "z1 = W1 x + b1", "a1 = relu(z1)", "s = W2 a1 + b2",
                 "probabilities p = softmax(s)", "loss L = data loss", "backward",
                 "dL/ds = p - onehot(y)", "delta2 = dL/dz2 = dL/ds", "dW2 = delta2 a1^T",
                 "db2 = delta2", "da1 = W2^T delta2", "slope relu'(z1)",
                 "delta1 = dL/dz1 = da1 * relu'(z1)", "dW1 = delta1 x^T",
                 "follow the slope", "W1[", "W2["):
        assert step in out, step


@pytest.mark.parametrize("args,message", [
    (["--example", "18"], "--example 18: "),
    (["--example", "-1"], "--example -1: "),
    (["--data", "missing.csv"], "missing.csv"),
])
def test_an_example_out_of_range_or_bad_data_is_one_error_line(
        tmp_path: Path, args: list[str], message: str) -> None:
    cfg = write_yaml(tmp_path / "c.yaml", config_doc(table(tmp_path)))
    result = cli("trace", cfg, *[str(tmp_path / a) if a.endswith(".csv") else a for a in args])
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], lines


def test_labels_the_model_never_saw_are_an_error(tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path / "c.yaml", config_doc(table(tmp_path)))
    other = write_table(tmp_path / "o.csv", np.zeros((2, 4)), ["c0", "zebra"])
    result = cli("trace", cfg, "--data", other, "--example", "1")
    assert result.exit_code == 2 and result.stderr.startswith("Error:")
