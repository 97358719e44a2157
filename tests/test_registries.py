"""The one-place claim: an activation registered in nncli.nn.activations.ACTIVATIONS alone
is accepted by the config, trains through ``nncli train`` and passes ``nncli gradcheck``.

The config validates ``model.activation`` against the registry dict itself at validation
time, so adding the entry here (monkeypatch.setitem on the same dict) is all it takes."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from nncli.cli import main
from nncli.nn.activations import ACTIVATIONS, Activation


def _softplus(z: np.ndarray, out: np.ndarray | None = None, **_: np.ndarray) -> np.ndarray:
    """f(z) = log(1 + e^z), as max(z, 0) + log1p(e^-|z|) (no overflow)."""
    return np.add(np.maximum(z, 0.0), np.log1p(np.exp(-np.abs(z))), out=out)


def _softplus_grad(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """f'(z) = sigmoid(z) from the output a = f(z): e^a = 1 + e^z, so sigmoid(z) = 1 - e^-a."""
    out = np.negative(a, out=out)
    np.expm1(out, out=out)
    return np.negative(out, out=out)


def test_softplus_matches_its_closed_form() -> None:
    z = np.random.default_rng(0).standard_normal(50) * 4
    a = _softplus(z)
    np.testing.assert_allclose(a, np.log(1.0 + np.exp(z)), rtol=1e-12)
    np.testing.assert_allclose(_softplus_grad(a), 1.0 / (1.0 + np.exp(-z)), rtol=1e-10)


def test_an_activation_registered_in_one_place_trains_and_passes_gradcheck(
        table_config, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ACTIVATIONS, "softplus", Activation("softplus", _softplus,
                                                             _softplus_grad))
    cfg = table_config(model={"hidden": [5], "activation": "softplus"},
                       train={"epochs": 3, "batch_size": 8})
    runner = CliRunner()
    trained = runner.invoke(main, ["train", str(cfg), "--out", str(tmp_path / "run")])
    assert trained.exit_code == 0, trained.output
    checked = runner.invoke(main, ["gradcheck", str(cfg), "--samples", "all"])
    assert checked.exit_code == 0, checked.output


def test_an_unregistered_activation_is_refused_with_the_registry_listed(table_config) -> None:
    cfg = table_config(model={"hidden": [5], "activation": "softplus"})
    result = CliRunner().invoke(main, ["gradcheck", str(cfg)])
    assert result.exit_code == 2
    assert all(name in result.output for name in ACTIVATIONS)
