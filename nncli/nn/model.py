"""The score function ``s = f(x; W, b)``: a linear classifier or an MLP, forward and backward.

Parameters live in a plain dict ``{"W1": (h1, D), "b1": (h1,), ..., "WL": (K, h), "bL": (K,)}``
(``W`` shaped out x in as in ``z = W a + b``), which is exactly what a checkpoint stores.
A batch is a matrix with one example per row, so a layer computes ``Z = A @ W.T + b``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import numpy as np

from nncli.fast.blas import Product  # the fused step's BLAS binding (moves to nncli.fast)
from nncli.nn.activations import Activation, get_activation
from nncli.nn.losses import data_loss


def affine_forward(a: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``Z = A W^T + b``. a: (N, in), W: (out, in), b: (out,) -> (N, out)."""
    z = a @ W.T
    z += b
    return z


def affine_backward(dz: np.ndarray, a: np.ndarray, W: np.ndarray,
                    need_da: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of an affine layer. dz: (N, out), a: (N, in), W: (out, in) ->
    (da: (N, in) or None, dW: (out, in), db: (out,))."""
    dW = dz.T @ a
    db = dz.sum(axis=0)
    da = dz @ W if need_da else None
    return da, dW, db


LINEAR_STD = 0.01  # a linear classifier's weight std under init: auto


def init_std(init: str | dict[str, float], activation: str | None, fan_in: int,
             fan_out: int) -> float:
    """Standard deviation of the normal draw for one weight matrix.

    ``he``: sqrt(2 / fan_in); ``xavier`` (Glorot normal): sqrt(2 / (fan_in + fan_out));
    ``{normal: s}``: s. ``auto``: He for a layer whose output goes through relu/leaky_relu,
    Xavier for the other layers of an MLP (its score layer included), and ``LINEAR_STD``
    (0.01, the lecture's ``W = 0.01 * randn``) for a linear classifier, whose scores then
    start near 0 and its loss at chance, ``ln K``, whatever the seed. (A Xavier-sized
    linear classifier on well-separated data can start confidently wrong, at a loss of 3-4
    for 3 classes, which adam at lr 0.001 takes hundreds of epochs to undo; in an MLP the
    small start measured slightly worse.) ``activation`` is the one applied to this
    layer's output: ``linear`` for an MLP's score layer, ``None`` for a linear classifier.
    """
    if isinstance(init, dict):
        return float(init["normal"])
    if init == "auto":
        if activation is None:
            return LINEAR_STD
        init = "he" if activation in ("relu", "leaky_relu") else "xavier"
    if init == "he":
        return float(np.sqrt(2.0 / fan_in))
    return float(np.sqrt(2.0 / (fan_in + fan_out)))


def weight_layout(W: np.ndarray) -> np.ndarray:
    """W: (out, in) as the transposed view of a fresh C-contiguous (in, out) array."""
    return np.ascontiguousarray(W.T).T


class Buffers:
    """Work arrays for training steps of up to ``capacity`` examples, allocated once.

    x: (capacity, D) the batch; z[l]: (capacity, width_l) layer outputs; da[l], gate[l],
    mask[l], act[l]: (capacity, hidden width) gradients, relu's z > 0 as 0/1 in the compute
    dtype (written by forward), a bool work array and activation derivatives; dW, db,
    scratch: one per layer, shaped like the parameters.
    """

    def __init__(self, sizes: Sequence[int], capacity: int, dtype: np.dtype) -> None:
        self.capacity = capacity
        self.ones = np.ones(capacity, dtype)
        self.x = np.empty((capacity, sizes[0]), dtype)
        self.z = [np.empty((capacity, width), dtype) for width in sizes[1:]]
        self.da = [np.empty((capacity, width), dtype) for width in sizes[1:-1]]
        # Multiplying by a 0/1 array of the compute dtype runs ~3x faster than by a bool
        # array (which NumPy casts through a buffer), so relu keeps its mask that way.
        self.gate = [np.empty((capacity, width), dtype) for width in sizes[1:-1]]
        self.mask = [np.empty((capacity, width), bool) for width in sizes[1:-1]]
        self.act = [np.empty((capacity, width), dtype) for width in sizes[1:-1]]
        pairs = list(zip(sizes[:-1], sizes[1:]))
        # Shaped (out, in) like W, laid out (in, out) like W (see MLP.__init__).
        self.dW = [np.empty((fan_in, fan_out), dtype).T for fan_in, fan_out in pairs]
        self.scratch = [np.empty((fan_in, fan_out), dtype).T for fan_in, fan_out in pairs]
        self.db = [np.empty(fan_out, dtype) for _, fan_out in pairs]
        self.products: list[LayerProducts] = []
        self.bound_to: list[np.ndarray] = []  # the weights the products write and read
        self._x_rows: dict[int, np.ndarray] = {}

    def x_rows(self, n: int) -> np.ndarray:
        """The view ``x[:n]`` (the same object every time: the step recognizes it)."""
        view = self._x_rows.get(n)
        if view is None:
            view = self._x_rows[n] = self.x[:n]
        return view


class LayerProducts:
    """The matrix products of layer ``i`` (1-based) bound to a model's W and to buffers.

    With A the layer's input (buffers.x or the previous layer's output) and dZ the gradient
    at its output: ``forward``: Z = A W^T (+ beta Z); ``weight_grad``: dW^T = A^T dZ;
    ``weight_update``: W^T = alpha A^T dZ + beta W^T (plain SGD without writing dW);
    ``input_grad``: dA = dZ W (layers above the first).
    """

    def __init__(self, i: int, W: np.ndarray, buffers: Buffers) -> None:
        n_layers = len(buffers.z)
        a_in = buffers.x if i == 1 else buffers.z[i - 2]
        z = buffers.z[i - 1]
        dz = z if i == n_layers else buffers.da[i - 1]
        self.forward = Product(a_in, W.T, z, "rows").run
        self.weight_grad = Product(a_in.T, dz, buffers.dW[i - 1].T, "inner").run
        self.weight_update = Product(a_in.T, dz, W.T, "inner").run
        self.input_grad = Product(dz, W, buffers.da[i - 2], "rows").run if i > 1 else None


class MLP:
    """A fully connected network; ``hidden=()`` makes it the linear classifier ``Wx + b``.

    Hidden layers apply ``activation``; the last layer is linear and gives the scores.
    """

    def __init__(self, params: dict[str, np.ndarray], activation: str = "relu") -> None:
        # Every W (out x in) is kept as the transpose of a C-contiguous (in x out) array:
        # then A @ W.T is a plain GEMM and dW^T = A^T dZ writes an (in x out) block, which
        # OpenBLAS runs 10-30% faster than the out x in layout for MNIST-sized layers.
        # Shapes, indexing and checkpoints still see W as out x in.
        for name, value in params.items():
            if name.startswith("W") and value.ndim == 2 and not value.T.flags.c_contiguous:
                params[name] = weight_layout(value)
        self.params = params
        self.activation_name = activation
        self.activation: Activation = get_activation(activation)
        self.n_layers = len(params) // 2
        self._weight_names = self.weight_names()
        self._cache: list[np.ndarray] = []

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
            # Draw in float64 so float32 and float64 runs start from the same weights.
            params[f"W{i}"] = (rng.standard_normal((fan_out, fan_in)) * std).astype(dtype)
            params[f"b{i}"] = np.zeros(fan_out, dtype=dtype)
        return cls(params, activation)

    @property
    def sizes(self) -> list[int]:
        """Layer widths ``[D, h1, ..., K]``."""
        first = self.params["W1"].shape[1]
        return [first] + [self.params[f"W{i}"].shape[0] for i in range(1, self.n_layers + 1)]

    @property
    def dtype(self) -> np.dtype:
        return self.params["W1"].dtype

    def weight_names(self) -> list[str]:
        return [f"W{i}" for i in range(1, self.n_layers + 1)]

    def make_buffers(self, capacity: int) -> Buffers:
        """Work arrays for batches of up to ``capacity`` rows (see :class:`Buffers`)."""
        return Buffers(self.sizes, capacity, self.dtype)

    def _products(self, buffers: Buffers) -> list[LayerProducts]:
        """The layers' products on ``buffers``, bound again if any W was replaced."""
        params = self.params
        weights = [params[name] for name in self._weight_names]
        bound_to = buffers.bound_to
        if len(weights) != len(bound_to) or not all(map(operator.is_, weights, bound_to)):
            buffers.products = [LayerProducts(i, W, buffers)
                                for i, W in enumerate(weights, start=1)]
            buffers.bound_to = weights
        return buffers.products

    def forward(self, X: np.ndarray, keep_cache: bool = True,
                buffers: Buffers | None = None) -> np.ndarray:
        """Class scores. X: (N, D) -> scores: (N, K). Keeps layer inputs for ``backward``.

        With ``buffers`` the layer outputs are written into them (no allocation), so the
        returned scores are overwritten by the next call.
        """
        n = X.shape[0]
        if buffers is not None:
            products = self._products(buffers)
            batch = buffers.x_rows(n)
            if X is not batch:  # the products read the batch from buffers.x
                np.copyto(batch, X)
                X = batch
        a = X
        cache = [a]
        for i in range(1, self.n_layers + 1):
            W, b = self.params[f"W{i}"], self.params[f"b{i}"]
            if buffers is None:
                z = affine_forward(a, W, b)
            else:
                # The bias goes in first and the GEMM adds A W^T to it (one pass fewer).
                z = buffers.z[i - 1][:n]
                np.copyto(z, b)
                products[i - 1].forward(n, 1.0, 1.0)
            if i < self.n_layers:
                if buffers is not None and self.activation_name == "relu":
                    # z * (z > 0): the mask is kept for backward, and this beats np.maximum.
                    gate = np.greater(z, 0, out=buffers.gate[i - 1][:n])
                    a = np.multiply(z, gate, out=z)
                elif buffers is not None:
                    # The gradient buffers are free during the forward pass: work space.
                    a = self.activation.fn(z, out=z, work=buffers.da[i - 1][:n],
                                           mask=buffers.mask[i - 1][:n])
                else:
                    a = self.activation.fn(z, out=z)
                cache.append(a)
            else:
                a = z
        self._cache = cache if keep_cache else []
        return a

    def backward(self, dscores: np.ndarray, reg_lambda: float = 0.0,
                 buffers: Buffers | None = None, grad_scale: float = 1.0,
                 sgd_update: bool = False) -> dict[str, np.ndarray]:
        """Backprop from ``dL/dscores`` (N, K) through the cached forward pass.

        Returns ``{"W1": (h1, D), "b1": (h1,), ...}`` including the L2 term ``2 lambda W``.
        With ``buffers`` the gradients are written into (and returned as) its arrays.
        ``grad_scale`` returns ``grad_scale`` times the gradients (backprop is linear in
        dscores, so this costs one multiply of dscores; ``dscores`` is scaled in place).
        ``sgd_update`` (needs ``buffers``) instead takes the plain SGD step
        ``p -= grad_scale * dL/dp`` for every parameter in place and returns ``{}``.
        """
        if grad_scale != 1.0:
            dscores *= grad_scale
        return self._backprop(dscores, reg_lambda * grad_scale, buffers, sgd_update)

    def _backprop(self, dscores: np.ndarray, reg_lambda: float, buffers: Buffers | None,
                  sgd_update: bool) -> dict[str, np.ndarray]:
        """:meth:`backward` for ``dscores`` and ``reg_lambda`` already times the scale."""
        if len(self._cache) != self.n_layers:
            raise RuntimeError("backward() needs a forward(..., keep_cache=True) first")
        if buffers is None:
            if sgd_update:
                raise ValueError("sgd_update needs buffers")
            return self._backprop_plain(dscores, reg_lambda)
        products = self._products(buffers)
        n = dscores.shape[0]
        if dscores.base is not buffers.z[-1]:  # the products read dZ from the buffers
            np.copyto(buffers.z[-1][:n], dscores)
            dscores = buffers.z[-1][:n]
        grads: dict[str, np.ndarray] = {}
        dz = dscores
        for i in range(self.n_layers, 0, -1):
            layer = products[i - 1]
            # Column sums as a GEMV with a ones vector: ~3x faster than np.sum(axis=0).
            db = np.matmul(buffers.ones[:n], dz, out=buffers.db[i - 1])
            if i > 1:
                layer.input_grad(n)  # dA = dZ W, before W changes below
            if sgd_update:
                # W <- (1 - 2 lr lambda) W - lr A^T dZ inside the GEMM (dz carries lr).
                layer.weight_update(n, -1.0, 1.0 - 2.0 * reg_lambda)
                self.params[f"b{i}"] -= db
            else:
                layer.weight_grad(n)  # dW^T = A^T dZ into dW's (in, out) memory
                dW = buffers.dW[i - 1]
                if reg_lambda:
                    dW += np.multiply(self.params[f"W{i}"], 2.0 * reg_lambda,
                                      out=buffers.scratch[i - 1])
                grads[f"W{i}"], grads[f"b{i}"] = dW, db
            if i > 1:
                da = buffers.da[i - 2][:n]
                if self.activation_name == "relu":
                    # relu' is the 0/1 gate of positive pre-activations that forward kept:
                    # multiply in place (branch-free; np.copyto(..., where=mask) is several
                    # times slower on a random mask).
                    dz = np.multiply(da, buffers.gate[i - 2][:n], out=da)
                else:
                    # f'(z) from the output, into a work array that is free until the next
                    # forward pass (the layer's output buffer z is still needed: it is a_prev).
                    slope = self.activation.grad(self._cache[i - 1],
                                                 out=buffers.act[i - 2][:n])
                    dz = np.multiply(da, slope, out=da)
        return grads

    def _backprop_plain(self, dscores: np.ndarray, reg_lambda: float) -> dict[str, np.ndarray]:
        """The textbook backward pass, allocating every gradient (used by gradcheck)."""
        grads: dict[str, np.ndarray] = {}
        dz = dscores
        for i in range(self.n_layers, 0, -1):
            a_prev = self._cache[i - 1]
            W = self.params[f"W{i}"]
            da, dW, db = affine_backward(dz, a_prev, W, need_da=i > 1)
            if reg_lambda:
                dW += (2.0 * reg_lambda) * W
            grads[f"W{i}"], grads[f"b{i}"] = dW, db
            if i > 1:
                dz = self.activation.backward(da, a_prev)
        return grads

    def train_step(self, X: np.ndarray, y: np.ndarray, buffers: Buffers | None = None,
                   loss_type: str = "softmax", reg_lambda: float = 0.0, margin: float = 1.0,
                   class_weights: np.ndarray | None = None, grad_scale: float = 1.0,
                   sgd_update: bool = False) -> tuple[float, float, int, dict[str, np.ndarray]]:
        """Forward and backward on one batch for training, in ``buffers`` when given.

        X: (N, D), y: (N,) -> (data_loss, reg_loss, number of correct predictions, grads
        times ``grad_scale``), all taken before any update. With ``sgd_update`` (needs
        ``buffers``) the step also applies plain SGD with rate ``grad_scale`` in place,
        unless the loss is not finite, and returns no gradients.
        """
        scores = self.forward(X, True, buffers)
        correct = int(np.count_nonzero(scores.argmax(axis=1) == y))
        # With buffers the scores are a work array: the loss may overwrite them. The loss
        # scales its gradient, so backprop starts from grad_scale * dL/dscores.
        loss_value, dscores = data_loss(loss_type, scores, y, margin, class_weights,
                                        inplace=buffers is not None, grad_scale=grad_scale)
        reg_value = self.reg_loss(reg_lambda)
        if sgd_update and not math.isfinite(loss_value + reg_value):
            return loss_value, reg_value, correct, {}
        grads = self._backprop(dscores, reg_lambda * grad_scale, buffers, sgd_update)
        return loss_value, reg_value, correct, grads

    def reg_loss(self, reg_lambda: float) -> float:
        """``lambda * sum over layers of sum W^2`` (biases excluded)."""
        if not reg_lambda:
            return 0.0
        # ravel(order="K") reads W in memory order: no copy for the transposed layout.
        return float(reg_lambda * sum(
            np.dot(flat, flat) for flat in (self.params[n].ravel(order="K")
                                             for n in self.weight_names())))

    def loss(self, X: np.ndarray, y: np.ndarray, loss_type: str = "softmax",
             reg_lambda: float = 0.0, margin: float = 1.0,
             class_weights: np.ndarray | None = None,
             ) -> tuple[float, float, dict[str, np.ndarray], np.ndarray]:
        """Forward and backward on one batch.

        X: (N, D), y: (N,) -> (data_loss, reg_loss, grads, scores (N, K)); the full
        loss is ``data_loss + reg_loss``.
        """
        scores = self.forward(X)
        loss_value, dscores = data_loss(loss_type, scores, y, margin, class_weights)
        grads = self.backward(dscores, reg_lambda)
        return loss_value, self.reg_loss(reg_lambda), grads, scores

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
