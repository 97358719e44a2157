"""Numerical gradient checking: analytic backprop against centered finite differences.

For each parameter entry ``w`` the numeric derivative is ``(L(w+h) - L(w-h)) / 2h`` of the
full loss ``L = data loss + lambda R(W)`` in float64, and the error is
``|a - n| / max(|a|, |n|, 1e-12)``; pairs with ``|a - n| < 1e-10`` count as agreeing.
That floor grows with the loss: ``L(w+-h)`` are each rounded to about ``eps |L|``, so a
difference below ``4 eps |L| / h`` (1e-10 for ``|L| ~ 1``, ``h = 1e-5``) is rounding noise,
not evidence — it matters for large losses such as un-normalized inputs.

ReLU, leaky ReLU and the SVM hinge have kinks; if ``w +- h`` lands on different sides of a
kink the centered difference is meaningless. The check notices (the activation pattern
differs between ``w+h`` and ``w-h``), retries with a smaller ``h``, and skips the entry only
if that also straddles the kink.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from nncli.config import Config
from nncli.data import class_weight_vector, load_training_data
from nncli.losses import data_loss
from nncli.model import MLP, model_from_config

ABS_AGREE = 1e-10
STEPS = (1e-5, 1e-6, 1e-7)


@dataclass
class ParamCheck:
    """Result for one parameter: worst relative error, entries compared and skipped."""

    max_rel_error: float = 0.0
    checked: int = 0
    skipped_at_kink: int = 0
    worst_index: tuple[int, ...] | None = None
    worst_pair: tuple[float, float] | None = None


@dataclass
class GradcheckReport:
    tol: float
    params: dict[str, ParamCheck] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(p.max_rel_error <= self.tol for p in self.params.values())

    @property
    def failing(self) -> list[str]:
        return [n for n, p in self.params.items() if p.max_rel_error > self.tol]

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "tol": self.tol,
            "params": {
                name: {
                    # JSON has no infinity: a non-finite gradient shows as null (ok false).
                    "max_rel_error": (p.max_rel_error if math.isfinite(p.max_rel_error)
                                      else None),
                    "checked": p.checked,
                    "skipped_at_kink": p.skipped_at_kink,
                    "worst_index": list(p.worst_index) if p.worst_index is not None else None,
                }
                for name, p in self.params.items()
            },
        }


def relative_error(analytic: float, numeric: float, abs_agree: float = ABS_AGREE) -> float:
    """``|a - n| / max(|a|, |n|, 1e-12)``, or 0 when ``|a - n| < abs_agree`` (1e-10).

    A NaN or infinite value on either side never agrees: the error is ``inf``.
    """
    if not (math.isfinite(analytic) and math.isfinite(numeric)):
        return math.inf
    diff = abs(analytic - numeric)
    if diff < abs_agree:
        return 0.0
    return diff / max(abs(analytic), abs(numeric), 1e-12)


class _Objective:
    """The full loss as a function of the model's current parameters, plus its kink pattern.

    The data loss is evaluated on the model; the ``lambda R(W)`` term on ``probe``, a copy of
    the model whose parameters are all zero except the entry being perturbed. ``R`` is a sum
    of one term per entry, so ``R(w+h) - R(w-h)`` is the same on both, but on the probe it is
    not the small difference of two large sums: with ``lambda R(W)`` in the hundreds, the
    rounding of the whole sum would otherwise swamp gradients of order 1e-3 and fail correct
    code at the default tolerance.
    """

    def __init__(self, model: MLP, X: np.ndarray, y: np.ndarray, loss_type: str,
                 reg_lambda: float, margin: float, class_weights: np.ndarray | None) -> None:
        self.model, self.X, self.y = model, X, y
        self.loss_type, self.reg_lambda, self.margin = loss_type, reg_lambda, margin
        self.class_weights = class_weights
        self.probe = MLP({k: np.zeros_like(v) for k, v in model.params.items()},
                         model.activation_name)
        self.has_kinks = (loss_type == "svm" or (
            model.n_layers > 1 and model.activation_name in ("relu", "leaky_relu")))

    def __call__(self) -> tuple[float, bytes]:
        """(data loss + lambda R(probe), kink pattern) at the current parameters."""
        scores = self.model.forward(self.X, keep_cache=True)
        value, _ = data_loss(self.loss_type, scores.copy(), self.y, self.margin,
                             self.class_weights)
        value += self.probe.reg_loss(self.reg_lambda)
        if not self.has_kinks:
            return value, b""
        parts = []
        if self.model.activation_name in ("relu", "leaky_relu"):
            parts += [a > 0 for a in self.model._cache[1:]]
        if self.loss_type == "svm":
            rows = np.arange(len(self.y))
            parts.append(scores - scores[rows, self.y][:, None] + self.margin > 0)
        return value, b"".join(np.packbits(p).tobytes() for p in parts)

    def analytic(self) -> dict[str, np.ndarray]:
        _, _, grads, _ = self.model.loss(self.X, self.y, self.loss_type, self.reg_lambda,
                                         self.margin, self.class_weights)
        return grads


def _numeric_entry(objective: _Objective, name: str, idx: tuple[int, ...]
                   ) -> tuple[float, float] | None:
    """(centered difference, its rounding-noise floor), or None if every h straddles a kink."""
    w, probe = objective.model.params[name], objective.probe.params[name]
    old = w[idx]
    try:
        for h in STEPS:
            w[idx] = probe[idx] = old + h
            f_plus, pattern_plus = objective()
            w[idx] = probe[idx] = old - h
            f_minus, pattern_minus = objective()
            if pattern_plus == pattern_minus:
                noise = 4.0 * np.finfo(np.float64).eps * max(abs(f_plus), abs(f_minus)) / h
                return (f_plus - f_minus) / (2.0 * h), max(ABS_AGREE, noise)
        return None
    finally:
        w[idx] = old
        probe[idx] = 0.0


def check_gradients(model: MLP, X: np.ndarray, y: np.ndarray, loss_type: str = "softmax",
                    reg_lambda: float = 0.0, margin: float = 1.0,
                    class_weights: np.ndarray | None = None, samples: int | None = None,
                    tol: float = 1e-6, rng: np.random.Generator | None = None
                    ) -> GradcheckReport:
    """Compare every parameter's backprop gradient with centered finite differences.

    X: (N, D), y: (N,); the model should be float64. ``samples`` checks that many random
    entries per parameter instead of all. Returns a :class:`GradcheckReport`.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    objective = _Objective(model, X, y, loss_type, reg_lambda, margin, class_weights)
    grads = objective.analytic()
    report = GradcheckReport(tol=tol)
    for name, w in model.params.items():
        result = ParamCheck()
        flat_indices = np.arange(w.size)
        if samples is not None and samples < w.size:
            flat_indices = np.sort(rng.choice(w.size, size=samples, replace=False))
        for flat in flat_indices:
            idx = np.unravel_index(int(flat), w.shape)
            found = _numeric_entry(objective, name, idx)
            if found is None:
                result.skipped_at_kink += 1
                continue
            numeric, floor = found
            analytic = float(grads[name][idx])
            err = relative_error(analytic, numeric, floor)
            result.checked += 1
            if err > result.max_rel_error or result.worst_index is None:
                result.max_rel_error = max(err, result.max_rel_error)
                result.worst_index = tuple(int(i) for i in idx)
                result.worst_pair = (analytic, numeric)
        report.params[name] = result
    return report


def gradcheck_config(cfg: Config, samples: int | None = None, tol: float = 1e-6,
                     n_examples: int = 16) -> GradcheckReport:
    """Gradient-check the model of ``cfg`` in float64 on ``n_examples`` of its training data.

    The model is initialized as training would initialize it, the examples are drawn from
    the seed, and class weights and lambda are those of the config.
    """
    data = load_training_data(cfg, splits=("train",), dtype="float64")
    rng = np.random.default_rng([cfg.seed, 3])
    n = data.train.X.shape[0]
    pick = np.sort(rng.choice(n, size=min(n, n_examples), replace=False))
    model = model_from_config(cfg, data.train.X.shape[1], len(data.classes), "float64")
    weights = class_weight_vector(cfg.loss.class_weight, data.classes, data.train.y)
    return check_gradients(model, data.train.X[pick], data.train.y[pick], cfg.loss.type,
                           cfg.reg_lambda, cfg.loss.margin, weights, samples, tol, rng)
