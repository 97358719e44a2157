"""Scoring a model on a dataset: loss, accuracy, confusion matrix, per-class P/R/F1 and
their macro and weighted averages; for regression the loss, MSE, RMSE, MAE and R^2."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nncli.errors import NncliError
from nncli.nn.losses import DEFAULT_OBJECTIVE, Objective
from nncli.nn.model import MLP

log = logging.getLogger("nncli")


@dataclass
class Evaluation:
    """Aggregate results of :func:`evaluate` over N examples."""

    n: int
    data_loss: float
    reg_loss: float
    accuracy: float
    predictions: np.ndarray  # (N,) predicted class indices

    @property
    def loss(self) -> float:
        return self.data_loss + self.reg_loss


SCORE_ELEMENTS = 1 << 22  # scores (rows x classes) computed at once by evaluate, at most


def evaluate(model: MLP, X: np.ndarray, y: np.ndarray, objective: Objective = DEFAULT_OBJECTIVE,
             batch_size: int = 4096, where: Callable[[int], str] | None = None) -> Evaluation:
    """``objective``'s loss (weighted as in training), accuracy and predictions, in batches.

    X: (N, D) already normalized, y: (N,) class indices. A batch holds at most
    ``batch_size`` rows and :data:`SCORE_ELEMENTS` scores, so memory stays bounded for a
    model of many classes. NumPy's overflow warnings are never raised as such. With
    ``where`` (scoring a checkpoint; ``where(i)`` describes row i), scores that overflow
    the model's dtype (inputs far beyond what it was trained on) are an error naming the
    example, and a loss that overflows although the scores did not is reported as it is
    (inf) with one warning; without it (training's validation), they flow into the loss,
    where training reports divergence.
    """
    n = X.shape[0]
    rows = max(1, min(batch_size, SCORE_ELEMENTS // max(1, model.sizes[-1])))
    predictions = np.empty(n, dtype=np.int64)
    weighted_sum = 0.0
    weight_total = 0.0
    for start in range(0, n, rows):
        yb = y[start:start + rows]
        with np.errstate(over="ignore", invalid="ignore"):
            scores = model.scores(X[start:start + rows])
        if where is not None:
            check_scores(scores, start, where)
        with np.errstate(over="ignore", invalid="ignore"):
            batch_sum, batch_weight = objective.loss_sum(scores, yb)
            weighted_sum += batch_sum
            weight_total += batch_weight
        predictions[start:start + rows] = scores.argmax(axis=1)
    data_loss = weighted_sum / weight_total if weight_total > 0 else 0.0
    if where is not None and not math.isfinite(data_loss):
        log.warning("the %s loss overflows %s on these examples (the scores are finite but "
                    "far apart); it is reported as %s", objective.loss, X.dtype, data_loss)
    accuracy = float((predictions == y).mean()) if n else 0.0
    return Evaluation(n, data_loss, objective.reg_loss(model.params), accuracy, predictions)


@dataclass
class RegressionEvaluation:
    """Results of :func:`evaluate_regression` over N examples; ``mse``, ``rmse``, ``mae`` in
    the target's units, the losses in the network's (normalized) units."""

    n: int
    data_loss: float
    reg_loss: float
    mse: float
    rmse: float
    mae: float
    r2: float
    values: np.ndarray  # (N,) float64 predictions in the target's units

    @property
    def loss(self) -> float:
        return self.data_loss + self.reg_loss

    def fields(self) -> dict[str, float]:
        """SPEC's regression metrics: n, loss, data_loss, reg_loss, mse, rmse, mae, r2."""
        return {"n": self.n, "loss": self.loss, "data_loss": self.data_loss,
                "reg_loss": self.reg_loss, "mse": self.mse, "rmse": self.rmse,
                "mae": self.mae, "r2": self.r2}


def model_values(model: MLP, X: np.ndarray, shift: float, scale: float,
                 batch_size: int = 4096, where: Callable[[int], str] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """A regression model's outputs s: (N,) in its dtype and ``s * scale + shift``: (N,)
    float64, the values in the target's units, in batches. X: (N, D) normalized; with
    ``where``, overflowing outputs are an error naming the example (:func:`check_scores`)."""
    n = X.shape[0]
    scores = np.empty(n, dtype=model.dtype)
    for start in range(0, n, batch_size):
        with np.errstate(over="ignore", invalid="ignore"):
            batch = model.scores(X[start:start + batch_size])
        if where is not None:
            check_scores(batch, start, where)
        scores[start:start + batch_size] = batch[:, 0]
    return scores, scores.astype(np.float64) * scale + shift


def evaluate_regression(model: MLP, X: np.ndarray, t: np.ndarray, objective: Objective,
                        shift: float = 0.0, scale: float = 1.0, batch_size: int = 4096,
                        where: Callable[[int], str] | None = None) -> RegressionEvaluation:
    """``objective``'s loss and the regression metrics of a one-output ``model``.

    X: (N, D) normalized, t: (N,) the targets as the network learns them, ``(target -
    shift) / scale``. The errors in the target's units are ``(s - t) * scale`` (the shift
    cancels): ``mse`` their mean square, ``rmse`` its root, ``mae`` their mean magnitude,
    ``r2 = 1 - SS_res / SS_tot`` (scikit-learn's ``r2_score``; for a constant target, as
    its default ``force_finite``: 1.0 when predicted exactly, else 0.0).
    """
    n = X.shape[0]
    scores, values = model_values(model, X, shift, scale, batch_size, where)
    with np.errstate(over="ignore", invalid="ignore"):
        loss_sum, _ = objective.loss_sum(scores[:, None], t)
        errors = (scores.astype(np.float64) - t) * scale
        residual = float(errors @ errors)
        centred = (t.astype(np.float64) - t.mean(dtype=np.float64)) * scale
        total = float(centred @ centred)
    mse = residual / n if n else 0.0
    if total > 0:
        r2 = 1.0 - residual / total
    else:
        r2 = 1.0 if residual == 0 else 0.0
    return RegressionEvaluation(n, loss_sum / n if n else 0.0, objective.reg_loss(model.params),
                                mse, math.sqrt(mse), float(np.abs(errors).mean()) if n else 0.0,
                                r2, values)


def check_scores(scores: np.ndarray, start: int = 0,
                 where: Callable[[int], str] | None = None) -> None:
    """Refuse non-finite scores (N, K) of rows ``start, start+1, ...``: an error naming the
    first such row (``where(i)``, default ``example i+1``)."""
    if np.isfinite(scores).all():
        return
    row = start + int(np.flatnonzero(~np.isfinite(scores).all(axis=1))[0])
    place = where(row) if where else f"example {row + 1}"
    raise NncliError(f"{place}: the model's scores overflow {scores.dtype} (the input "
                     f"values are far beyond the range the model was trained on; rescale "
                     f"them like the training data)")


@dataclass
class Confusion:
    """A confusion matrix over K classes kept sparse: the (true, predicted) pairs that occur
    and their counts, so 30,000 classes cost what the examples cost, not K x K.

    true, pred, count: (M,) int64, sorted by (true, pred); rows of the dense form are true
    classes, columns predicted.
    """

    n_classes: int
    true: np.ndarray
    pred: np.ndarray
    count: np.ndarray

    @classmethod
    def of(cls, y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> Confusion:
        """Counts of the pairs in y_true, y_pred: (N,) class indices."""
        flat = y_true.astype(np.int64) * n_classes + y_pred.astype(np.int64)
        pairs, count = np.unique(flat, return_counts=True)
        return cls(n_classes, pairs // n_classes, pairs % n_classes, count.astype(np.int64))

    @classmethod
    def from_dense(cls, matrix: np.ndarray) -> Confusion:
        """The pairs of a dense (K, K) count matrix."""
        true, pred = np.nonzero(matrix)
        return cls(matrix.shape[0], true.astype(np.int64), pred.astype(np.int64),
                   matrix[true, pred].astype(np.int64))

    def dense(self) -> np.ndarray:
        """(K, K) counts; rows true classes, columns predicted."""
        matrix = np.zeros((self.n_classes, self.n_classes), dtype=np.int64)
        matrix[self.true, self.pred] = self.count
        return matrix

    def support(self) -> np.ndarray:
        """(K,) examples per true class."""
        return np.bincount(self.true, weights=self.count,
                           minlength=self.n_classes).astype(np.int64)

    def predicted(self) -> np.ndarray:
        """(K,) examples per predicted class."""
        return np.bincount(self.pred, weights=self.count,
                           minlength=self.n_classes).astype(np.int64)

    def correct(self) -> np.ndarray:
        """(K,) true positives per class (the diagonal)."""
        hit = self.true == self.pred
        return np.bincount(self.true[hit], weights=self.count[hit],
                           minlength=self.n_classes).astype(np.int64)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(K, K) counts; rows are true classes, columns predicted. y_true, y_pred: (N,).
    For many classes use :class:`Confusion`, which stays sparse."""
    return Confusion.of(y_true, y_pred, n_classes).dense()


def _as_confusion(confusion: np.ndarray | Confusion) -> Confusion:
    return confusion if isinstance(confusion, Confusion) else Confusion.from_dense(
        np.asarray(confusion))


def _precision_recall_f1(confusion: np.ndarray | Confusion
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall, F1 (K,) and support (K,) from a confusion matrix
    (dense (K, K), rows true, columns predicted, or a :class:`Confusion`):
    ``P = tp / predicted``, ``R = tp / support``, ``F1 = 2PR / (P + R)``; a ratio with a
    zero denominator is 0.0 (scikit-learn's ``zero_division=0``)."""
    pairs = _as_confusion(confusion)
    tp = pairs.correct().astype(np.float64)
    predicted = pairs.predicted().astype(np.float64)
    support = pairs.support()
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
    return precision, recall, f1, support


def per_class_report(confusion: np.ndarray | Confusion, classes: Sequence[str]
                     ) -> dict[str, dict[str, Any]]:
    """Precision, recall, F1 and support per class from a (K, K) confusion matrix (or a
    :class:`Confusion`).

    A ratio with a zero denominator is reported as 0.0, as scikit-learn does by default.
    """
    precision, recall, f1, support = _precision_recall_f1(confusion)
    return {
        name: {"precision": float(precision[k]), "recall": float(recall[k]),
               "f1": float(f1[k]), "support": int(support[k])}
        for k, name in enumerate(classes)
    }


def average_report(confusion: np.ndarray | Confusion) -> dict[str, dict[str, Any]]:
    """``macro_avg`` and ``weighted_avg`` of the per-class precision, recall and F1 (plus the
    total ``support``), as scikit-learn's ``classification_report`` gives them, from a
    (K, K) confusion matrix.

    macro: the plain mean over the classes that occur in the data or in the predictions
    (scikit-learn's default ``labels=unique_labels(y_true, y_pred)``; a class absent from
    both is left out); weighted: ``Σ_k n_k m_k / Σ_k n_k`` with ``n_k`` the support. F1 is
    averaged as it is (not recomputed from the averaged P and R). Zero denominators give 0.0.
    """
    precision, recall, f1, support = _precision_recall_f1(confusion)
    present = (support > 0) | (_as_confusion(confusion).predicted() > 0)
    report: dict[str, dict[str, Any]] = {}
    for name, weights in (("macro_avg", present.astype(np.float64)),
                          ("weighted_avg", support.astype(np.float64))):
        norm = float(weights.sum())
        report[name] = {metric: float(weights @ values) / norm if norm > 0 else 0.0
                        for metric, values in (("precision", precision), ("recall", recall),
                                               ("f1", f1))}
        report[name]["support"] = int(support.sum())
    return report
