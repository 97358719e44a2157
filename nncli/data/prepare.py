"""Preparation: a config's sources read, split, label-encoded, column-encoded and
normalized into :class:`~nncli.data.types.Dataset` splits in the compute dtype
(:func:`load_training_data`), and another source prepared with the training data's
classes, columns, encoding and normalization (:func:`make_dataset`).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from nncli.data.columns import align_features
from nncli.data.encoding import Encoding, warn_counts
from nncli.data.labels import encode_labels, numeric_targets, sort_classes
from nncli.data.normalize import fit_normalization, fit_normalization_rows
from nncli.data.rowview import MAPPED_BLOCK_ELEMENTS, NormalizedRows, check_values
from nncli.data.sources import read_source
from nncli.data.splits import stratified_split
from nncli.data.types import Dataset, Normalization, RawData, TrainingData, is_mapped
from nncli.errors import NncliError

if TYPE_CHECKING:
    from nncli.config import Config, DataConfig


def check_shape(raw: RawData, input_shape: tuple[int, ...], role: str) -> None:
    """Refuse examples whose shape differs from the training data's (naming both)."""
    if raw.kind == "images" and tuple(raw.input_shape) != tuple(input_shape):
        h, w = input_shape[:2]
        raise NncliError(f"{raw.source}: {role} images have shape {raw.input_shape} (H, W, C), "
                         f"the training images {input_shape} — set data.image.size: [{w}, {h}]")
    if raw.X.shape[1] != int(np.prod(input_shape)):
        raise NncliError(f"{raw.source}: {role} examples have {raw.X.shape[1]} features "
                         f"(shape {raw.input_shape}), the training data has "
                         f"{int(np.prod(input_shape))} (shape {input_shape})")


def scaled_targets(raw: RawData, target: Normalization, dtype: str) -> np.ndarray:
    """The regression targets of ``raw`` as the network learns them: (t - shift) / scale,
    (N,) in ``dtype``."""
    t = numeric_targets(raw.labels, raw.source, raw.label_lines)
    return target.apply(t[:, None], dtype)[:, 0]


def encode_table(raw: RawData, encoding: Encoding | None, role: str,
                 features: Sequence[str] | None = None) -> RawData:
    """``raw`` with its columns matched to the training columns by name and, for a model
    with an ``encoding``, its raw columns encoded: X (N, C) -> (N, D), one ``warning:``
    line for what was imputed or unseen. ``raw`` is consumed (X may be filled in place)."""
    raw = align_features(raw, encoding.names if encoding else features, role)
    if encoding is None or raw.levels is None:
        return raw
    if raw.X.shape[1] != len(encoding.columns):
        raise NncliError(f"{raw.source}: {role} examples have {raw.X.shape[1]} columns, the "
                         f"training table has {len(encoding.columns)}")
    X, counts = encoding.transform(raw.X, raw.levels, Normalization.rows_of(raw),
                                   in_place=True)
    warn_counts(raw.source, counts, encoding)
    return dataclasses.replace(raw, X=X, input_shape=(X.shape[1],), levels=None)


def reader_config(data_cfg: DataConfig, encoding: Encoding | None,
                  features: Sequence[str] | None = None) -> Any:
    """The data config that reads another table as the training table was read: the
    training columns' types (inferred ones too) as ``data.columns``. A table model without
    an encoding (trained before nncli encoded tables) reads numbers only, as it did."""
    if encoding is not None:
        return dataclasses.replace(data_cfg, columns=encoding.declared())
    if features:
        return dataclasses.replace(data_cfg, columns=dict.fromkeys(features, "number"),
                                   na_values=())
    return data_cfg


def make_dataset(raw: RawData, classes: Sequence[str], norm: Normalization,
                 dtype: str, role: str, input_shape: tuple[int, ...],
                 features: Sequence[str] | None = None,
                 encoding: Encoding | None = None,
                 target: Normalization | None = None) -> Dataset:
    """Encode labels (or, with the training ``target`` normalization of a regression, scale
    the targets) and features of a non-training source with the training statistics.

    ``raw`` is consumed: its features may be normalized in place (no second copy of them).
    """
    raw = encode_table(raw, encoding, role, features)
    check_shape(raw, input_shape, role)
    y = encode_labels(raw.labels, classes, raw.source, raw.label_lines) if target is None \
        else scaled_targets(raw, target, dtype)
    if is_mapped(raw.X):  # an array folder: checked in one pass, normalized as it is read
        check_values(raw.X, norm, dtype, raw.source)
        return Dataset(NormalizedRows(raw.X, None, norm, dtype), y, list(classes), raw.source)
    return Dataset(norm.apply(raw.X, dtype, Normalization.rows_of(raw), overwrite=True), y,
                   list(classes), raw.source)


def _classes_and_labels(raw: RawData, source: str, regression: bool
                        ) -> tuple[list[str], np.ndarray]:
    """The training classes and labels y: (N,) class indices; for regression no classes
    and the targets as numbers (float64)."""
    if regression:
        return [], numeric_targets(raw.labels, raw.source, raw.label_lines)
    classes = sort_classes(raw.labels.tolist())
    if len(classes) < 2:
        raise NncliError(f"{source}: found only one class ('{classes[0]}'); a classifier "
                         f"needs at least 2")
    return classes, encode_labels(raw.labels, classes, raw.source, raw.label_lines)


def check_columns_key(raw: RawData, d: DataConfig) -> None:
    """``data.columns`` must name columns of the training table other than the label."""
    if d.columns and raw.kind != "table":
        raise NncliError(f"config key 'data.columns': {d.train} is no table (data.columns "
                         f"types a table's columns)")
    header = [*(raw.features or []), *(raw.ignored or [])]
    for name in d.columns:
        if name == d.label_column:
            raise NncliError(f"config key 'data.columns.{name}': '{name}' is the label "
                             f"column (data.label_column); data.columns types the features")
        if name not in header:
            close = difflib.get_close_matches(name, header, n=1)
            hint = f" — did you mean '{close[0]}'?" if close else ""
            raise NncliError(f"config key 'data.columns.{name}': no column '{name}' in "
                             f"{d.train}{hint} (columns: {', '.join(header[:12])}"
                             f"{', ...' if len(header) > 12 else ''})")


def _hold_out(y: np.ndarray, fraction: float, rng: np.random.Generator, what: str,
              source: str) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (keep, held) indices of y: (N,), holding out at least one example."""
    keep, held = stratified_split(y, fraction, rng)
    if held.size == 0:
        raise NncliError(f"config key 'data.{what}': {fraction:g} holds out no examples of "
                         f"{source} (a class needs 2 or more examples to lend one to "
                         f"{'validation' if what == 'val_split' else 'the test set'})")
    return keep, held


def _split_rows(cfg: Config, y: np.ndarray, splits: Sequence[str]
                ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """(train, val, test) row indices of the training source (None: all rows / none):
    ``test_split`` is held out first (stratified), then ``val_split`` of the rest."""
    d = cfg.data
    if d.test_split > 0 and d.test is not None:
        raise NncliError("config keys 'data.test' and 'data.test_split': give one test set "
                         "(a file, or a fraction of data.train), not both")
    rows = test = val = None
    if d.test_split > 0 and "test" in splits:
        rows, test = _hold_out(y, d.test_split, np.random.default_rng([cfg.seed, 4]),
                               "test_split", d.train)
    if d.val_split > 0 and d.val is None and "val" in splits:
        y_rest = y if rows is None else y[rows]
        keep, held = _hold_out(y_rest, d.val_split, np.random.default_rng([cfg.seed, 2]),
                               "val_split", d.train)
        rows, val = (keep, held) if rows is None else (rows[keep], rows[held])
    return rows, val, test


def _held_part(raw: RawData, y: np.ndarray, rows: np.ndarray | None, norm: Normalization,
               dtype: str, classes: list[str], what: str) -> Dataset | None:
    """The rows ``rows`` of the training source (encoded, not yet normalized) as the
    held-out split ``what`` (e.g. ``val_split 0.2``); None without rows."""
    if rows is None:
        return None
    return Dataset(norm.apply(raw.X[rows], dtype, Normalization.rows_of(raw, rows),
                              overwrite=True), y[rows], classes, f"{raw.source} ({what})")


Parts = tuple[Normalization, Dataset, "Dataset | None", "Dataset | None"]
Rows = tuple["np.ndarray | None", "np.ndarray | None", "np.ndarray | None"]


def _in_memory_parts(raw: RawData, y: np.ndarray, rows: Rows, d: DataConfig, dtype: str,
                     classes: list[str], encoding: Encoding | None) -> Parts:
    """The normalization fitted on the training rows of ``raw`` and the train, val and test
    splits of rows ``rows`` (train, val, test; see :func:`_split_rows`), normalized in
    memory (in place where possible)."""
    keep, held, tested = rows
    X = raw.X if keep is None else raw.X[keep]
    norm = fit_normalization(X, d.normalize, raw.kind == "images")
    if encoding is not None:
        norm = encoding.one_hot_unscaled(norm)
    train = Dataset(norm.apply(X, dtype, Normalization.rows_of(raw, keep), overwrite=True),
                    y if keep is None else y[keep], classes, raw.source)
    del X
    val = _held_part(raw, y, held, norm, dtype, classes, f"val_split {d.val_split}")
    test = _held_part(raw, y, tested, norm, dtype, classes, f"test_split {d.test_split}")
    return norm, train, val, test


def _mapped_parts(raw: RawData, y: np.ndarray, rows: Rows, d: DataConfig, dtype: str,
                  classes: list[str], encoding: Encoding | None) -> Parts:
    """As :func:`_in_memory_parts` for a memory-mapped X (an array folder): the statistics
    computed in blocks over the training rows, every row's values checked in one pass, and
    each split a :class:`~nncli.data.rowview.NormalizedRows` view that normalizes the rows
    it reads (index arrays into the file, sorted, so that gathers stay local)."""
    keep, held, tested = rows
    norm = fit_normalization_rows(raw.X, keep, d.normalize, False, MAPPED_BLOCK_ELEMENTS)
    check_values(raw.X, norm, dtype, raw.source)
    view = NormalizedRows(raw.X, keep, norm, dtype)
    train = Dataset(view, y if keep is None else y[keep], classes, raw.source, view.order)
    held_parts = [None if part is None else
                  Dataset(NormalizedRows(raw.X, part, norm, dtype), y[part], classes,
                          f"{raw.source} ({what})")
                  for part, what in ((held, f"val_split {d.val_split}"),
                                     (tested, f"test_split {d.test_split}"))]
    return norm, train, held_parts[0], held_parts[1]


def load_training_data(cfg: Config, splits: Sequence[str] = ("train", "val", "test"),
                       dtype: str | None = None) -> TrainingData:
    """Read, split, label-encode, column-encode and normalize the data of ``cfg``.

    Classes, the table's encoding and the normalization are learned on the training part
    only (after ``test_split`` and ``val_split``). ``splits`` limits which of val/test are
    read (train always is).
    """
    d = cfg.data
    dtype = dtype or cfg.train.dtype
    raw = read_source(d.train, d)
    check_columns_key(raw, d)
    regression = cfg.task == "regression"
    classes, y = _classes_and_labels(raw, d.train, regression)
    # a regression's hold-outs are plain random ones (one stratum)
    keep, held, tested = _split_rows(cfg, np.zeros(len(y), np.int64) if regression else y,
                                     splits)
    encoding = None
    if raw.levels is not None:
        train_X = raw.X if keep is None else raw.X[keep]
        encoding = Encoding.fit(train_X, raw.levels, raw.features or [], raw.ignored or [],
                                d.missing, raw.source)
        del train_X
        raw = encode_table(raw, encoding, "train")
    target = None
    if regression:  # fit on the training part, applied to every part
        target = fit_normalization((y if keep is None else y[keep])[:, None],
                                   d.normalize_target, False)
        y = target.apply(y[:, None], dtype)[:, 0]
    parts = _mapped_parts if is_mapped(raw.X) else _in_memory_parts
    norm, train, val, test = parts(raw, y, (keep, held, tested), d, dtype, classes, encoding)
    del raw.X  # normalized in place when possible: drop the only other reference
    input_shape = raw.input_shape
    if val is None and d.val is not None and "val" in splits:
        val = make_dataset(read_source(d.val, reader_config(d, encoding)), classes, norm,
                           dtype, "val", input_shape, raw.features, encoding, target)
    if test is None and d.test is not None and "test" in splits:
        test = make_dataset(read_source(d.test, reader_config(d, encoding)), classes, norm,
                            dtype, "test", input_shape, raw.features, encoding, target)
    shift, scale = (0.0, 1.0) if target is None or target.shift is None else (
        float(target.shift[0]), float(target.scale[0]))
    return TrainingData(train=train, val=val, test=test, classes=classes,
                        input_shape=input_shape, normalization=norm,
                        features=raw.features, kind=raw.kind, task=cfg.task,
                        target_shift=shift, target_scale=scale, encoding=encoding)
