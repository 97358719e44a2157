"""The allocation-free training step: same numbers as the checked path, no per-batch
allocations of batch-sized arrays, and float32 kept throughout."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from nncli.build import STEPS, training_step
from nncli.fast import blas
from nncli.nn.activations import ACTIVATIONS
from nncli.nn.losses import LOSSES, Objective
from nncli.nn.model import MLP
from nncli.nn.optim import UPDATES, Optimizer
from nncli.train import MinibatchStep


def _data(n: int, d: int, k: int, dtype: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(dtype), rng.integers(0, k, n)


@pytest.mark.parametrize("kind", sorted(STEPS))
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_buffered_step_matches_the_gradient_checked_path(activation: str, loss: str,
                                                         kind: str) -> None:
    """gradcheck proves MLP.loss; the training loop runs a training step's gradients."""
    X, y = _data(24, 7, 4, "float64")
    model = MLP.create(7, (6, 5), 4, activation, {"normal": 0.7},
                       np.random.default_rng(1), "float64")
    weights = np.array([1.0, 2.0, 0.5, 1.5])
    objective = Objective(loss, 1.0, weights, 0.3)
    ref_data, ref_reg, ref_grads, ref_scores = model.loss(X, y, objective)
    ref_grads = {k: v.copy() for k, v in ref_grads.items()}
    correct_ref = int(np.count_nonzero(ref_scores.argmax(axis=1) == y))
    d, r, correct, grads = training_step(model, objective, 32, kind).gradients(X, y)
    assert (d, r, correct) == pytest.approx((ref_data, ref_reg, correct_ref), rel=1e-13)
    for name, g in ref_grads.items():
        np.testing.assert_allclose(grads[name], g, rtol=1e-12, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("backend", ["blas", "numpy"])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_fused_sgd_step_is_the_textbook_update(activation: str, loss: str, backend: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain SGD runs inside the products (W <- (1 - 2 lr lambda) W - lr A^T dZ): three
    steps of it equal W -= lr * grad with the gradients of the checked path."""
    if backend == "numpy":
        monkeypatch.setattr(blas, "_GEMM", {})
    X, y = _data(30, 7, 4, "float64")
    make = lambda: MLP.create(7, (6, 5), 4, activation, {"normal": 0.7},  # noqa: E731
                              np.random.default_rng(1), "float64")
    reference, fused = make(), make()
    weights = np.array([1.0, 2.0, 0.5, 1.5])
    objective = Objective(loss, 1.0, weights, 0.05)
    step = MinibatchStep(fused, Optimizer("sgd"), X, y, 12, objective, "fused")
    for idx in (np.arange(0, 12), np.arange(12, 24), np.arange(24, 30)):
        ref_data, ref_reg, grads, scores = reference.loss(X[idx], y[idx], objective)
        correct_ref = int(np.count_nonzero(scores.argmax(axis=1) == y[idx]))
        for name, g in grads.items():
            reference.params[name] -= 0.3 * g
        assert step(idx, 0.3) == pytest.approx((ref_data, ref_reg, correct_ref), rel=1e-12)
    for name, value in reference.params.items():
        np.testing.assert_allclose(fused.params[name], value, rtol=1e-11, atol=1e-13,
                                   err_msg=name)


@pytest.mark.parametrize("kind", sorted(STEPS))
@pytest.mark.parametrize("optimizer", sorted(UPDATES))
@pytest.mark.parametrize("activation,loss", [("relu", "softmax"), ("relu", "svm"),
                                             ("tanh", "mse"), ("linear", "softmax"),
                                             ("sigmoid", "softmax"), ("leaky_relu", "svm")])
def test_training_step_allocates_no_batch_sized_arrays(optimizer: str, activation: str,
                                                       loss: str, kind: str) -> None:
    # NumPy ufuncs may take an iterator buffer of a fixed 8192 elements (32 KB in float32)
    # for broadcasting or casting; what must not happen is an array that grows with the
    # batch. At batch 512 the smallest batch-sized array is 512 x 64 x 4 = 128 KB.
    n, d, k, batch = 2560, 200, 10, 512
    X, y = _data(n, d, k, "float32")
    model = MLP.create(d, (128, 64), k, activation, "auto", np.random.default_rng(0), "float32")
    step = MinibatchStep(model, Optimizer(optimizer), X, y, batch,
                         Objective(loss, reg_lambda=1e-3), kind)
    order = np.random.default_rng(0).permutation(n)
    batches = [order[i:i + batch] for i in range(0, n - batch + 1, batch)]
    for idx in batches[:2]:  # the first steps create optimizer state
        step(idx, 0.01)
    # Every batch-sized array (>= 512 x 64 x 4 = 128 KB) and W1 (128 x 200 x 4 = 100 KB)
    # exceed this; two NumPy iterator buffers do not.
    limit = 64 * 1024
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for idx in batches[2:]:
            step(idx, 0.01)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - base < limit, f"a step allocated {peak - base} bytes at once"
    assert current - base < 4096  # nothing accumulates from step to step


@pytest.mark.parametrize("kind", sorted(STEPS))
@pytest.mark.parametrize("optimizer", sorted(UPDATES))
def test_float32_stays_float32(optimizer: str, kind: str) -> None:
    X, y = _data(200, 30, 3, "float32")
    model = MLP.create(30, (16,), 3, "relu", "auto", np.random.default_rng(0), "float32")
    opt = Optimizer(optimizer)
    step = MinibatchStep(model, opt, X, y, 50,
                         Objective(class_weights=np.array([1.0, 2.0, 3.0]), reg_lambda=1e-2),
                         kind)
    for start in range(0, 200, 50):
        step(np.arange(start, start + 50), 0.01)
    assert {p.dtype for p in model.params.values()} == {np.dtype(np.float32)}
    arrays = step.step
    for arr in [*arrays.z, *arrays.deltas, *arrays.grads.values(), *arrays.slopes]:
        assert arr.dtype == np.float32
    for name, arr in opt.state_arrays().items():
        if not name.startswith("opt_t_"):
            assert arr.dtype == np.float32, name
    d, r, _, grads = arrays.gradients(X[:50], y[:50])
    assert all(g.dtype == np.float32 for g in grads.values())
    scores = model.scores(X[:5])
    assert scores.dtype == np.float32
