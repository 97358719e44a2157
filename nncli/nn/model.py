"""The score function ``s = f(x; W, b)``: a linear classifier or an MLP, forward and backward.

Parameters live in a plain dict ``{"W1": (h1, D), "b1": (h1,), ..., "WL": (K, h), "bL": (K,)}``
(``W`` shaped out x in as in ``z = W a + b``), which is exactly what a checkpoint stores.
A batch is a matrix with one example per row, so a layer computes ``Z = A @ W.T + b``.
The training loop runs the same math on preallocated arrays (:mod:`nncli.nn.step`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nncli.nn.activations import Activation, get_activation
from nncli.nn.layers import affine_backward, affine_forward, init_affine, init_std
from nncli.nn.losses import DEFAULT_OBJECTIVE, Objective

Grads = dict[str, np.ndarray]


class MLP:
    """A fully connected network; ``hidden=()`` makes it the linear classifier ``Wx + b``.

    Hidden layers apply ``activation``; the last layer is linear and gives the scores.
    """

    def __init__(self, params: dict[str, np.ndarray], activation: str = "relu") -> None:
        self.params = params
        self.activation_name = activation
        self.activation: Activation = get_activation(activation)
        self.n_layers = len(params) // 2

    @classmethod
    def create(cls, input_dim: int, hidden: Sequence[int], n_classes: int,
               activation: str = "relu", init: str | dict[str, float] = "auto",
               rng: np.random.Generator | None = None, dtype: str | np.dtype = "float32") -> MLP:
        """A freshly initialized network: normal weights (see :func:`init_std`), zero biases."""
        rng = rng if rng is not None else np.random.default_rng(0)
        sizes = [int(input_dim), *map(int, hidden), int(n_classes)]
        params: dict[str, np.ndarray] = {}
        n_layers = len(sizes) - 1
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            # the score layer's output is linear; a linear classifier has only that layer
            out_activation = (activation if i < n_layers else
                              "linear" if n_layers > 1 else None)
            std = init_std(init, out_activation, fan_in, fan_out)
            params[f"W{i}"], params[f"b{i}"] = init_affine(fan_in, fan_out, std, rng, dtype)
        return cls(params, activation)

    @property
    def sizes(self) -> list[int]:
        """Layer widths ``[D, h1, ..., K]``."""
        first = self.params["W1"].shape[1]
        return [first] + [self.params[f"W{i}"].shape[0] for i in range(1, self.n_layers + 1)]

    @property
    def dtype(self) -> np.dtype:
        """The parameters' (and so the computation's) dtype."""
        return self.params["W1"].dtype

    def weight_names(self) -> list[str]:
        """``["W1", ..., "WL"]``: the parameters the L2 term covers."""
        return [f"W{i}" for i in range(1, self.n_layers + 1)]

    def forward(self, X: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """X: (N, D) -> (scores: (N, K), cache), the cache holding each layer's input
        ``[X, a1, ..., a_{L-1}]`` for :meth:`backward`."""
        a = X
        cache = []
        for i in range(1, self.n_layers + 1):
            cache.append(a)
            z = affine_forward(a, self.params[f"W{i}"], self.params[f"b{i}"])
            a = self.activation.fn(z, out=z) if i < self.n_layers else z
        return a, cache

    def scores(self, X: np.ndarray) -> np.ndarray:
        """Class scores. X: (N, D) -> (N, K)."""
        return self.forward(X)[0]

    def backward(self, dscores: np.ndarray, cache: list[np.ndarray]) -> Grads:
        """Backprop ``dL/dscores`` (N, K) through the forward pass that left ``cache``.

        Returns the data loss's gradients ``{"W1": (h1, D), "b1": (h1,), ...}``.
        """
        grads: Grads = {}
        dz = dscores
        for i in range(self.n_layers, 0, -1):
            a_prev = cache[i - 1]
            da, grads[f"W{i}"], grads[f"b{i}"] = affine_backward(
                dz, a_prev, self.params[f"W{i}"], need_da=i > 1)
            if i > 1:
                dz = self.activation.backward(da, a_prev)
        return grads

    def loss(self, X: np.ndarray, y: np.ndarray, objective: Objective = DEFAULT_OBJECTIVE,
             ) -> tuple[float, float, Grads, np.ndarray]:
        """Forward and backward on one batch, allocating every gradient (what gradcheck checks).

        X: (N, D), y: (N,) -> (data_loss, reg_loss, grads of their sum, scores (N, K)).
        """
        scores, cache = self.forward(X)
        value, dscores = objective.data_loss(scores, y)
        grads = self.backward(dscores, cache)
        if objective.reg_lambda:
            for name in self.weight_names():
                grads[name] += objective.reg_grad(self.params[name])
        return value, objective.reg_loss(self.params), grads, scores

    def describe(self) -> list[dict[str, object]]:
        """One dict per layer: index, in, out, activation, parameter count."""
        layers = []
        for i in range(1, self.n_layers + 1):
            out_dim, in_dim = self.params[f"W{i}"].shape
            layers.append({
                "name": f"fc{i}", "in": int(in_dim), "out": int(out_dim),
                "activation": self.activation_name if i < self.n_layers else "linear",
                "params": int(out_dim * in_dim + out_dim),
            })
        return layers
