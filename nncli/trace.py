"""``nncli trace``: one example's forward and backward pass, layer by layer, as the lecture
draws it, and the slope followed numerically for one weight per layer.

The walk is written out here step by step from the same pieces :meth:`MLP.forward
<nncli.nn.model.MLP.forward>` and :meth:`MLP.backward <nncli.nn.model.MLP.backward>` use
(``affine_forward``/``affine_backward``, the activation's ``fn``/``backward``,
``Objective.data_loss``/``reg_grad``), keeping every intermediate value that those loops
throw away; tests bind its ``dW``/``db`` to :meth:`MLP.loss <nncli.nn.model.MLP.loss>`.
Everything is computed in float64, whatever the model's dtype (a float32 checkpoint's
weights are exact in float64), so that a centered difference means something.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nncli.build import class_weights, model_from_config, objective_from_config, output_units
from nncli.checkpoint import load_checkpoint
from nncli.config import Config, load_config
from nncli.data import (
    Dataset,
    Encoding,
    Normalization,
    RawData,
    load_training_data,
    make_dataset,
    read_source,
    reader_config,
)
from nncli.describe import is_checkpoint_path
from nncli.errors import NncliError
from nncli.inference import target_normalization
from nncli.nn.layers import affine_backward, affine_forward
from nncli.nn.losses import Objective, softmax
from nncli.nn.model import MLP

NUMERIC_H = 1e-5  # the step of the centered difference (float64: error ~h^2, noise ~eps/h)
SHOWN_VALUES = 6  # first values of a long vector in the human output


# ---------------------------------------------------------------- what is traced


@dataclass
class Prepared:
    """What a config or checkpoint says about its data: how to read, encode and normalize
    another source as the training data was (see :func:`nncli.data.make_dataset`)."""

    cfg: Config
    classes: list[str]
    input_shape: tuple[int, ...]
    normalization: Normalization
    features: list[str] | None
    encoding: Encoding | None
    target: Normalization | None  # regression: the targets' scaling; None: classes


def _from_config(path: str | Path) -> tuple[MLP, Objective, Prepared]:
    """The network of a config as training initializes it (float64), its objective, and
    its training data's classes, encoding and normalization."""
    cfg = load_config(path)
    data = load_training_data(cfg, splits=("train",), dtype="float64")
    model = model_from_config(cfg, data.train.X.shape[1],
                              output_units(cfg.task, data.classes), "float64")
    target = Normalization("standard", np.array([data.target_shift]),
                           np.array([data.target_scale])) if cfg.task == "regression" else None
    return model, objective_from_config(cfg, class_weights(cfg, data)), Prepared(
        cfg, data.classes, tuple(data.input_shape), data.normalization, data.features,
        data.encoding, target)


def _from_checkpoint(path: str | Path) -> tuple[MLP, Objective, Prepared]:
    """A checkpoint's network as it is (its weights in float64), its objective and its
    stored classes, encoding and normalization."""
    ckpt = load_checkpoint(path)
    cfg = ckpt.config
    model = MLP({k: v.astype(np.float64) for k, v in ckpt.model.params.items()},
                ckpt.model.activation_name)
    target = target_normalization(ckpt) if cfg.task == "regression" else None
    return model, objective_from_config(cfg, ckpt.class_weights), Prepared(
        cfg, list(ckpt.classes), tuple(ckpt.input_shape), ckpt.normalization, ckpt.features,
        ckpt.encoding, target)


def _one_example(source: str | Path, index: int, prep: Prepared) -> tuple[Dataset, str, Any]:
    """Example ``index`` (from 0, in the source's order) of ``source``, encoded and
    normalized as the training data: (its dataset of one row, where it is, its label:
    the class name, or the target in its own units)."""
    raw = read_source(source, reader_config(prep.cfg.data, prep.encoding, prep.features))
    n = len(raw.X)
    if not 0 <= index < n:
        raise NncliError(f"--example {index}: {source} holds {n} examples "
                         f"(0 to {n - 1})" if n else f"--example {index}: {source} is empty")
    place = Normalization.rows_of(raw)(index)
    rows = slice(index, index + 1)
    lines = None if raw.label_lines is None else raw.label_lines[rows]
    one: RawData = dataclasses.replace(raw, X=raw.X[rows], labels=raw.labels[rows],
                                       label_lines=lines)
    dataset = make_dataset(one, prep.classes, prep.normalization, "float64", "trace",
                           prep.input_shape, prep.features, prep.encoding, prep.target)
    if prep.target is None:
        return dataset, place, prep.classes[int(dataset.y[0])]
    label = float(dataset.y[0] * prep.target.scale[0] + prep.target.shift[0]) \
        if prep.target.shift is not None else float(dataset.y[0])
    return dataset, place, label


# ---------------------------------------------------------------- the walk


@dataclass
class LayerForward:
    """Layer ``layer``'s forward step for one example: ``z = W a_in + b``, ``a = f(z)``
    (``a`` None for the last layer, whose ``z`` are the scores). a_in: (in,), z: (out,)."""

    layer: int
    a_in: np.ndarray
    z: np.ndarray
    a: np.ndarray | None


@dataclass
class LayerBackward:
    """Layer ``layer``'s backward step: ``dz`` (out,) = δ, ``dW = δ a_inᵀ + 2λW`` (out, in),
    ``db = δ`` (out,); below the first layer ``da = Wᵀ δ`` (in,) and the activation's
    slope ``f'(z)`` (in,) at the layer below, whose δ is their product."""

    layer: int
    dz: np.ndarray
    dW: np.ndarray
    db: np.ndarray
    da: np.ndarray | None
    slope: np.ndarray | None


def forward_walk(model: MLP, x: np.ndarray) -> tuple[list[LayerForward], np.ndarray]:
    """x: (1, D) -> (each layer's step, scores (1, K))."""
    steps, a = [], x
    for i in range(1, model.n_layers + 1):
        z = affine_forward(a, model.params[f"W{i}"], model.params[f"b{i}"])  # z = W a + b
        last = i == model.n_layers
        out = None if last else model.activation.fn(z.copy())  # a = f(z)
        steps.append(LayerForward(i, a[0], z[0], None if last else out[0]))
        a = z if last else out
    return steps, a


def backward_walk(model: MLP, objective: Objective, steps: list[LayerForward],
                  dscores: np.ndarray) -> list[LayerBackward]:
    """From ``dscores`` (1, K) = dL/ds down the layers of ``steps``, last layer first."""
    grads, dz = [], dscores
    for step in reversed(steps):
        i, W = step.layer, model.params[f"W{step.layer}"]
        a_in = step.a_in[None, :]
        da, dW, db = affine_backward(dz, a_in, W, need_da=i > 1)  # dW = δ aᵀ, da = Wᵀ δ
        dW += objective.reg_grad(W)  # the λ term of the full loss: d(λ ΣW²)/dW = 2λW
        slope = model.activation.grad(a_in)[0] if i > 1 else None
        grads.append(LayerBackward(i, dz[0], dW, db, None if da is None else da[0], slope))
        if da is not None:
            dz = model.activation.backward(da, a_in)  # δ below = da ⊙ f'(z)
    return grads


def full_loss(model: MLP, objective: Objective, x: np.ndarray, y: np.ndarray) -> float:
    """``L = data loss + λ ΣW²`` of the examples x: (N, D), y: (N,)."""
    value, _ = objective.data_loss(model.scores(x), y)
    return value + objective.reg_loss(model.params)


@dataclass
class Slope:
    """One centered difference ``(L(w+h) - L(w-h)) / 2h`` beside the analytic dL/dw."""

    param: str
    index: tuple[int, int]
    analytic: float
    loss_plus: float
    loss_minus: float
    h: float

    @property
    def numeric(self) -> float:
        return (self.loss_plus - self.loss_minus) / (2 * self.h)


def follow_the_slope(model: MLP, objective: Objective, x: np.ndarray, y: np.ndarray,
                     grads: list[LayerBackward], h: float = NUMERIC_H) -> list[Slope]:
    """For each weight matrix, at its entry of largest |analytic gradient|, the centered
    difference of the full loss (x: (1, D), y: (1,)), first layer first."""
    slopes = []
    for g in sorted(grads, key=lambda g: g.layer):
        name = f"W{g.layer}"
        w = model.params[name]
        idx = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(g.dW)), g.dW.shape))
        old = w[idx]
        try:
            w[idx] = old + h
            plus = full_loss(model, objective, x, y)
            w[idx] = old - h
            minus = full_loss(model, objective, x, y)
        finally:
            w[idx] = old
        slopes.append(Slope(name, (idx[0], idx[1]), float(g.dW[idx]), plus, minus, h))
    return slopes


# ---------------------------------------------------------------- the trace


@dataclass
class Trace:
    """One example's walk through the network: ``fields()`` is SPEC's ``trace --json``
    object, ``lines()`` the human account of it."""

    example: int
    input: str
    label: Any
    x: np.ndarray  # (D,) the network's input after normalization
    forward: list[LayerForward]
    scores: np.ndarray  # (K,)
    probabilities: np.ndarray | None  # (K,) softmax of the scores; None for regression
    objective: Objective
    data_loss: float
    reg_loss: float
    dscores: np.ndarray  # (K,) dL/ds
    backward: list[LayerBackward]  # last layer first
    numeric: list[Slope]  # first layer first
    activation: str

    def fields(self) -> dict[str, Any]:
        """SPEC's object: example, input, label, x, forward, scores, probabilities, loss,
        backward, numeric (arrays as lists, dW as out x in rows)."""
        return {
            "example": self.example, "input": self.input, "label": self.label,
            "x": self.x.tolist(),
            "forward": [{"layer": f.layer, "z": f.z.tolist(),
                         **({} if f.a is None else {"a": f.a.tolist()})} for f in self.forward],
            "scores": self.scores.tolist(),
            "probabilities": None if self.probabilities is None else self.probabilities.tolist(),
            "loss": {"type": self.objective.loss, "data_loss": self.data_loss,
                     "reg_loss": self.reg_loss, "total": self.data_loss + self.reg_loss},
            "backward": [{"layer": b.layer, "dz": b.dz.tolist(), "dW": b.dW.tolist(),
                          "db": b.db.tolist()} for b in self.backward],
            "numeric": [{"param": s.param, "index": list(s.index), "analytic": s.analytic,
                         "numeric": s.numeric, "h": s.h} for s in self.numeric],
        }

    def lines(self) -> list[str]:
        """The human output: forward, backward, follow the slope."""
        return [*_forward_lines(self), "", *_backward_lines(self), "", *_slope_lines(self)]


def trace_example(target: str | Path, example: int = 0, data: str | Path | None = None
                  ) -> Trace:
    """Trace example ``example`` (from 0, in the source's order) of ``data`` (default: the
    config's ``data.train``) through the network of ``target``: a config, initialized as
    training would initialize it, or a checkpoint (or run folder), used as it is."""
    model, objective, prep = (_from_checkpoint(target) if is_checkpoint_path(target)
                              else _from_config(target))
    dataset, place, label = _one_example(data or prep.cfg.data.train, example, prep)
    x, y = dataset.X, dataset.y
    steps, scores = forward_walk(model, x)
    data_loss, dscores = objective.data_loss(scores.copy(), y)
    grads = backward_walk(model, objective, steps, dscores)
    return Trace(example, place, label, x[0], steps, scores[0],
                 None if prep.target is not None else softmax(scores.copy())[0], objective,
                 data_loss, objective.reg_loss(model.params), dscores[0], grads,
                 follow_the_slope(model, objective, x, y, grads), model.activation_name)


# ---------------------------------------------------------------- the human output


def summary(values: np.ndarray) -> str:
    """A vector or matrix in one line: all of it when short, else its shape, min/max and
    first values (row-major)."""
    flat = np.asarray(values).reshape(-1)
    shown = ", ".join(f"{v:.4g}" for v in flat[:SHOWN_VALUES])
    if flat.size <= SHOWN_VALUES and np.ndim(values) <= 1:
        return f"[{shown}]"
    return (f"{np.shape(values)} min {flat.min():.4g} max {flat.max():.4g}  "
            f"[{shown}{', ...' if flat.size > SHOWN_VALUES else ''}]")


DATA_LOSS_FORMULA = {"softmax": "-log p_y", "svm": "sum_{j!=y} max(0, s_j - s_y + margin)",
                     "mse": "sum_j (s_j - t_j)^2"}
DSCORES_FORMULA = {"softmax": "p - onehot(y)",
                   "svm": "1 for each class j violating the margin, minus their count at y",
                   "mse": "2 (s - t)"}


def _forward_lines(t: Trace) -> list[str]:
    last = len(t.forward)
    out = [f"example {t.example} (counting from 0; {t.input})  label {t.label}",
           "forward", f"  x (the input after normalization)  {summary(t.x)}"]
    for f in t.forward:
        a_in = "x" if f.layer == 1 else f"a{f.layer - 1}"
        name = "s" if f.layer == last else f"z{f.layer}"
        out.append(f"  layer {f.layer}: {name} = W{f.layer} {a_in} + b{f.layer}  "
                   f"{summary(f.z)}")
        if f.a is not None:
            out.append(f"    a{f.layer} = {t.activation}(z{f.layer})  {summary(f.a)}")
    out.append(f"  scores s  {summary(t.scores)}")
    if t.probabilities is not None:
        out.append(f"  probabilities p = softmax(s)  {summary(t.probabilities)}")
    reg = t.objective.reg_lambda
    out.append(f"  loss L = data loss ({t.objective.loss}: "
               f"{DATA_LOSS_FORMULA[t.objective.loss]}) {t.data_loss:.6g} + reg "
               f"(lambda {reg:g} sum W^2) {t.reg_loss:.6g} = {t.data_loss + t.reg_loss:.6g}")
    return out


def _backward_lines(t: Trace) -> list[str]:
    out = ["backward (the chain rule, last layer first)",
           f"  dL/ds = {DSCORES_FORMULA[t.objective.loss]}  {summary(t.dscores)}"]
    last = len(t.forward)
    for b in t.backward:
        i = b.layer
        a_in = "x" if i == 1 else f"a{i - 1}"
        source = "dL/ds" if i == last else f"da{i} * {t.activation}'(z{i})"
        out.append(f"  layer {i}: delta{i} = dL/dz{i} = {source}  {summary(b.dz)}")
        out.append(f"    dW{i} = delta{i} {a_in}^T + 2 lambda W{i}  {summary(b.dW)}")
        out.append(f"    db{i} = delta{i}  {summary(b.db)}")
        if b.da is not None and b.slope is not None:
            out.append(f"    da{i - 1} = W{i}^T delta{i}  {summary(b.da)}")
            out.append(f"    slope {t.activation}'(z{i - 1})  {summary(b.slope)}")
    return out


def _slope_lines(t: Trace) -> list[str]:
    out = ["follow the slope: (L(w+h) - L(w-h)) / 2h beside the analytic gradient"]
    for s in t.numeric:
        w = f"{s.param}[{s.index[0]}, {s.index[1]}]"
        gap = abs(s.numeric - s.analytic) / max(abs(s.numeric), abs(s.analytic), 1e-12)
        out.append(f"  {w}: ({s.loss_plus:.10g} - {s.loss_minus:.10g}) / {2 * s.h:g} = "
                   f"{s.numeric:.6g}   analytic {s.analytic:.6g}   relative gap {gap:.1e}")
    return out
