"""Numerical gradient checking: analytic backprop against centered finite differences.

For each parameter entry ``w`` the numeric derivative is ``(L(w+h) - L(w-h)) / 2h`` of the
full loss ``L = data loss + lambda R(W)`` in float64, and the error is
``|a - n| / max(|a|, |n|, 1e-12)``; pairs with ``|a - n| < 1e-10`` count as agreeing.
That floor grows with the loss: ``L(w+-h)`` are each rounded to about ``eps |L|``, so a
difference below ``4 eps |L| / h`` (1e-10 for ``|L| ~ 1``, ``h = 1e-5``) is rounding noise,
not evidence — it matters for large losses such as un-normalized inputs. The step used is the
one actually realized in floating point, ``(w + h) - (w - h)``, so the magnitude of ``w``
itself never biases the quotient.

Retries. Every entry is first differenced with ``h = 1e-5``. A weight ``w`` multiplies an
input of size ``s``, so moving ``w`` by ``h`` moves the pre-activation by ``h s``: with
un-normalized inputs in the thousands that is a step of 0.01 to 0.1, and the truncation error
of the centered difference, about ``h^2 L''' / 6``, exceeds ``tol`` although backprop is
right. So an entry that disagrees at ``h = 1e-5`` is retried with Richardson extrapolation,
``R(h) = (4 D(h/2) - D(h)) / 3`` of the centered differences ``D``, which cancels the ``h^2``
term (what is left is O(h^4)) while ``h`` stays large enough for the rounding noise to stay
small. ``h`` halves from ``1e-5`` down to ``1e-7``, or, for large inputs, down to
``1e-3 / s`` (``s`` the largest ``|input|`` in the weight's column over the batch; 1 for a
bias). The entry agrees if two consecutive estimates, ``R(h)`` and ``R(h/2)``, both agree
with the analytic value, each with the rounding floor of the differences it is made of,
``(4 floor(h/2) + floor(h)) / 3``; the worse of the two is kept and its ``h`` reported.
Smaller steps alone do not do: their noise floor grows as ``1 / h`` while truncation shrinks,
and for inputs of ~1e4 no single step gets both below ``tol`` (tests/test_gradcheck_cli.py
has such a case).

Why retrying stays sound. The centered difference converges to the true derivative ``g``
as ``h`` shrinks (its error is truncation, which vanishes, plus rounding noise below the
floor), and ``R(h)`` converges faster. A wrong analytic gradient ``a = g + delta`` differs
from every estimate by about ``delta`` *whatever the step*: no retry makes a bug go away, so
the best agreement over the steps is still about ``|delta|`` and the entry fails, with about
the size of the bug as its error. Only truncation, which is not the code's fault, is excused
by retrying. What else could fake agreement, and why it does not:

- rounding noise, whose floor grows as ``1 / h``: marching down to ever smaller steps would
  end where the floor covers any bug. The steps go from large to small, so an entry is
  accepted at the largest steps that agree, where the floor is smallest; when two
  consecutive estimates agree with each other but are more than ``3 tol`` from the analytic
  value, the numeric derivative has converged elsewhere (a bug) and the retry stops there;
  and a retry never excuses as noise more than the floor of its first estimate or
  ``10 tol`` relative (``NOISE_TOL``), whichever is larger;
- coincidence: the truncation error of an estimate could cancel a bug (``delta ~ -c h^4``)
  at one step; agreement must hold at two consecutive steps, whose truncation errors differ
  16-fold, and a real bug shows on many entries of a parameter, whose maximum is reported.

What remains is the resolution any finite difference has: a bug smaller than the rounding
noise of the loss (``eps |L| / h`` relative to the entry's gradient) can hide in an entry
whose gradient is tiny, which is why the report is per parameter and bugs show on the
entries with large gradients.

ReLU, leaky ReLU and the SVM hinge have kinks; if ``w +- h`` lands on different sides of a
kink the centered difference is meaningless. The check notices (the activation pattern
differs between ``w+h`` and ``w-h``), goes on to the next smaller step, and skips the entry
only if every step straddles the kink. A Richardson estimate needs both of its steps clear of
the kink.

Sampling. ``samples=N`` checks N random entries of each parameter with more than N entries
(all entries of the others). For a matrix the sample covers every row and every column when
N is at least the number of rows and of columns, so a bug confined to one unit or one input
is still seen. The CLI samples :data:`DEFAULT_SAMPLES` by default: an entry costs two forward
passes of the whole model (0.3-0.6 ms for configs/mnist1d-mlp.yaml's 78,858 parameters on 16
examples with one BLAS thread, several times more where BLAS threads contend for the cores),
so its default check (11,274 entries) takes seconds where all entries took minutes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nncli.nn.errors import NncliError
from nncli.nn.losses import DEFAULT_OBJECTIVE, Objective
from nncli.nn.model import MLP

ABS_AGREE = 1e-10
DEFAULT_H = 1e-5
SMALLEST_FIXED_H = 1e-7  # the steps go down to here whatever the inputs
SMALLEST_H = 1e-11  # and never below
DEFAULT_SAMPLES = 4096
NOISE_TOL = 10.0  # a retry excuses rounding noise up to this many tol (or the first floor)
EPS = float(np.finfo(np.float64).eps)

# progress(param, done, planned, entries): called with done = 0 when a parameter starts and
# after each of its ``planned`` entries (of ``entries`` in the parameter) has been compared.
Progress = Callable[[str, int, int, int], None]


@dataclass
class ParamCheck:
    """Result for one parameter: worst relative error, entries compared and skipped.

    ``entries`` is the parameter's size; ``checked + skipped_at_kink`` of them were tried
    (fewer when sampled). ``retried`` counts entries whose kept estimate is not the centered
    difference at ``h = 1e-5``; ``worst_h`` is the step of the worst entry's kept estimate,
    ``worst_richardson`` whether it is a Richardson estimate (from ``h`` and ``h/2``).
    """

    max_rel_error: float = 0.0
    checked: int = 0
    entries: int = 0
    skipped_at_kink: int = 0
    retried: int = 0
    worst_index: tuple[int, ...] | None = None
    worst_pair: tuple[float, float] | None = None
    worst_h: float | None = None
    worst_richardson: bool = False


@dataclass
class GradcheckReport:
    tol: float
    samples: int | None = None  # random entries per parameter; None: all
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
            "samples": self.samples,
            "params": {
                name: {
                    # JSON has no infinity: a non-finite gradient shows as null (ok false).
                    "max_rel_error": (p.max_rel_error if math.isfinite(p.max_rel_error)
                                      else None),
                    "checked": p.checked,
                    "entries": p.entries,
                    "skipped_at_kink": p.skipped_at_kink,
                    "retried": p.retried,
                    "h": p.worst_h,
                    "estimate": "richardson" if p.worst_richardson else "centered",
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


class _FullLoss:
    """The full loss as a function of the model's current parameters, plus its kink pattern.

    The data loss is evaluated on the model; the ``lambda R(W)`` term on ``probe``, a copy of
    the parameters that is all zero except the entry being perturbed. ``R`` is a sum of one
    term per entry, so ``R(w+h) - R(w-h)`` is the same on both, but on the probe it is not
    the small difference of two large sums: with ``lambda R(W)`` in the hundreds, the
    rounding of the whole sum would otherwise swamp gradients of order 1e-3 and fail correct
    code at the default tolerance.
    """

    def __init__(self, model: MLP, X: np.ndarray, y: np.ndarray, objective: Objective) -> None:
        self.model, self.X, self.y, self.objective = model, X, y, objective
        self.probe = {k: np.zeros_like(v) for k, v in model.params.items()}
        self.kinked_activation = (model.n_layers > 1
                                  and model.activation_name in ("relu", "leaky_relu"))
        self.has_kinks = objective.loss == "svm" or self.kinked_activation

    def __call__(self) -> tuple[float, bytes]:
        """(data loss + lambda R(probe), kink pattern) at the current parameters."""
        scores, cache = self.model.forward(self.X)
        value, _ = self.objective.data_loss(scores.copy(), self.y)
        value += self.objective.reg_loss(self.probe)
        if not self.has_kinks:
            return value, b""
        parts = []
        if self.kinked_activation:
            parts += [a > 0 for a in cache[1:]]
        if self.objective.loss == "svm":
            rows = np.arange(len(self.y))
            parts.append(scores - scores[rows, self.y][:, None] + self.objective.margin > 0)
        return value, b"".join(np.packbits(p).tobytes() for p in parts)

    def analytic(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(backprop gradients, input scales): ``scales[W_l]`` is ``max |a_{l-1}|`` over the
        batch per column of ``W_l`` (in,), the size of what each weight multiplies."""
        _, _, grads, _ = self.model.loss(self.X, self.y, self.objective)
        _, cache = self.model.forward(self.X)
        scales = {f"W{i}": np.abs(a).max(axis=0) for i, a in enumerate(cache, start=1)}
        return grads, scales


def _centered(full_loss: _FullLoss, name: str, idx: tuple[int, ...], h: float
              ) -> tuple[float, float] | None:
    """(centered difference at step h, its rounding-noise floor), or None when ``w +- h``
    straddle a kink or ``h`` is too small to move ``w`` at all."""
    w, probe = full_loss.model.params[name], full_loss.probe[name]
    old = float(w[idx])
    up, down = old + h, old - h
    step = up - down  # the 2h realized in floating point
    if not step > 0.0:
        return None
    try:
        w[idx] = probe[idx] = up
        f_plus, pattern_plus = full_loss()
        w[idx] = probe[idx] = down
        f_minus, pattern_minus = full_loss()
    finally:
        w[idx] = old
        probe[idx] = 0.0
    if pattern_plus != pattern_minus:
        return None
    noise = 8.0 * EPS * max(abs(f_plus), abs(f_minus)) / step  # 4 eps |L| / h
    return (f_plus - f_minus) / step, max(ABS_AGREE, noise)


def _steps(scale: float) -> list[float]:
    """The steps for an entry whose input has magnitude ``scale``: ``1e-5``, halved down to
    ``1e-7`` or, for large inputs, to ``1e-3 / scale`` (never below ``1e-11``)."""
    low = max(min(SMALLEST_FIXED_H, 1e-3 / max(scale, 1.0)), SMALLEST_H)
    return [DEFAULT_H / 2.0 ** k for k in range(math.ceil(math.log2(DEFAULT_H / low)) + 1)]


# (relative error, numeric derivative, step h, Richardson estimate from h and h/2?)
Kept = tuple[float, float, float, bool]


def _check_entry(full_loss: _FullLoss, name: str, idx: tuple[int, ...], analytic: float,
                 tol: float, scale: float) -> Kept | None:
    """The estimate kept for one entry (see :data:`Kept`), or None if every step straddles
    a kink. See the module docstring for the steps and the rules."""
    steps = _steps(scale)
    k, found = 0, _centered(full_loss, name, idx, steps[0])
    while found is None:  # go on to the first step that does not straddle a kink
        k += 1
        if k == len(steps):
            return None
        found = _centered(full_loss, name, idx, steps[k])
    floor_ref = found[1]
    first = (relative_error(analytic, found[0], floor_ref), found[0], steps[k], False)
    if first[0] <= tol:
        return first
    # Retry: Richardson extrapolation R(h) = (4 D(h/2) - D(h)) / 3 for h halving from here.
    # Agreement must hold for two consecutive estimates; when two consecutive estimates agree
    # with each other but the later one is off by more than 3 tol, the numeric derivative has
    # converged elsewhere and smaller steps will not change that (a bug: stop early).
    wider: tuple[float, float] | None = found  # D and its floor at the previous step
    previous: Kept | None = None
    best_pair: Kept | None = None
    excusable = 0.0  # the most rounding noise may excuse: set by the first estimate
    for h_wide, h in zip(steps[k:], steps[k + 1:]):
        at_h = _centered(full_loss, name, idx, h)
        if at_h is None or wider is None:
            wider, previous = at_h, None
            continue
        value = (4.0 * at_h[0] - wider[0]) / 3.0
        floor = (4.0 * at_h[1] + wider[1]) / 3.0
        excusable = excusable or floor
        floor = min(floor, max(excusable, NOISE_TOL * tol * max(abs(analytic), abs(value))))
        current = (relative_error(analytic, value, floor), value, h_wide, True)
        wider = at_h
        if previous is not None:
            pair = max(previous, current, key=lambda kept: kept[0])
            best_pair = pair if best_pair is None or pair[0] < best_pair[0] else best_pair
            if pair[0] <= tol:
                return pair
            if current[0] > 3.0 * tol and relative_error(previous[1], value, floor_ref) <= tol:
                break
        previous = current
    return best_pair if best_pair is not None and best_pair[0] < first[0] else first


def sample_entries(shape: tuple[int, ...], n: int | None, rng: np.random.Generator
                   ) -> np.ndarray:
    """Sorted flat indices of ``n`` distinct random entries of an array of ``shape`` (all of
    them when ``n`` is None or not smaller). For a matrix, every row and every column is
    drawn once before any is drawn twice, so all appear when ``n >= max(rows, cols)``."""
    size = math.prod(shape)
    if n is None or n >= size:
        return np.arange(size)
    if len(shape) != 2 or 2 * n > size:
        return np.sort(rng.choice(size, size=n, replace=False))
    rows, cols = shape
    r = np.concatenate([rng.permutation(rows) for _ in range(-(-n // rows))])[:n]
    c = np.concatenate([rng.permutation(cols) for _ in range(-(-n // cols))])[:n]
    flat = np.unique(r * cols + c)  # a repeated pair keeps its row and column covered
    while flat.size < n:  # top up with entries not drawn yet (n <= size / 2: few rounds)
        flat = np.union1d(flat, rng.integers(0, size, size=n - flat.size))
    return flat


def check_options(samples: int | None, tol: float) -> None:
    """Refuse a tolerance that is not a finite number >= 0 (NaN would pass every check: no
    error compares greater than it) and a sample count that is not a positive integer."""
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) \
            or tol < 0:
        raise NncliError(f"gradcheck tolerance {tol!r}: expected a finite number >= 0, "
                         f"e.g. --tol 1e-6")
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int)
                                or samples < 1):
        raise NncliError(f"gradcheck samples {samples!r}: expected a positive integer, or "
                         f"None (all entries)")


def check_gradients(model: MLP, X: np.ndarray, y: np.ndarray,
                    objective: Objective = DEFAULT_OBJECTIVE, samples: int | None = None,
                    tol: float = 1e-6, rng: np.random.Generator | None = None,
                    progress: Progress | None = None) -> GradcheckReport:
    """Compare every parameter's backprop gradient with centered finite differences.

    X: (N, D), y: (N,); the model should be float64; the loss is ``objective``'s (data loss
    and L2 term). ``samples`` checks that many random
    entries per parameter instead of all (see :func:`sample_entries`); ``progress`` is called
    as described at :data:`Progress`. Returns a :class:`GradcheckReport`.
    """
    check_options(samples, tol)
    rng = rng if rng is not None else np.random.default_rng(0)
    full_loss = _FullLoss(model, X, y, objective)
    grads, scales = full_loss.analytic()
    report = GradcheckReport(tol=tol, samples=samples)
    for name, w in model.params.items():
        result = ParamCheck(entries=int(w.size))
        flat_indices = sample_entries(w.shape, samples, rng)
        if progress is not None:
            progress(name, 0, len(flat_indices), w.size)
        for done, flat in enumerate(flat_indices, start=1):
            idx = tuple(int(i) for i in np.unravel_index(int(flat), w.shape))
            analytic = float(grads[name][idx])
            scale = float(scales[name][idx[1]]) if name in scales else 1.0
            kept = _check_entry(full_loss, name, idx, analytic, tol, scale)
            if kept is None:
                result.skipped_at_kink += 1
            else:
                err, numeric, h, richardson = kept
                result.checked += 1
                result.retried += int(richardson or h != DEFAULT_H)
                if err > result.max_rel_error or result.worst_index is None:
                    result.max_rel_error = max(err, result.max_rel_error)
                    result.worst_index = idx
                    result.worst_pair = (analytic, numeric)
                    result.worst_h, result.worst_richardson = h, richardson
            if progress is not None:
                progress(name, done, len(flat_indices), w.size)
        report.params[name] = result
    return report
