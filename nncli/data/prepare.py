"""Preparation: a config's sources read, split, label-encoded and normalized into
:class:`~nncli.data.types.Dataset` splits in the compute dtype
(:func:`load_training_data`), and another source prepared with the training data's
classes, columns and normalization (:func:`make_dataset`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from nncli.data.columns import align_features
from nncli.data.labels import encode_labels, numeric_targets, sort_classes
from nncli.data.normalize import fit_normalization
from nncli.data.sources import read_source
from nncli.data.splits import stratified_split
from nncli.data.types import Dataset, Normalization, RawData, TrainingData
from nncli.errors import NncliError

if TYPE_CHECKING:
    from nncli.config import Config


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


def make_dataset(raw: RawData, classes: Sequence[str], norm: Normalization,
                 dtype: str, role: str, input_shape: tuple[int, ...],
                 features: Sequence[str] | None = None,
                 target: Normalization | None = None) -> Dataset:
    """Encode labels (or, with the training ``target`` normalization of a regression, scale
    the targets) and normalize features of a non-training source with training stats.

    ``raw`` is consumed: its features may be normalized in place (no second copy of them).
    """
    raw = align_features(raw, features)
    check_shape(raw, input_shape, role)
    y = encode_labels(raw.labels, classes, raw.source, raw.label_lines) if target is None \
        else scaled_targets(raw, target, dtype)
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


def load_training_data(cfg: Config, splits: Sequence[str] = ("train", "val", "test"),
                       dtype: str | None = None) -> TrainingData:
    """Read, split, label-encode and normalize the data of ``cfg``.

    Classes and normalization are learned on the training part only (after ``val_split``).
    ``splits`` limits which of val/test are read (train always is).
    """
    d = cfg.data
    dtype = dtype or cfg.train.dtype
    raw = read_source(d.train, d)
    regression = cfg.task == "regression"
    classes, y = _classes_and_labels(raw, d.train, regression)
    X = raw.X
    val: Dataset | None = None
    norm_X_val = None
    keep = held = None
    if d.val_split > 0 and d.val is None and "val" in splits:
        keep, held = stratified_split(np.zeros(len(y), np.int64) if regression else y,
                                      d.val_split, np.random.default_rng([cfg.seed, 2]))
        if held.size == 0:
            raise NncliError(f"config key 'data.val_split': {d.val_split:g} holds out no "
                             f"examples of {d.train} (a class needs 2 or more examples to lend "
                             f"one to validation)")
        norm_X_val, y_val = X[held], y[held]
        X, y = X[keep], y[keep]
    norm = fit_normalization(X, d.normalize, raw.kind == "images")
    target = fit_normalization(y[:, None], d.normalize_target, False) if regression else None
    if target is not None:
        y = target.apply(y[:, None], dtype)[:, 0]
        y_val = None if norm_X_val is None else target.apply(y_val[:, None], dtype)[:, 0]
    train = Dataset(norm.apply(X, dtype, Normalization.rows_of(raw, keep), overwrite=True), y,
                    classes, raw.source)
    del raw.X  # normalized in place above when possible: drop the only other reference
    if norm_X_val is not None:
        val = Dataset(norm.apply(norm_X_val, dtype, Normalization.rows_of(raw, held),
                                 overwrite=True), y_val,
                      classes, f"{raw.source} (val_split {d.val_split})")
    elif d.val is not None and "val" in splits:
        val = make_dataset(read_source(d.val, d), classes, norm, dtype, "val", raw.input_shape,
                           raw.features, target)
    test = None
    if d.test is not None and "test" in splits:
        test = make_dataset(read_source(d.test, d), classes, norm, dtype, "test",
                            raw.input_shape, raw.features, target)
    shift, scale = (0.0, 1.0) if target is None or target.shift is None else (
        float(target.shift[0]), float(target.scale[0]))
    return TrainingData(train=train, val=val, test=test, classes=classes,
                        input_shape=raw.input_shape, normalization=norm,
                        features=raw.features, kind=raw.kind, task=cfg.task,
                        target_shift=shift, target_scale=scale)
