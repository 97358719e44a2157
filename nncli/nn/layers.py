"""Layers as forward/backward pairs (cs231n's ``layers.py``) and how their weights start.

A batch is a matrix with one example per row and ``W`` is shaped (out, in), as in
``z = W a + b`` for one example, so an affine layer computes ``Z = A W^T + b``.
"""

from __future__ import annotations

import numpy as np


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


def init_affine(fan_in: int, fan_out: int, std: float, rng: np.random.Generator,
                dtype: str | np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """A fresh layer: W: (fan_out, fan_in) drawn from N(0, std^2), b: (fan_out,) zeros."""
    # Drawn in float64 so float32 and float64 runs start from the same weights.
    W = (rng.standard_normal((fan_out, fan_in)) * std).astype(dtype)
    return W, np.zeros(fan_out, dtype=dtype)
