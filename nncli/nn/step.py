"""The training step: forward, loss and backward on one batch, in arrays allocated once.

The same math as :meth:`MLP.loss <nncli.nn.model.MLP.loss>`, written as scikit-learn's
``_backprop(X, y, activations, deltas, coef_grads, intercept_grads)``: every layer output,
gradient and work array is sized once for the largest batch (``capacity`` rows) and each
step writes into views of their first ``n`` rows (``matmul(out=)``, activations and the
loss in place). The gradient and the update are separate calls, so anything (an optimizer,
an all-reduce) can stand between them; :meth:`TrainingStep.sgd_step` is the shortcut for
plain SGD, where nothing else needs the gradient.
"""

from __future__ import annotations

import math

import numpy as np

from nncli.nn.losses import Objective, is_target
from nncli.nn.model import MLP, Grads

# (data loss, reg loss, correct predictions), all measured before any update
StepResult = tuple[float, float, int]


def count_correct(scores: np.ndarray, y: np.ndarray) -> int:
    """Examples whose highest score is their class. scores: (n, K), y: (n,) class indices;
    0 for regression targets, which have no classes."""
    if is_target(y):
        return 0
    return int(np.count_nonzero(scores.argmax(axis=1) == y))


class TrainingStep:
    """Gradients of ``objective`` for ``model`` on batches of up to ``capacity`` examples.

    Arrays, for sizes ``[D, h1, ..., K]`` (per layer l = 1..L, hidden ones below L):
    ``x``: (capacity, D) the batch; ``z[l]``: (capacity, width_l) the layer's output (its
    activation in place; the last one the scores, then dL/dscores); ``deltas[l]``: dL/da of a
    hidden layer, the forward pass's work space; ``slopes[l]``: f'(z) of a hidden layer;
    ``masks[l]``: a bool work array; ``grads``: dW (out, in), db per layer; ``scratch``:
    the L2 term of each dW.
    """

    def __init__(self, model: MLP, objective: Objective, capacity: int) -> None:
        self.model, self.objective, self.capacity = model, objective, capacity
        sizes, dtype = model.sizes, model.dtype
        hidden = sizes[1:-1]
        self.x = np.empty((capacity, sizes[0]), dtype)
        self.z = [np.empty((capacity, width), dtype) for width in sizes[1:]]
        self.deltas = [np.empty((capacity, width), dtype) for width in hidden]
        self.slopes = [np.empty((capacity, width), dtype) for width in hidden]
        self.masks = [np.empty((capacity, width), bool) for width in hidden]
        self.grads: Grads = {}
        self.scratch: Grads = {}
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            self.grads[f"W{i}"] = self._empty_weight(fan_out, fan_in, dtype)
            self.grads[f"b{i}"] = np.empty(fan_out, dtype)
            self.scratch[f"W{i}"] = self._empty_weight(fan_out, fan_in, dtype)
        self._x_rows: dict[int, np.ndarray] = {}

    @staticmethod
    def _empty_weight(fan_out: int, fan_in: int, dtype: np.dtype) -> np.ndarray:
        """An uninitialized (fan_out, fan_in) array laid out like the model's W."""
        return np.empty((fan_out, fan_in), dtype)

    def batch_rows(self, n: int) -> np.ndarray:
        """The view ``x[:n]`` (the same object every time): gather a batch into it and
        pass it as ``X`` to save a copy."""
        view = self._x_rows.get(n)
        if view is None:
            view = self._x_rows[n] = self.x[:n]
        return view

    def gradients(self, X: np.ndarray, y: np.ndarray) -> tuple[float, float, int, Grads]:
        """X: (n, D), y: (n,) -> (data loss, reg loss, correct predictions, grads), before
        any update. The grads are this step's arrays: the next call overwrites them."""
        n = X.shape[0]
        scores = self._scores(X)
        correct = count_correct(scores, y)
        loss, dscores = self.objective.data_loss(scores, y, inplace=True)
        return loss, self.objective.reg_loss(self.model.params), correct, self._backward(
            dscores, n)

    def sgd_step(self, X: np.ndarray, y: np.ndarray, lr: float) -> StepResult:
        """Plain SGD, ``p -= lr dL/dp`` for every parameter in place, unless the loss is not
        finite. X: (n, D), y: (n,) -> (data loss, reg loss, correct), before the update."""
        loss, reg, correct, grads = self.gradients(X, y)
        if math.isfinite(loss + reg):
            params = self.model.params
            for name, g in grads.items():
                params[name] -= np.multiply(g, lr, out=g)
        return loss, reg, correct

    def _load(self, X: np.ndarray) -> np.ndarray:
        """The batch as the view ``x[:n]`` (copied there unless it is that view already)."""
        batch = self.batch_rows(X.shape[0])
        if X is not batch:
            np.copyto(batch, X)
        return batch

    def _scores(self, X: np.ndarray) -> np.ndarray:
        """The forward pass into ``z``. X: (n, D) -> scores: the view ``z[L][:n]``."""
        a = self._load(X)
        n, params, last = X.shape[0], self.model.params, self.model.n_layers
        for i in range(1, last + 1):
            z = np.matmul(a, params[f"W{i}"].T, out=self.z[i - 1][:n])
            z += params[f"b{i}"]
            if i < last:
                # the layer's gradient array is free until backward: the activation's work space
                a = self.model.activation.fn(z, out=z, work=self.deltas[i - 1][:n],
                                             mask=self.masks[i - 1][:n])
        return self.z[-1][:n]

    def _backward(self, dscores: np.ndarray, n: int) -> Grads:
        """Backprop dL/dscores (n, K) through the last forward pass into ``grads``."""
        params, grads, activation = self.model.params, self.grads, self.model.activation
        dz = dscores
        for i in range(self.model.n_layers, 0, -1):
            a_prev = self.x[:n] if i == 1 else self.z[i - 2][:n]
            W = params[f"W{i}"]
            dW = np.matmul(dz.T, a_prev, out=grads[f"W{i}"])
            np.sum(dz, axis=0, out=grads[f"b{i}"])
            if self.objective.reg_lambda:
                dW += self.objective.reg_grad(W, out=self.scratch[f"W{i}"])
            if i > 1:
                da = np.matmul(dz, W, out=self.deltas[i - 2][:n])
                # f'(z) from the layer's output a_prev (sklearn's DERIVATIVES), in place
                dz = np.multiply(da, activation.grad(a_prev, out=self.slopes[i - 2][:n]),
                                 out=da)
        return grads
