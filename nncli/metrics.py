"""Scoring a model on a dataset: loss, accuracy, confusion matrix, per-class P/R/F1."""

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


def per_class_report(confusion: np.ndarray, classes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Precision, recall, F1 and support per class from a (K, K) confusion matrix.

    A ratio with a zero denominator is reported as 0.0, as scikit-learn does by default.
    """
    tp = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0).astype(np.float64)
    support = confusion.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
    return {
        name: {"precision": float(precision[k]), "recall": float(recall[k]),
               "f1": float(f1[k]), "support": int(support[k])}
        for k, name in enumerate(classes)
    }
