"""Pictures of a run: its learning curves (``nncli plot``) and a checkpoint's confusion matrix
(``nncli viz confusion``), drawn with matplotlib's Agg backend into one PNG each.

matplotlib is the optional extra ``nncli[plot]``; it is imported inside the functions that
draw (:func:`pyplot`), so no other command pays its import time, and without it the
picture commands fail with one error naming the install line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from nncli.errors import NncliError
from nncli.rundir import RunDir, atomic_write_bytes, run_dir_of_checkpoint

INSTALL_LINE = 'pip install "nncli[plot]"'
CURVES_FILE = "curves.png"
CONFUSION_FILE = "confusion.png"
DPI = 100
CURVES_SIZE = (12.0, 4.0)  # inches: 1200 x 400 pixels at DPI
CONFUSION_MAX_COUNTS = 30  # counts are written in the cells up to this many classes
DECADES_FOR_LOG = 2.0  # a loss spanning more than this many powers of ten: log scale


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed); an error (exit 2) naming
    the install line when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        raise NncliError(f"this command draws with matplotlib, which is not installed; "
                         f"install it with: {INSTALL_LINE}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, path: Path) -> Path:
    """Write ``figure`` as a PNG to ``path`` (atomically, at :data:`DPI`), close it and
    return ``path``."""
    path = Path(path)
    if not path.parent.is_dir():
        raise NncliError(f"{path.parent}: no such folder to write {path.name} into")
    try:
        atomic_write_bytes(path, lambda handle: figure.savefig(handle, format="png", dpi=DPI))
    finally:
        pyplot().close(figure)
    return path


# ---------------------------------------------------------------- curves


def read_run(run_dir: str | Path) -> tuple[list[dict[str, Any]], int | None]:
    """The metric rows of ``run_dir`` (``metrics.jsonl``, epochs in order) and its best epoch
    (``summary.json``, or None while the run has no summary); an error when it has none."""
    run = Path(run_dir)
    if not run.is_dir():
        raise NncliError(f"{run}: not a run directory (no such folder)")
    rows = RunDir(run).read_metrics()
    if not rows:
        raise NncliError(f"{run}: no metrics to plot (metrics.jsonl is missing or has no "
                         f"epoch yet)")
    try:
        summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        summary = None
    best = summary.get("best_epoch") if isinstance(summary, dict) else None
    return rows, best if isinstance(best, int) and not isinstance(best, bool) else None


def _series(rows: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Epochs and values of ``key`` where it is a finite number (a run without validation
    data has null val_loss: no points)."""
    points = [(r["epoch"], float(r[key])) for r in rows
              if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)
              and math.isfinite(float(r[key]))]
    epochs, values = zip(*points) if points else ((), ())
    return np.asarray(epochs, dtype=float), np.asarray(values, dtype=float)


def spans_decades(values: np.ndarray) -> bool:
    """True when the positive ``values`` (N,) span more than :data:`DECADES_FOR_LOG` powers
    of ten, which a linear axis would flatten into a corner."""
    positive = values[values > 0]
    if positive.size < 2 or positive.size < values.size:
        return False
    return math.log10(positive.max() / positive.min()) > DECADES_FOR_LOG


def curve_panels(rows: list[dict[str, Any]]) -> list[tuple[str, str, list[str]]]:
    """The curves' panels as (title, y label, metric keys): the loss and its terms, the
    score (accuracy, or RMSE for a regression run), the learning rate. Validation keys are
    left out when no row has validation data."""
    regression = "train_rmse" in rows[0]
    score = "rmse" if regression else "acc"
    has_val = _series(rows, "val_loss")[0].size > 0
    losses = ["loss", "data_loss", "reg_loss"] + (["val_loss"] if has_val else [])
    scores = [f"train_{score}"] + ([f"val_{score}"] if has_val else [])
    title = "RMSE (target units)" if regression else "Accuracy"
    return [("Loss", "loss", losses), (title, score.upper() if regression else "accuracy",
                                        scores), ("Learning rate", "lr", ["lr"])]


def plot_curves(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Draw the learning curves of ``run_dir`` against epoch into one PNG (default
    ``RUN_DIR/curves.png``, 1200 x 400 pixels) and return its path: loss, data loss, reg
    loss (and val loss), train (and val) accuracy or RMSE, lr; the best epoch marked."""
    rows, best = read_run(run_dir)
    path = Path(output) if output is not None else Path(run_dir) / CURVES_FILE
    plt = pyplot()
    figure, axes = plt.subplots(1, 3, figsize=CURVES_SIZE, dpi=DPI)
    for ax, (title, ylabel, keys) in zip(axes, curve_panels(rows)):
        drawn = []
        for key in keys:
            epochs, values = _series(rows, key)
            if epochs.size:
                ax.plot(epochs, values, marker="." if epochs.size < 30 else None,
                        label=key.replace("_", " "))
                drawn.append(values)
        if title == "Loss" and drawn and spans_decades(np.concatenate(drawn[:2])):
            ax.set_yscale("log")
        if best is not None:
            ax.axvline(best, color="grey", linestyle="--", linewidth=1,
                       label=f"best epoch {best}")
        ax.set(title=title, xlabel="epoch", ylabel=ylabel)
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    figure.suptitle(f"{Path(run_dir).resolve().name}: {len(rows)} epochs")
    figure.tight_layout()
    return save_figure(figure, path)


# ---------------------------------------------------------------- confusion


def predicted_and_actual(checkpoint: str | Path, data: str | Path
                         ) -> tuple[np.ndarray, np.ndarray]:
    """A regression ``checkpoint``'s values on the labelled ``data`` and the targets, both
    (N,) in the target's units, read as eval reads them."""
    from nncli.inference import labelled_inputs
    from nncli.metrics import model_values

    ckpt, X, t, where = labelled_inputs(checkpoint, data)
    shift, scale = ckpt.target_shift or 0.0, ckpt.target_scale or 1.0
    _, predicted = model_values(ckpt.model, X, shift, scale, where=where)
    return predicted, t.astype(np.float64) * scale + shift


def plot_predicted_vs_actual(checkpoint: str | Path, data: str | Path,
                             output: str | Path | None = None) -> Path:
    """Draw a regression ``checkpoint``'s predictions against the targets of ``data`` (one
    point per example, the diagonal y = x where they would agree) into one square PNG
    (default ``RUN/confusion.png``, the place of a classifier's confusion matrix)."""
    predicted, actual = predicted_and_actual(checkpoint, data)
    path = (Path(output) if output is not None
            else run_dir_of_checkpoint(Path(checkpoint)) / CONFUSION_FILE)
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(5, 5), dpi=DPI)
    ax.scatter(actual, predicted, s=12, alpha=0.6, label="examples")
    low = float(min(actual.min(), predicted.min())) if actual.size else 0.0
    high = float(max(actual.max(), predicted.max())) if actual.size else 1.0
    ax.plot([low, high], [low, high], "k--", linewidth=1, label="predicted = actual")
    rmse = float(np.sqrt(np.mean((predicted - actual) ** 2))) if actual.size else 0.0
    ax.set(xlabel="actual (target units)", ylabel="predicted (target units)",
           title=f"Predicted against actual\n{actual.size} examples, RMSE {rmse:.4g}")
    ax.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    return save_figure(figure, path)


def confusion_of_checkpoint(checkpoint: str | Path, data: str | Path
                            ) -> tuple[np.ndarray, list[str]]:
    """The confusion matrix (K, K), rows true and columns predicted, of ``checkpoint`` on
    the labelled ``data``, and the class names, by eval's own path."""
    from nncli.inference import evaluate_checkpoint

    report = evaluate_checkpoint(checkpoint, data)
    if "rmse" in report:
        raise NncliError(f"{checkpoint} is a regression model: it has no classes, so no "
                         f"confusion matrix")
    if "confusion" not in report:
        raise NncliError(f"{checkpoint} has {len(report['classes'])} classes, too many to "
                         f"draw a confusion matrix")
    return np.asarray(report["confusion"], dtype=np.int64), list(report["classes"])


def _is_regression(checkpoint: str | Path) -> bool:
    from nncli.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint).config.task == "regression"


def row_normalized(matrix: np.ndarray) -> np.ndarray:
    """Each row of ``matrix`` (K, K) divided by its sum (a class with no example: zeros)."""
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)


def confusion_size(n_classes: int) -> float:
    """The confusion picture's side in inches: it grows with the classes, within 5 and 20."""
    return float(min(20.0, max(5.0, 2.0 + 0.35 * n_classes)))


def plot_confusion(checkpoint: str | Path, data: str | Path, output: str | Path | None = None,
                   normalize: bool = False) -> Path:
    """Draw the confusion matrix of ``checkpoint`` on ``data`` (counts, or each true class's
    row as shares with ``normalize``) with class names, counts written in the cells up to
    :data:`CONFUSION_MAX_COUNTS` classes, into one square PNG (default
    ``RUN/confusion.png`` of the checkpoint's run) and return its path."""
    if _is_regression(checkpoint):
        return plot_predicted_vs_actual(checkpoint, data, output)
    matrix, classes = confusion_of_checkpoint(checkpoint, data)
    path = (Path(output) if output is not None
            else run_dir_of_checkpoint(Path(checkpoint)) / CONFUSION_FILE)
    shown = row_normalized(matrix) if normalize else matrix
    plt = pyplot()
    side = confusion_size(len(classes))
    figure, ax = plt.subplots(figsize=(side, side), dpi=DPI)
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, classes, rotation=90 if len(classes) > 10 else 0)
    ax.set_yticks(ticks, classes)
    if len(classes) <= CONFUSION_MAX_COUNTS:
        _write_counts(ax, matrix, shown)
    accuracy = np.trace(matrix) / max(int(matrix.sum()), 1)
    ax.set(xlabel="predicted class", ylabel="true class",
           title=f"Confusion{' (rows normalized)' if normalize else ''}\n"
                 f"{int(matrix.sum())} examples, accuracy {accuracy:.3f}")
    figure.tight_layout()
    return save_figure(figure, path)


def _write_counts(ax: Any, matrix: np.ndarray, shown: np.ndarray) -> None:
    """Each cell's count (its share above it when normalized), in white on dark cells."""
    threshold = shown.max() / 2 if shown.size and shown.max() > 0 else 1.0
    normalized = shown.dtype.kind == "f"
    for (i, j), count in np.ndenumerate(matrix):
        text = f"{shown[i, j]:.2f}\n{count}" if normalized else str(count)
        ax.text(j, i, text, ha="center", va="center", fontsize="small",
                color="white" if shown[i, j] > threshold else "black")
