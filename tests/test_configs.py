"""Every example config under configs/ runs as shipped (one epoch here, to stay fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from nncli.cli import main
from nncli.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
# task: regression configs have no accuracy: tests/test_regression.py runs them
CLASSIFIER_CONFIGS = [p for p in CONFIGS
                      if (yaml.safe_load(p.read_text(encoding="utf-8")) or {}).get("task")
                      != "regression"]


def test_there_are_example_configs() -> None:
    names = {p.stem for p in CONFIGS}
    assert {"digits-mlp", "digits-linear-softmax", "digits-linear-svm", "mnist1d-mlp"} <= names


@pytest.mark.parametrize("config", CLASSIFIER_CONFIGS,
                         ids=[p.stem for p in CLASSIFIER_CONFIGS])
def test_config_trains_one_epoch_and_checks_its_gradients(
        config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # config paths are relative to the repository root
    cfg = load_config(config)
    assert cfg.name == config.stem
    runner = CliRunner()
    result = runner.invoke(main, ["train", str(config), "--out", str(tmp_path / "run"),
                                  "--set", "train.epochs=1", "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["epochs"] == 1
    assert 0.0 <= summary["final"]["train_acc"] <= 1.0
    if cfg.data.test is not None:
        # One epoch already beats chance by a wide margin on every bundled dataset.
        assert summary["test"]["accuracy"] > 0.3, summary["test"]
    check = runner.invoke(main, ["gradcheck", str(config), "--samples", "5", "--json"])
    assert check.exit_code == 0, check.output
    assert json.loads(check.stdout)["ok"] is True
