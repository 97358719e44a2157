"""Using a trained checkpoint: scoring a labelled dataset (``eval``) and predicting (``predict``).

Both apply the checkpoint's stored normalization, compute in its dtype, match table columns
to the training columns by name, and refuse data of another kind than the checkpoint was
trained on with one error saying what it expects (:func:`expectation`): a table model given
images, an image model given table rows. What ``predict`` reads is in
:mod:`nncli.streaming`; this module runs the model on it and formats the answers.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from nncli.build import objective_from_config
from nncli.checkpoint import Checkpoint, load_checkpoint
from nncli.data import (
    TABLE_SUFFIXES,
    Normalization,
    RawData,
    check_shape,
    encode_labels,
    encode_table,
    read_source,
    reader_config,
)
from nncli.data.arrayfolder import is_array_folder
from nncli.data.cells import na_set
from nncli.data.encoding import Counts, warn_counts
from nncli.data.prepare import scaled_targets
from nncli.data.rowview import NormalizedRows, check_values
from nncli.data.types import is_mapped
from nncli.errors import NncliError
from nncli.metrics import (
    Confusion,
    average_report,
    check_scores,
    evaluate,
    evaluate_regression,
    model_values,
    per_class_report,
)
from nncli.nn.losses import softmax
from nncli.streaming import ColumnKinds, Failure, Rows, TableReader, image_batches, numbers_in
from nncli.text import printable, surrogates_as_bytes, tsv_cell

# ---------------------------------------------------------------- what a checkpoint expects


def data_kind(ckpt: Checkpoint) -> str:
    """The kind of data the checkpoint was trained on: ``images``, ``table`` or ``array``."""
    kind = ckpt.data_kind
    if kind in ("images", "table", "array"):
        return str(kind)
    return "table" if ckpt.features else "array"


def _listed(names: Sequence[str], limit: int) -> str:
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def expectation(ckpt: Checkpoint, checkpoint: str | Path) -> str:
    """What ``checkpoint`` was trained on, as the start of a wrong-kind error, e.g.
    ``model.npz was trained on table rows with 30 features (radius_mean, ...)``."""
    kind, shape = data_kind(ckpt), tuple(ckpt.input_shape)
    dim = int(np.prod(shape))
    if kind == "images" and len(shape) == 3:
        height, width, _ = shape
        image = ckpt.config.data.image
        size = f"resized to {width}x{height}" if image.size else f"{width}x{height} pixels"
        return f"{checkpoint} was trained on images ({size}, mode {image.mode})"
    if kind == "table":
        features = ckpt.features or []
        dim = len(features) if ckpt.encoding is not None else dim  # columns, not inputs
        return (f"{checkpoint} was trained on table rows with {dim} features "
                f"({_listed(features, 6)})")
    return f"{checkpoint} was trained on arrays of shape {shape} ({dim} values per example)"


def _check_data_kind(ckpt: Checkpoint, checkpoint: str | Path, data: Path,
                     raw: RawData | None = None) -> None:
    """Refuse a source of another kind than the checkpoint's: by its path before reading it
    (so an image folder is not decoded for a table model), by what it holds after."""
    kind, dim = data_kind(ckpt), int(np.prod(ckpt.input_shape))
    what = None
    if raw is None:
        if kind == "images" and data.suffix.lower() in TABLE_SUFFIXES:
            what = f"{data} is a table"
        elif kind != "images" and data.is_dir() and not (data / "X.npy").exists():
            what = f"{data} is a folder, which eval reads as an image folder"
    elif kind == "images" and raw.kind == "table":
        what = f"{data} is a table"
    elif kind == "images" and raw.kind != "images" and raw.X.shape[1] != dim:
        what = f"{data} holds examples of shape {tuple(raw.input_shape)}"
    elif kind != "images" and raw.kind == "images":
        what = f"{data} is an image folder"
    if what:
        raise NncliError(f"{expectation(ckpt, checkpoint)}; {what}")


# ---------------------------------------------------------------- eval


def checkpoint_class_weights(ckpt: Checkpoint) -> np.ndarray | None:
    """The per-class loss weights the model was trained with, or None."""
    return ckpt.class_weights


def target_normalization(ckpt: Checkpoint) -> Normalization:
    """A regression checkpoint's target scaling, ``t = (target - shift) / scale``, as the
    normalization of one column."""
    return Normalization("standard", np.array([ckpt.target_shift or 0.0]),
                         np.array([ckpt.target_scale or 1.0]))


def labelled_inputs(checkpoint: str | Path, data: str | Path
                    ) -> tuple[Checkpoint, np.ndarray, np.ndarray, Callable[[int], str]]:
    """``checkpoint`` loaded, and the labelled source ``data`` read as eval reads it:
    X: (N, D) encoded and normalized in the model's dtype, y: (N,) class indices
    (regression: the targets as the network learns them), and ``where`` naming example
    i's file and line."""
    ckpt = load_checkpoint(checkpoint)
    cfg = ckpt.config
    _check_data_kind(ckpt, checkpoint, Path(data))
    raw = read_source(data, reader_config(cfg.data, ckpt.encoding, ckpt.features))
    _check_data_kind(ckpt, checkpoint, Path(data), raw)
    raw = encode_table(raw, ckpt.encoding, "eval", ckpt.features)
    check_shape(raw, ckpt.input_shape, "eval")
    y = scaled_targets(raw, target_normalization(ckpt), ckpt.model.dtype) \
        if cfg.task == "regression" \
        else encode_labels(raw.labels, ckpt.classes, raw.source, raw.label_lines)
    where = Normalization.rows_of(raw)
    if is_mapped(raw.X):  # an array folder: its rows normalized as they are scored
        check_values(raw.X, ckpt.normalization, ckpt.model.dtype, raw.source)
        return ckpt, NormalizedRows(raw.X, None, ckpt.normalization, ckpt.model.dtype), y, \
            where  # type: ignore[return-value]
    return ckpt, ckpt.normalization.apply(raw.X, ckpt.model.dtype, where), y, where


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path,
                        batch_size: int = 4096) -> dict[str, Any]:
    """Score ``checkpoint`` on the labelled source ``data`` (any kind ``data.train`` accepts).

    Returns SPEC's ``eval --json`` object: n, loss, data_loss, reg_loss, accuracy, classes,
    per_class {precision, recall, f1, support}, macro_avg and weighted_avg {precision,
    recall, f1, support}, confusion (rows true, columns predicted; above
    :data:`CONFUSION_MAX_CLASSES` classes ``confusion_pairs`` instead, see
    :func:`confusion_fields`). Table columns are matched to the training columns by name.
    Inputs whose normalized values or scores overflow the model's dtype are an error naming
    the file and line (or example). A regression checkpoint gives SPEC's regression object
    instead: n, loss, data_loss, reg_loss, mse, rmse, mae, r2
    (:meth:`~nncli.metrics.RegressionEvaluation.fields`), plus checkpoint and data.
    """
    ckpt, X, y, where = labelled_inputs(checkpoint, data)
    cfg = ckpt.config
    regression = cfg.task == "regression"
    from nncli.testhooks import pause_here  # tests send signals at this phase

    pause_here("eval")
    objective = objective_from_config(cfg, checkpoint_class_weights(ckpt))
    if regression:
        scored = evaluate_regression(ckpt.model, X, y, objective, ckpt.target_shift or 0.0,
                                     ckpt.target_scale or 1.0, batch_size, where)
        return {**scored.fields(), "checkpoint": str(checkpoint), "data": str(data)}
    result = evaluate(ckpt.model, X, y, objective, batch_size, where)
    confusion = Confusion.of(y, result.predictions, len(ckpt.classes))
    return {
        "n": result.n,
        "loss": result.loss,
        "data_loss": result.data_loss,
        "reg_loss": result.reg_loss,
        "accuracy": result.accuracy,
        "classes": list(ckpt.classes),
        "per_class": per_class_report(confusion, ckpt.classes),
        **average_report(confusion),
        **confusion_fields(confusion, ckpt.classes),
        "checkpoint": str(checkpoint),
        "data": str(data),
    }


CONFUSION_MAX_CLASSES = 1000  # eval --json gives the K x K matrix up to this many classes


def confusion_fields(confusion: Confusion, classes: Sequence[str]) -> dict[str, Any]:
    """eval's confusion: ``confusion`` (K x K, rows true, columns predicted) for up to
    :data:`CONFUSION_MAX_CLASSES` classes; above, where the matrix would be mostly zeros
    (30,000 classes: 900 million numbers), ``confusion_pairs`` instead: ``[true, predicted,
    count]`` for each pair that occurs, class names, sorted by true then predicted class."""
    if confusion.n_classes <= CONFUSION_MAX_CLASSES:
        return {"confusion": confusion.dense().tolist()}
    return {"confusion_pairs": [[classes[t], classes[p], int(c)] for t, p, c in
                                zip(confusion.true.tolist(), confusion.pred.tolist(),
                                    confusion.count.tolist())]}


# ---------------------------------------------------------------- predict


@dataclass
class Prediction:
    input: str
    top: list[tuple[str, float]]  # (label, probability), most probable first


@dataclass
class ValuePrediction:
    """A regression model's answer: the predicted value in the target's units."""

    input: str
    value: float


Result = Prediction | ValuePrediction | Failure


class Predictor:
    """Turns raw inputs (image paths or table rows) into class probabilities (or, for a
    regression checkpoint, predicted values)."""

    def __init__(self, checkpoint: str | Path) -> None:
        self.ckpt = load_checkpoint(checkpoint)
        self.path = Path(checkpoint)
        self.kind = data_kind(self.ckpt)
        self.regression = self.ckpt.config.task == "regression"
        self.features: list[str] | None = self.ckpt.features
        self.dim = int(np.prod(self.ckpt.input_shape))
        self.expects = expectation(self.ckpt, checkpoint)
        self.encoding = self.ckpt.encoding
        self.counts = Counts()  # what encoding the rows of this run imputed or did not know
        kinds = None
        if self.encoding is not None:
            cfg = self.ckpt.config.data
            kinds = ColumnKinds(tuple(c.type for c in self.encoding.columns),
                                na_set(cfg.na_values), tuple(self.encoding.ignored))
        self.table = TableReader(self.features, self.ckpt.config.data.label_column,
                                 len(self.encoding.columns) if self.encoding else self.dim,
                                 self.expects, kinds)

    @property
    def classes(self) -> list[str]:
        return self.ckpt.classes

    @property
    def input_description(self) -> str:
        """What an input line is, for the notice shown when stdin is a terminal."""
        if self.kind == "images":
            return "image paths (or folders)"
        names = f" ({_listed(self.features, 6)})" if self.features else ""
        return f"table rows of {self.table.dim} comma-separated feature values{names}"

    def run(self, inputs: Sequence[str], stdin: IO[str] | None = None,
            top_k: int = 1) -> Iterator[list[Result]]:
        """Results for ``inputs`` (``-`` or none: the lines of ``stdin``), batch by batch,
        in input order, each batch as soon as its inputs have arrived (rules in
        :mod:`nncli.streaming`). A bad input is a :class:`Failure` in its place; a bad
        header on stdin raises."""
        from nncli.testhooks import pause_here  # tests send signals at this phase

        pause_here("predict")
        if self.kind == "images":
            for paths in image_batches(inputs, stdin):
                yield self._predict_images(paths, top_k)
            return
        for rows in self.table.batches(inputs, stdin):
            yield [rows] if isinstance(rows, Failure) else self._predict_rows(rows, top_k)
        self.warn_encoding()

    def warn_encoding(self) -> None:
        """The one ``warning:`` (each) for the missing values imputed and the categories
        not seen in training among the rows predicted so far; the counts start over."""
        if self.encoding is not None:
            warn_counts("predict", self.counts, self.encoding)
        self.counts = Counts()

    def predict(self, items: Sequence[str], first_row: int = 1, top_k: int = 1
                ) -> list[Prediction | ValuePrediction]:
        """Predictions for image paths, or table rows in training column order (numbered
        from ``first_row``), in order; raises the first bad input's error."""
        if self.kind == "images":
            results = self._predict_images(list(items), top_k)
        else:
            results = self._predict_rows(
                self.table.rows(list(items), itertools.count(first_row)), top_k)
            self.warn_encoding()
        for result in results:
            if isinstance(result, Failure):
                raise result.error
        return [r for r in results if not isinstance(r, Failure)]

    def probabilities(self, X_raw: np.ndarray, places: Sequence[str]) -> np.ndarray:
        """Softmax of the scores for raw (un-normalized) rows. X_raw: (N, D) -> (N, K);
        ``places[i]`` names row i in errors."""
        X = self.ckpt.normalization.apply(X_raw, self.ckpt.model.dtype, lambda i: places[i])
        with np.errstate(over="ignore", invalid="ignore"):
            scores = self.ckpt.model.scores(X)
        check_scores(scores, 0, lambda i: places[i])
        with np.errstate(over="ignore"):  # s - max(s) may pass -inf: e^-inf is 0 as it should
            return softmax(scores)

    def values(self, X_raw: np.ndarray, places: Sequence[str]) -> np.ndarray:
        """A regression model's predictions in the target's units for raw rows.
        X_raw: (N, D) -> (N,) float64; ``places[i]`` names row i in errors."""
        X = self.ckpt.normalization.apply(X_raw, self.ckpt.model.dtype, lambda i: places[i])
        _, values = model_values(self.ckpt.model, X, self.ckpt.target_shift or 0.0,
                                 self.ckpt.target_scale or 1.0, len(X) or 1,
                                 lambda i: places[i])
        return values

    def _predict_matrix(self, X_raw: np.ndarray, names: list[str], places: list[str],
                        top_k: int) -> list[Result]:
        """Predictions for rows X_raw: (N, D); a row the normalization refuses (out of the
        dtype's range) becomes a Failure on its own."""
        try:
            outputs = self.values(X_raw, places) if self.regression else \
                self.probabilities(X_raw, places)
        except NncliError as exc:
            if len(names) == 1:
                return [Failure(names[0], exc)]
            return [r for i in range(len(names)) for r in self._predict_matrix(
                X_raw[i:i + 1], names[i:i + 1], places[i:i + 1], top_k)]
        if self.regression:
            return [ValuePrediction(name, float(v)) for name, v in zip(names, outputs)]
        k = min(top_k, outputs.shape[1])
        order = np.argsort(-outputs, axis=1, kind="stable")[:, :k]
        return [Prediction(name, [(self.classes[j], float(outputs[i, j])) for j in order[i]])
                for i, name in enumerate(names)]

    def _merge(self, n: int, failures: dict[int, Failure], good: list[int], X_raw: np.ndarray,
               names: list[str], places: list[str], top_k: int) -> list[Result]:
        """The n results in input order: ``failures`` at their indices, predictions for the
        rows X_raw: (len(good), D) at indices ``good``."""
        results: list[Result | None] = [None] * n
        for i, failure in failures.items():
            results[i] = failure
        if good:
            for i, result in zip(good, self._predict_matrix(X_raw, names, places, top_k)):
                results[i] = result
        return [r for r in results if r is not None]

    def _predict_rows(self, rows: Rows, top_k: int) -> list[Result]:
        if self.encoding is None:
            X_raw, good, failures = self.table.parse(rows)
        else:
            X_raw, good, failures = self._encoded_rows(rows)
        return self._merge(len(rows.lines), failures, good, X_raw,
                           [str(rows.numbers[i]) for i in good],
                           [rows.places[i] for i in good], top_k)

    def _encoded_rows(self, rows: Rows) -> tuple[np.ndarray, list[int], dict[int, Failure]]:
        """The encoded inputs X: (M, D) of the rows that parse, their indices in ``rows``,
        and a Failure for each other row (with ``missing: error``, a row missing a value)."""
        X_raw, levels, good, failures = self.table.parse_columns(rows)
        encoding = self.encoding
        gaps = np.isnan(X_raw)
        if encoding.missing == "error" and gaps.any():
            refused = gaps.any(axis=1)
            for row in np.flatnonzero(refused).tolist():
                i, j = good[row], int(np.argmax(gaps[row]))
                failures[i] = Failure(str(rows.numbers[i]), NncliError(
                    f"{rows.places[i]}: missing value (column {encoding.names[j]}; "
                    f"data.missing is error)"))
            X_raw = X_raw[~refused]
            good = [i for i, bad in zip(good, refused.tolist()) if not bad]
        X, counts = encoding.transform(X_raw, levels, lambda row: rows.places[good[row]],
                                       in_place=True)
        self.counts.add(counts)
        return X, good, failures

    def _predict_images(self, items: list[str | Failure], top_k: int) -> list[Result]:
        failures: dict[int, Failure] = {}
        good: list[int] = []
        X_raw = np.empty((len(items), self.dim), dtype=np.float64)
        for i, item in enumerate(items):
            if isinstance(item, Failure):
                failures[i] = item
                continue
            try:
                X_raw[len(good)] = self._image_row(item)
            except NncliError as exc:
                failures[i] = Failure(item, exc)
                continue
            good.append(i)
        names = [str(items[i]) for i in good]
        return self._merge(len(items), failures, good, X_raw[:len(good)], names, names, top_k)

    def _image_row(self, item: str) -> np.ndarray:
        """The pixels (D,) of the image at path ``item``, decoded as in training."""
        from nncli.data.images import load_image

        suffix = os.path.splitext(item)[1].lower()
        what = None
        if suffix in TABLE_SUFFIXES:
            what = f"{item} is a table"
        elif suffix == ".npz":
            what = f"{item} is an .npz file (score a labelled one with nncli eval)"
        elif os.path.isdir(item) and is_array_folder(Path(item)):
            what = f"{item} is an array folder (X.npy, y.npy: score it with nncli eval)"
        elif not os.path.exists(item) and (n := numbers_in(item)):
            what = f"'{item[:60]}' is a table row of {n} values"
        if what:
            raise NncliError(f"{self.expects}; {what}")
        image = self.ckpt.config.data.image
        pixels = load_image(Path(item), image.size, image.mode)
        if pixels.shape != tuple(self.ckpt.input_shape):
            raise NncliError(f"{item}: image is {pixels.shape[1]}x{pixels.shape[0]}; "
                             f"{self.expects}")
        return pixels.reshape(-1)


# ---------------------------------------------------------------- output


def escape_cell(text: str, tsv: bool) -> str:
    """A cell that keeps its output record one record, whatever bytes a file or class name
    holds. TSV: every control character as an escape and ``\\\\`` for a backslash
    (:func:`nncli.text.tsv_cell`). CSV: as it is — :func:`csv_line` quotes it — but for the
    bytes of a file name that are not valid UTF-8, which become ``\\xNN`` in both."""
    return tsv_cell(text) if tsv else surrogates_as_bytes(text)


def csv_line(cells: Sequence[str]) -> str:
    """One CSV record (RFC 4180) without its line ending: a cell holding a comma, a quote,
    ``\\r`` or ``\\n`` is quoted (quotes doubled), so a name with a line break in it reads
    back as one field of one record with any CSV reader."""
    return ",".join(f'"{cell.replace(chr(34), chr(34) * 2)}"' if _CSV_SPECIAL.search(cell)
                    else cell for cell in cells)


_CSV_SPECIAL = re.compile(r'[,"\r\n]')


def format_prediction(pred: Prediction | ValuePrediction, fmt: str, top_k: int,
                      terminal: bool = False) -> str:
    """One output record: tsv/csv ``input, label, p[, label_2, p_2, ...]`` or a jsonl object
    (a regression model's: ``input, value`` and ``{"input", "value"}``, 6 significant
    digits in tsv/csv).

    Never more than one record per prediction: TSV escapes control characters, CSV quotes
    fields with line breaks, JSON escapes them. With ``terminal`` (stdout is one), CSV cells
    show control characters as escapes too, as ``ls`` does, so none reaches the terminal."""
    if fmt == "jsonl" and isinstance(pred, ValuePrediction):
        return json.dumps({"input": pred.input, "value": float(f"{pred.value:.6g}")})
    if fmt == "jsonl":
        label, p = pred.top[0]
        return json.dumps({"input": pred.input, "label": label, "probability": p,
                           "top": [{"label": lab, "probability": q} for lab, q in pred.top]})
    tsv = fmt == "tsv"
    shown = printable if terminal and not tsv else lambda name: escape_cell(name, tsv)
    cells = [shown(pred.input)]
    if isinstance(pred, ValuePrediction):
        cells.append(f"{pred.value:.6g}")
    else:
        for label, p in pred.top[:max(1, top_k)]:
            cells += [shown(label), f"{p:.6g}"]
    return "\t".join(cells) if tsv else csv_line(cells)
