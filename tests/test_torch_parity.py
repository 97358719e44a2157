"""nncli against PyTorch in float64: the same losses, gradients and optimizer trajectories.

Skipped when torch is not installed (it is a benchmark extra, not a test dependency):
`pip install -e ".[bench]"` brings torch==2.13.0 (CPU).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from nncli.nn.losses import Objective
from nncli.nn.model import MLP
from nncli.nn.optim import Optimizer
from nncli.train import MinibatchStep

torch = pytest.importorskip("torch")
F = torch.nn.functional

TORCH_ACT = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
             "leaky_relu": lambda z: F.leaky_relu(z, 0.01), "linear": lambda z: z}


def torch_loss(kind: str, scores, y, weights, margin: float):
    if kind == "softmax":
        return F.cross_entropy(scores, y, weight=weights)
    if kind == "svm":
        # torch averages the hinge over the K classes; nncli sums over j != y.
        per = F.multi_margin_loss(scores, y, margin=margin, reduction="none") * scores.shape[1]
    else:
        per = ((scores - F.one_hot(y, scores.shape[1]).to(scores.dtype)) ** 2).sum(dim=1)
    if weights is None:
        return per.mean()
    w = weights[y]
    return (w * per).sum() / w.sum()


def make_torch_optimizer(name: str, weights, biases, lr: float, lam: float, mu: float):
    groups = [{"params": weights, "weight_decay": 2 * lam}, {"params": biases, "weight_decay": 0}]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr)
    if name in ("momentum", "nesterov"):
        return torch.optim.SGD(groups, lr=lr, momentum=mu, nesterov=name == "nesterov")
    return torch.optim.Adam(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)


def torch_scores(a: Any, params_t: dict[str, Any], activation: Any) -> Any:
    """The reference forward pass in torch: a 3-layer MLP's scores of the batch a (n, D)."""
    for i in range(1, 4):
        a = a @ params_t[f"W{i}"].T + params_t[f"b{i}"]
        if i < 3:
            a = activation(a)
    return a


def torch_step_agrees(opt_t: Any, loss_t: Any, data_loss: float) -> None:
    """One torch optimizer step on ``loss_t``, the batch whose loss nncli measured as
    ``data_loss``: the two losses must agree to float64 round-off."""
    opt_t.zero_grad()
    loss_t.backward()
    opt_t.step()
    assert data_loss == pytest.approx(loss_t.item(), rel=1e-13, abs=1e-15)


def assert_same_params(params: dict[str, np.ndarray], params_t: dict[str, Any]) -> None:
    """nncli's parameters equal torch's to 1e-12 relative."""
    for name, value in params.items():
        np.testing.assert_allclose(value, params_t[name].detach().numpy(), rtol=1e-12,
                                   atol=1e-14, err_msg=name)


@pytest.mark.parametrize("path", ["checked", "training step"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("activation,loss", [("relu", "softmax"), ("tanh", "svm"),
                                             ("sigmoid", "mse"), ("leaky_relu", "softmax")])
def test_training_matches_pytorch_in_float64(optimizer: str, activation: str, loss: str,
                                             path: str) -> None:
    """"checked": MLP.loss (what gradcheck proves) + Optimizer.step; "training step": the
    buffered MinibatchStep of `nncli train` (plain SGD fused into the products)."""
    rng = np.random.default_rng(7)
    n, d, k, lam, lr, mu = 32, 6, 4, 0.01, 0.05, 0.9
    X = rng.standard_normal((n, d))
    y = rng.integers(0, k, n)
    class_weights = np.array([1.0, 0.5, 2.0, 1.5]) if loss != "svm" else None
    objective = Objective(loss, 1.0, class_weights, lam)
    model = MLP.create(d, (5, 3), k, activation, {"normal": 0.6}, rng, "float64")
    params_t = {name: torch.tensor(v.copy(), requires_grad=True)
                for name, v in model.params.items()}
    names_w = [p for p in params_t if p.startswith("W")]
    names_b = [p for p in params_t if p.startswith("b")]
    opt_t = make_torch_optimizer(optimizer, [params_t[p] for p in names_w],
                                 [params_t[p] for p in names_b], lr, lam, mu)
    opt = Optimizer(optimizer, mu)
    train_step = MinibatchStep(model, opt, X, y, 8, objective)
    weights_t = torch.tensor(class_weights) if class_weights is not None else None
    Xt, yt = torch.tensor(X), torch.tensor(y)
    for step in range(5):
        rows = slice(8 * (step % 4), 8 * (step % 4) + 8)
        if path == "checked":
            data_loss, _, grads, _ = model.loss(X[rows], y[rows], objective)
            opt.step(model.params, grads, lr)
        else:
            data_loss, _, _ = train_step(np.arange(n)[rows], lr)

        scores = torch_scores(Xt[rows], params_t, TORCH_ACT[activation])
        torch_step_agrees(opt_t, torch_loss(loss, scores, yt[rows], weights_t, 1.0), data_loss)
    assert_same_params(model.params, params_t)
