"""Update rules against hand-unrolled SPEC formulas, state save/restore, schedules."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from nncli.config import OPTIMIZER_NAMES, config_from_dict
from nncli.nn.optim import Optimizer, learning_rate

A = np.array([2.0, 0.5, 10.0, 1.0])  # f(w) = 0.5 * sum(a * w^2), so g = a * w
W0 = np.array([1.0, -2.0, 0.3, 0.0])
LR, MU = 0.1, 0.9


def grad(w: np.ndarray) -> np.ndarray:
    return A * w


def run(name: str, steps: int, w0: np.ndarray = W0) -> list[np.ndarray]:
    """The iterates w_1..w_steps of nncli's optimizer on the quadratic."""
    opt = Optimizer(name, momentum=MU)
    params = {"w": w0.copy()}
    out = []
    for _ in range(steps):
        opt.step(params, {"w": grad(params["w"])}, LR)
        out.append(params["w"].copy())
    return out


def reference(name: str, steps: int, w0: np.ndarray = W0) -> list[np.ndarray]:
    """The same iterates from the SPEC formulas, one scalar at a time in plain Python."""
    result = [np.zeros_like(w0) for _ in range(steps)]
    for j, w in enumerate(w0.tolist()):
        v = m = u = 0.0
        for t in range(1, steps + 1):
            g = A[j] * w
            if name == "sgd":
                w = w - LR * g
            elif name == "momentum":
                v = MU * v + g
                w = w - LR * v
            elif name == "nesterov":
                v = MU * v + g
                w = w - LR * (g + MU * v)
            else:
                m = 0.9 * m + 0.1 * g
                u = 0.999 * u + 0.001 * g * g
                m_hat, u_hat = m / (1 - 0.9 ** t), u / (1 - 0.999 ** t)
                w = w - LR * m_hat / (math.sqrt(u_hat) + 1e-8)
            result[t - 1][j] = w
    return result


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_first_three_steps_match_the_spec_formulas(name):
    for got, want in zip(run(name, 3), reference(name, 3)):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)


# Worked by hand for w0 = 1, a = 2 (g = 2w), lr 0.1, mu 0.9:
#   sgd:      w = 0.8^t
#   momentum: v 2, 3.4, 3.98;            w 0.8, 0.46, 0.062
#   nesterov: v 2, 3.04, 3.1808;         w 0.62, 0.2224, -0.108352
#   adam:     step 1 moves by lr * g / (|g| + eps) = 0.1 * 2 / (2 + 1e-8)
HAND = {
    "sgd": [0.8, 0.64, 0.512],
    "momentum": [0.8, 0.46, 0.062],
    "nesterov": [0.62, 0.2224, -0.108352],
}


@pytest.mark.parametrize("name", list(HAND))
def test_scalar_steps_worked_by_hand(name):
    got = [float(w[0]) for w in run(name, 3)]
    assert got == pytest.approx(HAND[name], rel=1e-12)


def test_adam_first_step_is_lr_times_sign_and_zero_gradient_stays_put():
    w1 = run("adam", 1)[0]
    assert w1[0] == pytest.approx(1.0 - 0.1 * 2.0 / (2.0 + 1e-8), rel=1e-15)
    np.testing.assert_allclose(np.abs(w1[:3] - W0[:3]), LR, rtol=1e-7)  # bias correction
    assert w1[3] == 0.0


def test_state_starts_at_zero_so_first_momentum_steps_equal_sgd():
    np.testing.assert_array_equal(run("momentum", 1)[0], run("sgd", 1)[0])
    # nesterov's first step is g + mu g
    np.testing.assert_allclose(run("nesterov", 1)[0], W0 - LR * (1 + MU) * grad(W0))


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_state_saved_mid_run_restores_bit_identically(name):
    rng = np.random.default_rng(0)
    params = {"W1": rng.normal(size=(3, 2)), "b1": rng.normal(size=3)}
    grads_seq = [{k: rng.normal(size=v.shape) for k, v in params.items()} for _ in range(6)]
    opt = Optimizer(name, momentum=0.8)
    for g in grads_seq[:3]:
        opt.step(params, g, 0.05)
    saved = opt.state_arrays()
    snapshot = {k: v.copy() for k, v in saved.items()}
    at_save = {k: v.copy() for k, v in params.items()}
    for g in grads_seq[3:]:
        opt.step(params, g, 0.05)
    # The saved arrays are a snapshot: later steps did not change them.
    assert saved.keys() == snapshot.keys()
    for key in saved:
        np.testing.assert_array_equal(saved[key], snapshot[key])
    # Through a checkpoint-like .npz round trip, into a fresh optimizer.
    buffer = io.BytesIO()
    np.savez(buffer, **saved, W1=at_save["W1"])
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as archive:
        loaded = {k: archive[k] for k in archive.files}
    fresh = Optimizer(name, momentum=0.8)
    fresh.load_state_arrays(loaded)  # the non-"opt_" W1 entry is ignored
    resumed = {k: v.copy() for k, v in at_save.items()}
    for g in grads_seq[3:]:
        fresh.step(resumed, g, 0.05)
    for key in params:
        np.testing.assert_array_equal(resumed[key], params[key])


def test_state_array_names():
    params = {"W1": np.ones((2, 2)), "b1": np.ones(2)}
    grads = {"W1": np.ones((2, 2)), "b1": np.ones(2)}
    expected = {"sgd": set(), "momentum": {"opt_v_W1", "opt_v_b1"},
                "nesterov": {"opt_v_W1", "opt_v_b1"},
                "adam": {f"opt_{s}_{p}" for s in "mut" for p in ("W1", "b1")}}
    for name, keys in expected.items():
        opt = Optimizer(name)
        opt.step({k: v.copy() for k, v in params.items()}, grads, 0.1)
        assert set(opt.state_arrays()) == keys


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_float32_parameters_stay_float32(name):
    params = {"W1": np.ones((2, 3), dtype=np.float32)}
    opt = Optimizer(name)
    for _ in range(2):
        opt.step(params, {"W1": np.full((2, 3), 0.5, dtype=np.float32)}, 0.1)
    assert params["W1"].dtype == np.float32
    assert all(a.dtype in (np.float32, np.int64) for a in opt.state_arrays().values())


def test_optimizers_descend_the_quadratic():
    f0 = 0.5 * float((A * W0 ** 2).sum())
    for name in OPTIMIZER_NAMES:
        opt = Optimizer(name, momentum=0.5)
        params = {"w": W0.copy()}
        for _ in range(200):
            opt.step(params, {"w": grad(params["w"])}, 0.05)
        assert 0.5 * float((A * params["w"] ** 2).sum()) < 1e-3 * f0, name


def test_against_torch_optim():
    torch = pytest.importorskip("torch")
    makers = {
        "sgd": lambda p: torch.optim.SGD(p, lr=LR),
        "momentum": lambda p: torch.optim.SGD(p, lr=LR, momentum=MU),
        "nesterov": lambda p: torch.optim.SGD(p, lr=LR, momentum=MU, nesterov=True),
        "adam": lambda p: torch.optim.Adam(p, lr=LR, betas=(0.9, 0.999), eps=1e-8),
    }
    a = torch.tensor(A, dtype=torch.float64)
    for name, make in makers.items():
        w = torch.tensor(W0, dtype=torch.float64, requires_grad=True)
        opt = make([w])
        ours = run(name, 5)
        for t in range(5):
            opt.zero_grad()
            (0.5 * (a * w * w).sum()).backward()
            opt.step()
            np.testing.assert_allclose(w.detach().numpy(), ours[t], rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- schedules


def test_constant_schedule():
    assert [learning_rate(0.1, "constant", e, 10) for e in (1, 5, 10)] == [0.1, 0.1, 0.1]


def test_step_schedule_from_a_config():
    cfg = config_from_dict({"data": {"train": "t.csv"},
                            "train": {"lr": 0.2, "lr_schedule": {"step": {"every": 3,
                                                                          "gamma": 0.5}}}})
    rates = [learning_rate(cfg.train.lr, cfg.train.lr_schedule, e, 10) for e in range(1, 11)]
    assert rates == pytest.approx([0.2, 0.2, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025])


def test_step_schedule_defaults_every_10_gamma_half():
    cfg = config_from_dict({"data": {"train": "t.csv"}, "train": {"lr_schedule": {"step": None}}})
    assert cfg.train.lr_schedule == {"step": {"every": 10, "gamma": 0.5}}
    assert learning_rate(1.0, cfg.train.lr_schedule, 10, 30) == 1.0
    assert learning_rate(1.0, cfg.train.lr_schedule, 11, 30) == 0.5


def test_cosine_schedule_goes_from_base_towards_zero():
    epochs = 10
    rates = [learning_rate(0.1, "cosine", e, epochs) for e in range(1, epochs + 1)]
    assert rates[0] == 0.1
    assert rates[5] == pytest.approx(0.05)  # epoch 6: halfway, cos(pi/2) = 0
    assert rates[-1] == pytest.approx(0.1 * (1 + math.cos(0.9 * math.pi)) / 2)
    assert all(a > b > 0 for a, b in zip(rates, rates[1:]))
