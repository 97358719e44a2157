"""The training steps: the fused step (nncli/fast/step.py) is the textbook step
(nncli/nn/step.py) to 1e-12 in float64, and the textbook step's gradients are the
derivatives of the objective (finite differences), layer pair by layer pair."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_gradients import numeric_gradient

from nncli.build import STEPS, training_step
from nncli.fast.step import FusedStep
from nncli.nn.layers import affine_backward, affine_forward, init_affine
from nncli.nn.losses import LOSSES, Objective
from nncli.nn.model import MLP
from nncli.nn.optim import UPDATES, Optimizer
from nncli.nn.step import TrainingStep
from nncli.train import MinibatchStep

ARCHS = {"linear": (), "mlp": (6, 5)}


def problem(hidden: tuple[int, ...], activation: str, seed: int = 0, n: int = 40, d: int = 7,
            k: int = 4) -> tuple[MLP, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X, y = rng.standard_normal((n, d)), rng.integers(0, k, n)
    model = MLP.create(d, hidden, k, activation, {"normal": 0.5}, rng, "float64")
    return model, X, y


def copy_of(model: MLP) -> MLP:
    return MLP({k: v.copy() for k, v in model.params.items()}, model.activation_name)


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("optimizer", sorted(UPDATES))
def test_fused_training_equals_textbook_training(optimizer: str, loss: str, activation: str,
                                                 arch: str) -> None:
    """Three epochs of shuffled batches (the last one short), class weights and lambda > 0:
    parameters, optimizer state and every step's (loss, reg, correct) agree to 1e-12."""
    model, X, y = problem(ARCHS[arch], activation)
    objective = Objective(loss, 1.0, np.array([1.0, 2.0, 0.5, 1.5]), 0.05)
    runs = {}
    for kind in ("textbook", "fused"):
        net, opt = copy_of(model), Optimizer(optimizer)
        step = MinibatchStep(net, opt, X, y, 16, objective, kind)
        rng = np.random.default_rng(3)
        results = [step(order[i:i + 16], 0.05) for _ in range(3)
                   for order in [rng.permutation(len(y))] for i in range(0, len(y), 16)]
        runs[kind] = (net, opt, results)
    (textbook, opt_t, res_t), (fused, opt_f, res_f) = runs["textbook"], runs["fused"]
    assert isinstance(MinibatchStep(copy_of(model), Optimizer(optimizer), X, y, 16,
                                    objective, "fused").step, FusedStep)
    for a, b in zip(res_t, res_f):
        assert a[2] == b[2] and a[:2] == pytest.approx(b[:2], rel=1e-12, abs=1e-15)
    for name, value in textbook.params.items():
        np.testing.assert_allclose(fused.params[name], value, rtol=1e-12, atol=1e-14,
                                   err_msg=name)
    state_t, state_f = opt_t.state_arrays(), opt_f.state_arrays()
    assert state_t.keys() == state_f.keys()
    for name, value in state_t.items():
        np.testing.assert_allclose(state_f[name], value, rtol=1e-12, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("kind", sorted(STEPS))
@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("activation", ["sigmoid", "leaky_relu"])
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_step_gradients_are_the_objectives_derivatives(kind: str, arch: str, activation: str,
                                                       loss: str) -> None:
    """The step's grads against centered differences of the full loss, data + lambda R(W),
    evaluated by the model's own forward pass (no backprop involved)."""
    model, X, y = problem(ARCHS[arch], activation, seed=5, n=9, d=4, k=3)
    objective = Objective(loss, 1.0, np.array([1.0, 0.5, 2.0]), 0.1)
    step = training_step(model, objective, 12, kind)
    data, reg, correct, grads = step.gradients(X, y)

    def full_loss() -> float:
        return objective.data_loss(model.scores(X), y)[0] + objective.reg_loss(model.params)

    assert data + reg == pytest.approx(full_loss(), rel=1e-12)
    assert correct == int((model.scores(X).argmax(axis=1) == y).sum())
    grads = {k: v.copy() for k, v in grads.items()}
    for name, w in model.params.items():
        np.testing.assert_allclose(grads[name], numeric_gradient(full_loss, w), rtol=1e-5,
                                   atol=1e-7, err_msg=name)


@pytest.mark.parametrize("kind", sorted(STEPS))
def test_sgd_step_is_gradients_then_the_sgd_update(kind: str) -> None:
    """``sgd_step(X, y, lr)`` (fused: inside the products) equals ``gradients`` followed by
    ``Optimizer("sgd").step``; a non-finite loss leaves the parameters alone."""
    model, X, y = problem((6, 5), "relu")
    objective = Objective("softmax", 1.0, None, 0.05)
    reference = copy_of(model)
    ref_step, step = TrainingStep(reference, objective, 40), training_step(model, objective,
                                                                         40, kind)
    d, r, c, grads = ref_step.gradients(X, y)
    Optimizer("sgd").step(reference.params, grads, 0.1)
    assert step.sgd_step(X, y, 0.1) == pytest.approx((d, r, c), rel=1e-13)
    for name, value in reference.params.items():
        np.testing.assert_allclose(model.params[name], value, rtol=1e-12, err_msg=name)
    before = {k: v.copy() for k, v in model.params.items()}
    X_bad = X.copy()
    X_bad[0, 0] = np.inf
    with np.errstate(all="ignore"):
        step.sgd_step(X_bad, y, 0.1)
    for name, value in before.items():
        np.testing.assert_array_equal(model.params[name], value, err_msg=name)


def test_the_step_reads_the_batch_from_its_own_rows_without_a_copy() -> None:
    """A batch gathered into ``batch_rows(n)`` is used where it is; another array is copied
    in; either way the step sees the same numbers."""
    model, X, y = problem((5,), "relu")
    step = TrainingStep(model, Objective(), 16)
    rows = step.batch_rows(10)
    assert rows is step.batch_rows(10) and np.shares_memory(rows, step.x)
    first = step.gradients(X[:10], y[:10])[:3]
    np.copyto(rows, X[:10])
    assert step.gradients(rows, y[:10])[:3] == first


@settings(max_examples=15, derandomize=True, deadline=None)
@given(n=st.integers(1, 5), fan_in=st.integers(1, 4), fan_out=st.integers(1, 4),
       seed=st.integers(0, 2**32 - 1))
def test_affine_pair_matches_finite_differences(n: int, fan_in: int, fan_out: int,
                                                seed: int) -> None:
    """For L = sum(affine_forward(a, W, b) * dz), affine_backward gives dL/da, dL/dW, dL/db."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, fan_in))
    W, b = init_affine(fan_in, fan_out, 0.7, rng, "float64")
    b += rng.standard_normal(fan_out)
    dz = rng.standard_normal((n, fan_out))

    def f() -> float:
        return float((affine_forward(a, W, b) * dz).sum())

    da, dW, db = affine_backward(dz, a, W)
    for analytic, wrt in ((da, a), (dW, W), (db, b)):
        np.testing.assert_allclose(analytic, numeric_gradient(f, wrt), rtol=1e-6, atol=1e-8)


def test_init_affine_draws_out_by_in_weights_and_zero_biases() -> None:
    W, b = init_affine(3, 5, 0.1, np.random.default_rng(0), "float32")
    assert W.shape == (5, 3) and W.dtype == np.float32 and b.tolist() == [0.0] * 5
    again, _ = init_affine(3, 5, 0.1, np.random.default_rng(0), "float64")
    np.testing.assert_array_equal(W, again.astype(np.float32))  # drawn in float64 either way


def test_the_fused_step_relays_weights_without_changing_them() -> None:
    model, _, _ = problem((6,), "relu")
    before = {k: v.copy() for k, v in model.params.items()}
    FusedStep(model, Objective(), 8)
    for name, value in before.items():
        np.testing.assert_array_equal(model.params[name], value)
    assert all(model.params[w].T.flags.c_contiguous for w in model.weight_names())


@pytest.mark.parametrize("optimizer", sorted(UPDATES))
def test_auto_is_the_fused_step_and_each_kind_can_be_chosen(optimizer: str) -> None:
    model, X, y = problem((5,), "relu")
    chosen = {kind: type(MinibatchStep(model, Optimizer(optimizer), X, y, 8, Objective(),
                                       kind).step) for kind in ("auto", "textbook", "fused")}
    assert chosen == {"auto": FusedStep, "textbook": TrainingStep, "fused": FusedStep}


def test_train_step_is_a_config_key_dumped_only_when_set() -> None:
    from nncli.config import config_from_dict
    from nncli.errors import NncliError

    data = {"data": {"train": "t.csv"}}
    assert config_from_dict(data).train.step == "auto"
    assert "step" not in config_from_dict(data).to_dict()["train"]
    chosen = config_from_dict({**data, "train": {"step": "textbook"}})
    assert chosen.train.step == "textbook" and chosen.to_dict()["train"]["step"] == "textbook"
    assert config_from_dict(chosen.to_dict()) == chosen
    with pytest.raises(NncliError, match="train.step"):
        config_from_dict({**data, "train": {"step": "fast"}})
