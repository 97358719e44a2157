"""Activation functions, each a forward ``fn`` and a ``grad`` computed from the output.

Like scikit-learn's ``DERIVATIVES``, the derivative is expressed through the activation's
output ``a = fn(z)``, so the backward pass needs no copy of the pre-activation ``z``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

LEAKY_SLOPE = 0.01


def _sigmoid(z: np.ndarray, out: np.ndarray | None = None, work: np.ndarray | None = None,
             mask: np.ndarray | None = None) -> np.ndarray:
    # 1/(1+e^-z) for z >= 0 and e^z/(1+e^z) for z < 0: never overflows, and keeps full
    # relative precision in the tail where 1/(1+e^-z) is tiny. ``work`` (float, like z) and
    # ``mask`` (bool) let the training step run it without allocating.
    positive = np.greater_equal(z, 0, out=mask)
    e = np.abs(z, out=work)
    np.negative(e, out=e)
    np.exp(e, out=e)  # e^{-|z|}
    if out is None:
        out = e.copy()
    else:
        np.copyto(out, e)  # z may be ``out`` itself: it is no longer needed
    np.copyto(out, 1.0, where=positive)
    e += 1.0
    return np.divide(out, e, out=out)


def _sigmoid_grad(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    out = np.subtract(1.0, a, out=out)
    out *= a
    return out


def _tanh(z: np.ndarray, out: np.ndarray | None = None, **_: np.ndarray) -> np.ndarray:
    return np.tanh(z, out=out)


def _tanh_grad(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    out = np.multiply(a, a, out=out)
    return np.subtract(1.0, out, out=out)


def _relu(z: np.ndarray, out: np.ndarray | None = None, **_: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0.0, out=out)


def _relu_grad(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    if out is None:
        return (a > 0).astype(a.dtype)
    return np.greater(a, 0, out=out)


def _leaky_relu(z: np.ndarray, out: np.ndarray | None = None, work: np.ndarray | None = None,
                **_: np.ndarray) -> np.ndarray:
    # max(z, 0.01 z) equals z for z > 0 and 0.01 z otherwise.
    return np.maximum(z, np.multiply(z, LEAKY_SLOPE, out=work), out=out)


def _leaky_relu_grad(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    # The output keeps the sign of the input, so the slope can be read off the output.
    if out is None:
        return np.where(a > 0, 1.0, LEAKY_SLOPE).astype(a.dtype)
    # max(sign(a), slope) is 1 where a > 0 and the slope elsewhere, with no temporaries.
    np.sign(a, out=out)
    return np.maximum(out, LEAKY_SLOPE, out=out)


def _linear(z: np.ndarray, out: np.ndarray | None = None, **_: np.ndarray) -> np.ndarray:
    if out is None:
        return z
    out[...] = z
    return out


def _linear_grad(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    if out is None:
        return np.ones_like(a)
    out.fill(1.0)
    return out


@dataclass(frozen=True)
class Activation:
    """An elementwise nonlinearity. ``fn(z)`` and ``grad(a)`` take/return arrays of any shape."""

    name: str
    fn: Callable[..., np.ndarray]
    grad: Callable[..., np.ndarray]

    def __str__(self) -> str:
        return f"LeakyReLU(alpha={LEAKY_SLOPE})" if self.name == "leaky_relu" else self.name

    def backward(self, dout: np.ndarray, a: np.ndarray) -> np.ndarray:
        """Chain rule through the activation: ``dL/dz = dL/da * f'(z)``, from output ``a``.

        dout, a: (N, H) -> (N, H).
        """
        if self.name == "linear":
            return dout
        if self.name == "relu":
            return np.where(a > 0, dout, 0.0).astype(dout.dtype, copy=False)
        return dout * self.grad(a)


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation("sigmoid", _sigmoid, _sigmoid_grad),
    "tanh": Activation("tanh", _tanh, _tanh_grad),
    "relu": Activation("relu", _relu, _relu_grad),
    "leaky_relu": Activation("leaky_relu", _leaky_relu, _leaky_relu_grad),
    "linear": Activation("linear", _linear, _linear_grad),
}


def get_activation(name: str) -> Activation:
    """The activation registered as ``name`` (a key of ``ACTIVATIONS``)."""
    return ACTIVATIONS[name]
