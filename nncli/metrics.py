"""Scoring a model on a dataset: loss, accuracy, confusion matrix, per-class P/R/F1 and
their macro and weighted averages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nncli.losses import LOSSES
from nncli.model import MLP


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


def evaluate(model: MLP, X: np.ndarray, y: np.ndarray, loss_type: str = "softmax",
             margin: float = 1.0, class_weights: np.ndarray | None = None,
             reg_lambda: float = 0.0, batch_size: int = 4096) -> Evaluation:
    """Loss (weighted as in training), accuracy and predictions, in batches.

    X: (N, D) already normalized, y: (N,) class indices.
    """
    n = X.shape[0]
    predictions = np.empty(n, dtype=np.int64)
    weighted_sum = 0.0
    weight_total = 0.0
    loss_fn = LOSSES[loss_type]
    for start in range(0, n, batch_size):
        yb = y[start:start + batch_size]
        scores = model.forward(X[start:start + batch_size], keep_cache=False)
        losses, _ = loss_fn(scores, yb, margin)
        if class_weights is None:
            weighted_sum += float(losses.sum(dtype=np.float64))
            weight_total += len(yb)
        else:
            w = class_weights[yb]
            weighted_sum += float(np.dot(w, losses))
            weight_total += float(w.sum())
        predictions[start:start + batch_size] = scores.argmax(axis=1)
    data_loss = weighted_sum / weight_total if weight_total > 0 else 0.0
    accuracy = float((predictions == y).mean()) if n else 0.0
    return Evaluation(n, data_loss, model.reg_loss(reg_lambda), accuracy, predictions)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(K, K) counts; rows are true classes, columns predicted. y_true, y_pred: (N,)."""
    flat = y_true.astype(np.int64) * n_classes + y_pred.astype(np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _precision_recall_f1(confusion: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall, F1 (K,) and support (K,) from a (K, K) confusion matrix
    (rows true, columns predicted): ``P = tp / predicted``, ``R = tp / support``,
    ``F1 = 2PR / (P + R)``; a ratio with a zero denominator is 0.0 (scikit-learn's
    ``zero_division=0``)."""
    tp = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0).astype(np.float64)
    support = confusion.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
    return precision, recall, f1, support


def per_class_report(confusion: np.ndarray, classes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Precision, recall, F1 and support per class from a (K, K) confusion matrix.

    A ratio with a zero denominator is reported as 0.0, as scikit-learn does by default.
    """
    precision, recall, f1, support = _precision_recall_f1(confusion)
    return {
        name: {"precision": float(precision[k]), "recall": float(recall[k]),
               "f1": float(f1[k]), "support": int(support[k])}
        for k, name in enumerate(classes)
    }


def average_report(confusion: np.ndarray) -> dict[str, dict[str, Any]]:
    """``macro_avg`` and ``weighted_avg`` of the per-class precision, recall and F1 (plus the
    total ``support``), as scikit-learn's ``classification_report`` gives them, from a
    (K, K) confusion matrix.

    macro: the plain mean over the classes that occur in the data or in the predictions
    (scikit-learn's default ``labels=unique_labels(y_true, y_pred)``; a class absent from
    both is left out); weighted: ``Σ_k n_k m_k / Σ_k n_k`` with ``n_k`` the support. F1 is
    averaged as it is (not recomputed from the averaged P and R). Zero denominators give 0.0.
    """
    precision, recall, f1, support = _precision_recall_f1(confusion)
    present = (support > 0) | (confusion.sum(axis=0) > 0)
    report: dict[str, dict[str, Any]] = {}
    for name, weights in (("macro_avg", present.astype(np.float64)),
                          ("weighted_avg", support.astype(np.float64))):
        norm = float(weights.sum())
        report[name] = {metric: float(weights @ values) / norm if norm > 0 else 0.0
                        for metric, values in (("precision", precision), ("recall", recall),
                                               ("f1", f1))}
        report[name]["support"] = int(support.sum())
    return report
