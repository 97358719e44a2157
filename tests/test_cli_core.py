"""The CLI's core commands: --version, gradcheck, info, and the error contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import nncli
from nncli.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from nncli.cli import main
from nncli.config import config_from_dict
from nncli.data import Normalization
from nncli.nn.activations import ACTIVATIONS, Activation
from nncli.nn.model import MLP

D, K = 4, 3  # the table_config fixture: 4 features, classes cat/dog/frog


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def nncli_process(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    """Run the real executable (the venv's console script, else ``python -m nncli.cli``)."""
    script = Path(sys.executable).with_name("nncli")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "nncli.cli"]
    full_env = {k: v for k, v in os.environ.items() if k != "NNCLI_DEBUG"}
    full_env.update(env or {})
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=120)


def sizes(hidden: list[int]) -> dict[str, int]:
    dims = [D, *hidden, K]
    out = {}
    for i, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:]), start=1):
        out[f"W{i}"], out[f"b{i}"] = fan_in * fan_out, fan_out
    return out


def assert_one_error_line(result, *fragments: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


# ---------------------------------------------------------------- version and help


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"nncli, version {nncli.__version__}"


def test_version_of_the_installed_executable():
    proc = nncli_process("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"nncli, version {nncli.__version__}"


@pytest.mark.parametrize("command", ["gradcheck", "info"])
def test_help(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.stdout


# ---------------------------------------------------------------- gradcheck passes

COMBOS = [
    ({"hidden": []}, {"type": "softmax"}, 0.1, None),
    ({"hidden": []}, {"type": "svm", "margin": 2.0}, 0.05, None),
    ({"hidden": [], "activation": "tanh"}, {"type": "mse"}, 0.3, None),
    ({"hidden": [6], "activation": "tanh"}, {"type": "softmax"}, 0.1, None),
    ({"hidden": [6, 5], "activation": "sigmoid"}, {"type": "mse", "class_weight": "balanced"},
     0.05, None),
    ({"hidden": [5], "activation": "relu"}, {"type": "softmax"}, 0.01, None),
    ({"hidden": [5, 4], "activation": "leaky_relu"}, {"type": "svm"}, 0.2, None),
    ({"hidden": [3], "activation": "linear"},
     {"type": "softmax", "class_weight": {"cat": 3, "frog": 0.5}}, 1.0, None),
    ({"hidden": [6], "activation": "tanh"}, {"type": "softmax"}, 0.5, "1e-7"),
]


@pytest.mark.parametrize("model,loss,lam,tol", COMBOS)
def test_gradcheck_passes_and_reports_every_parameter(table_config, model, loss, lam, tol):
    cfg = table_config(model=model, loss=loss, reg={"lambda": lam})
    result = invoke("gradcheck", cfg, "--json", *(["--tol", tol] if tol else []))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["tol"] == float(tol or 1e-6)
    expected = sizes(model["hidden"])
    assert list(report["params"]) == list(expected)
    for name, entry in report["params"].items():
        assert {"max_rel_error", "checked"} <= set(entry)
        assert 0.0 <= entry["max_rel_error"] <= report["tol"]
        assert entry["checked"] + entry.get("skipped_at_kink", 0) == expected[name]
        assert entry["checked"] >= expected[name] // 2


def test_gradcheck_runs_in_float64_whatever_the_training_dtype(table_config):
    cfg = table_config(model={"hidden": [5], "activation": "sigmoid"},
                       reg={"lambda": 0.1}, train={"dtype": "float32"})
    result = invoke("gradcheck", cfg, "--json", "--tol", "1e-7")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ok"] is True


def test_gradcheck_samples_limits_checked(table_config):
    cfg = table_config(model={"hidden": [6], "activation": "tanh"}, reg={"lambda": 0.1})
    result = invoke("gradcheck", cfg, "--json", "--samples", "2")
    assert result.exit_code == 0, result.output
    checked = {k: v["checked"] for k, v in json.loads(result.stdout)["params"].items()}
    assert checked == {"W1": 2, "b1": 2, "W2": 2, "b2": 2}
    assert invoke("gradcheck", cfg, "--samples", "0").exit_code == 2


def test_gradcheck_text_output_and_set(table_config):
    cfg = table_config(model={"hidden": [4], "activation": "tanh"})
    result = invoke("gradcheck", cfg, "--set", "reg.lambda=0.2", "--set", "loss.type=mse")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["param", "checked", "entries", "max_rel_error", "h", "status"]
    assert [line.split()[0] for line in lines[1:]] == ["W1", "b1", "W2", "b2"]
    assert all(line.split()[-1] == "ok" for line in lines[1:])
    assert "gradcheck passed" in result.stderr


def test_gradcheck_on_an_npz_of_images(write_npz, write_config):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(20, 3, 2)).astype(np.uint8)  # (N, H, W) -> D = 6
    y = np.arange(20) % 2
    cfg = write_config({"data": {"train": str(write_npz(X, y)), "normalize": "scale"},
                        "model": {"hidden": [3], "activation": "sigmoid"},
                        "loss": {"type": "svm"}, "reg": {"lambda": 0.01}})
    result = invoke("gradcheck", cfg, "--json")
    assert result.exit_code == 0, result.output
    params = json.loads(result.stdout)["params"]
    assert params["W1"]["checked"] + params["W1"].get("skipped_at_kink", 0) == 3 * 6
    assert params["b2"]["checked"] + params["b2"].get("skipped_at_kink", 0) == 2


# ---------------------------------------------------------------- gradcheck catches bugs


def test_gradcheck_fails_naming_a_broken_activation(table_config, monkeypatch):
    """tanh's derivative written as 1 - a instead of 1 - a^2: the layers below it fail."""
    tanh = ACTIVATIONS["tanh"]
    monkeypatch.setitem(ACTIVATIONS, "tanh", Activation("tanh", tanh.fn, lambda a: 1.0 - a))
    cfg = table_config(model={"hidden": [5], "activation": "tanh"}, reg={"lambda": 0.1})
    result = invoke("gradcheck", cfg, "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["params"]["W1"]["max_rel_error"] > 1e-2
    assert report["params"]["b1"]["max_rel_error"] > 1e-2
    assert report["params"]["W2"]["max_rel_error"] <= 1e-6  # above the broken layer
    assert report["params"]["b2"]["max_rel_error"] <= 1e-6
    failed = [line for line in result.stderr.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "W1" in failed[0] and "b1" in failed[0]
    assert "W2" not in failed[0]
    assert "Traceback" not in result.output


def test_gradcheck_fails_on_a_scaled_weight_gradient_and_tol_decides(table_config, monkeypatch):
    import nncli.nn.model as model_module

    real = model_module.affine_backward

    def scaled(dz, a, W, need_da=True):
        da, dW, db = real(dz, a, W, need_da)
        return da, dW * 1.001, db

    monkeypatch.setattr(model_module, "affine_backward", scaled)
    cfg = table_config(model={"hidden": []})
    result = invoke("gradcheck", cfg)
    assert result.exit_code == 1
    status = {line.split()[0]: line.split()[-1] for line in result.stdout.splitlines()[1:]}
    assert status == {"W1": "FAIL", "b1": "ok"}
    assert "gradcheck FAILED" in result.stderr and "W1 max relative error" in result.stderr
    assert "b1 max" not in result.stderr
    assert invoke("gradcheck", cfg, "--tol", "0.01").exit_code == 0


def test_gradcheck_json_with_a_nan_gradient_is_valid_json_and_fails(table_config, monkeypatch):
    import nncli.nn.model as model_module

    real = model_module.affine_backward

    def nan_db(dz, a, W, need_da=True):
        da, dW, db = real(dz, a, W, need_da)
        db[-1] = np.nan
        return da, dW, db

    monkeypatch.setattr(model_module, "affine_backward", nan_db)
    result = invoke("gradcheck", table_config(), "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["params"]["b1"]["max_rel_error"] is None
    assert report["params"]["W1"]["max_rel_error"] <= 1e-6


# ---------------------------------------------------------------- info


def test_info_json_for_an_mlp_config(table_config):
    cfg = table_config(model={"hidden": [6], "activation": "tanh"})
    result = invoke("info", cfg, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["layers"] == [
        {"name": "fc1", "in": 4, "out": 6, "activation": "tanh", "params": 30},
        {"name": "fc2", "in": 6, "out": 3, "activation": "linear", "params": 21},
    ]
    assert info["params"] == {"W1": 24, "b1": 6, "W2": 18, "b2": 3}
    assert info["total_params"] == 51
    assert info["input_dim"] == 4
    assert info["classes"] == ["cat", "dog", "frog"]
    assert info["config"]["model"]["hidden"] == [6]
    assert info["config"]["train"]["lr"] == 0.001  # the resolved config, defaults filled in


def test_info_text_for_a_linear_config(table_config):
    result = invoke("info", table_config())
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "linear classifier" in out and "total params: 15" in out
    assert "classes (3): cat dog frog" in out and "config:" in out


def test_info_without_readable_data_warns_and_leaves_sizes_unknown(write_config, tmp_path):
    cfg = write_config({"data": {"train": str(tmp_path / "nowhere.csv")},
                        "model": {"hidden": [8]}})
    result = invoke("info", cfg, "--json")
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["input_dim"] is None and info["total_params"] is None
    assert "classes" not in info
    assert info["params"]["b1"] == 8
    assert "warning" in result.stderr and "nowhere.csv" in result.stderr


def test_info_json_for_a_checkpoint(tmp_path):
    cfg = config_from_dict({"data": {"train": "t.csv"},
                            "model": {"hidden": [5], "activation": "relu"}})
    model = MLP.create(6, (5,), 3, "relu", rng=np.random.default_rng(0), dtype="float32")
    path = tmp_path / "last.npz"
    save_checkpoint(path, Checkpoint(
        model=model, config=cfg, classes=["a", "b", "c"], input_shape=(2, 3),
        normalization=Normalization("standard", np.zeros(6), np.ones(6)), epoch=4, step=40))
    assert load_checkpoint(path).epoch == 4
    result = invoke("info", path, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["params"] == {"W1": 30, "b1": 5, "W2": 15, "b2": 3}
    assert info["total_params"] == 53
    assert [layer["params"] for layer in info["layers"]] == [35, 18]
    assert info["input_dim"] == 6 and info["classes"] == ["a", "b", "c"]
    assert info["checkpoint"]["epoch"] == 4 and info["checkpoint"]["step"] == 40
    assert info["checkpoint"]["dtype"] == "float32"


# ---------------------------------------------------------------- the error contract


def test_unknown_key_is_one_error_line_with_a_suggestion(table_config):
    cfg = table_config(train={"learning_rate": 0.1})
    for command in ("gradcheck", "info"):
        assert_one_error_line(invoke(command, cfg), str(cfg), "train.learning_rate",
                              "did you mean 'train.lr'")


def test_missing_config_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    for command in ("gradcheck", "info"):
        assert_one_error_line(invoke(command, missing), "nope.yaml")


def test_malformed_yaml_names_line_and_column(write_config):
    cfg = write_config("data:\n  train: t.csv\nmodel:\n  hidden: [4, 2\nloss: {}\n")
    assert_one_error_line(invoke("gradcheck", cfg), "cfg.yaml", "line 5, column 5")


@pytest.mark.parametrize("args,fragment", [
    (["--set", "train.lambda=0.1"], "did you mean 'reg.lambda'"),
    (["--set", "train.batch_size=0"], "train.batch_size"),
    (["--set", "model.activation=swish"], "model.activation"),
    (["--set", "train.lr"], "KEY=VALUE"),
])
def test_bad_set_is_an_error(table_config, args, fragment):
    assert_one_error_line(invoke("gradcheck", table_config(), *args), fragment)


def test_missing_data_file_names_it(write_config, tmp_path):
    cfg = write_config({"data": {"train": str(tmp_path / "absent.csv")}})
    assert_one_error_line(invoke("gradcheck", cfg), "absent.csv")


def test_one_class_data_is_an_error(write_csv, write_config):
    data = write_csv(np.ones((4, 2)), ["cat"] * 4)
    cfg = write_config({"data": {"train": str(data)}})
    assert_one_error_line(invoke("gradcheck", cfg), "at least 2")


def test_real_process_error_has_no_traceback_unless_nncli_debug(table_config):
    cfg = table_config(train={"learning_rate": 0.1})
    quiet = nncli_process("gradcheck", cfg)
    assert quiet.returncode == 2 and quiet.stdout == ""
    assert quiet.stderr.strip().splitlines() == [quiet.stderr.strip()]
    assert quiet.stderr.startswith("Error: ") and "Traceback" not in quiet.stderr
    loud = nncli_process("gradcheck", cfg, env={"NNCLI_DEBUG": "1"})
    assert loud.returncode == 2
    assert "Traceback (most recent call last)" in loud.stderr
    assert "NncliError" in loud.stderr
    assert loud.stderr.strip().splitlines()[-1] == quiet.stderr.strip()


def test_nncli_debug_traceback_in_process(table_config):
    cfg = table_config(model={"activaton": "relu"})
    result = invoke("info", cfg, env={"NNCLI_DEBUG": "1"})
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "did you mean 'model.activation'" in result.stderr
