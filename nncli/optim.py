"""Gradient-descent update rules and learning-rate schedules.

Each rule updates one parameter in place, ``update(w, g, state, lr, hp)``, with its state
in a plain dict of arrays that starts empty (meaning zeros); :class:`Optimizer` applies a
rule to every parameter and saves/restores all state as flat ``{name: array}`` dicts, which
is what a checkpoint stores.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from nncli.config import OPTIMIZER_NAMES

ADAM_BETA1, ADAM_BETA2, ADAM_EPS = 0.9, 0.999, 1e-8

UpdateFn = Callable[[np.ndarray, np.ndarray, dict[str, np.ndarray], float, dict[str, float]],
                    None]


def _zeros_like_state(state: dict[str, np.ndarray], key: str, w: np.ndarray) -> np.ndarray:
    if key not in state:
        state[key] = np.zeros_like(w)
    return state[key]


def sgd_update(w: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray], lr: float,
               hp: dict[str, float]) -> None:
    """``w -= lr g``."""
    w -= lr * g


def momentum_update(w: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray], lr: float,
                    hp: dict[str, float]) -> None:
    """Heavy ball: ``v = mu v + g; w -= lr v``."""
    v = _zeros_like_state(state, "v", w)
    v *= hp["momentum"]
    v += g
    w -= lr * v


def nesterov_update(w: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray], lr: float,
                    hp: dict[str, float]) -> None:
    """``v = mu v + g; w -= lr (g + mu v)`` (PyTorch's form of Nesterov momentum)."""
    v = _zeros_like_state(state, "v", w)
    v *= hp["momentum"]
    v += g
    w -= lr * (g + hp["momentum"] * v)


def adam_update(w: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray], lr: float,
                hp: dict[str, float]) -> None:
    """Adam with bias correction; ``state["t"]`` counts this parameter's updates.

    ``m = b1 m + (1-b1) g; u = b2 u + (1-b2) g^2; w -= lr m_hat / (sqrt(u_hat) + eps)``.
    """
    m = _zeros_like_state(state, "m", w)
    u = _zeros_like_state(state, "u", w)
    t = int(state.get("t", np.zeros(())).item()) + 1
    state["t"] = np.array(t, dtype=np.int64)
    m *= ADAM_BETA1
    m += (1.0 - ADAM_BETA1) * g
    u *= ADAM_BETA2
    u += (1.0 - ADAM_BETA2) * (g * g)
    m_hat = m / (1.0 - ADAM_BETA1 ** t)
    u_hat = u / (1.0 - ADAM_BETA2 ** t)
    w -= lr * m_hat / (np.sqrt(u_hat) + ADAM_EPS)


UPDATES: dict[str, UpdateFn] = {
    "sgd": sgd_update,
    "momentum": momentum_update,
    "nesterov": nesterov_update,
    "adam": adam_update,
}
assert tuple(UPDATES) == OPTIMIZER_NAMES


class Optimizer:
    """Applies one update rule to a dict of parameters, keeping per-parameter state."""

    def __init__(self, name: str, momentum: float = 0.9) -> None:
        self.name = name
        self.update = UPDATES[name]
        self.hp = {"momentum": float(momentum)}
        self.state: dict[str, dict[str, np.ndarray]] = {}

    def __str__(self) -> str:
        return f"{self.name}(momentum={self.hp['momentum']})" if self.name in (
            "momentum", "nesterov") else self.name

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray],
             lr: float) -> None:
        """Update every ``params[k]`` in place from ``grads[k]`` (same shapes)."""
        for key, g in grads.items():
            self.update(params[key], g, self.state.setdefault(key, {}), lr, self.hp)

    def state_arrays(self) -> dict[str, np.ndarray]:
        """A snapshot of all state as ``{"opt_<slot>_<param>": array}``, e.g. ``opt_v_W1``.

        The arrays are copies: later steps (which update state in place) do not change them.
        """
        return {f"opt_{slot}_{key}": arr.copy() for key, slots in self.state.items()
                for slot, arr in slots.items()}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore state saved by :meth:`state_arrays` (other keys are ignored)."""
        self.state = {}
        for name, arr in arrays.items():
            if not name.startswith("opt_"):
                continue
            slot, _, key = name[4:].partition("_")
            self.state.setdefault(key, {})[slot] = np.array(arr, copy=True)


def learning_rate(base_lr: float, schedule: Any, epoch: int, epochs: int) -> float:
    """The rate for 1-based ``epoch`` of ``epochs``.

    ``constant``: base; ``{step: {every, gamma}}``: base * gamma^((epoch-1) // every);
    ``cosine``: base * (1 + cos(pi (epoch-1) / epochs)) / 2, from base down towards 0.
    """
    if schedule == "constant" or schedule is None:
        return base_lr
    if schedule == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / epochs))
    step = schedule["step"]
    return base_lr * step["gamma"] ** ((epoch - 1) // step["every"])
