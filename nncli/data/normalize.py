"""Normalization fitted on the training data: the shift and scale of
:class:`~nncli.data.types.Normalization`, which applies them."""

from __future__ import annotations

import numpy as np

from nncli.data.types import Normalization, row_blocks


def fit_normalization(X: np.ndarray, kind: str, is_image: bool) -> Normalization:
    """Learn shift and scale (D,) from training X: (N, D).

    ``scale``: /255 for images, /max|x| per column for tables; ``mean``: subtract the mean;
    ``standard``: subtract the mean, divide by the population std. A zero scale becomes 1.
    """
    if kind == "none":
        return Normalization(kind)
    with np.errstate(over="ignore", invalid="ignore"):
        shift, scale = _shift_and_scale(X, kind, is_image)
    overflowed = ~(np.isfinite(shift) & np.isfinite(scale))
    if overflowed.any():
        # Values near float64's limit (1e308) overflow the sums: redo those columns on
        # X / max|x| and scale the statistics back.
        columns = np.flatnonzero(overflowed)
        peak = np.abs(X[:, columns]).max(axis=0).astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            sub_shift, sub_scale = _shift_and_scale(X[:, columns] / peak, kind, is_image)
            shift[columns], scale[columns] = sub_shift * peak, sub_scale * peak
    scale = np.where(scale > 0, scale, 1.0)
    return Normalization(kind, shift.astype(np.float64), scale.astype(np.float64))


def _shift_and_scale(X: np.ndarray, kind: str, is_image: bool) -> tuple[np.ndarray, np.ndarray]:
    """The statistics of :func:`fit_normalization`, (D,) each, before a zero scale is 1."""
    D = X.shape[1]
    if kind == "scale":
        shift = np.zeros(D)
        scale = np.full(D, 255.0) if is_image else np.abs(X).max(axis=0).astype(np.float64)
        return shift, scale
    shift = X.mean(axis=0, dtype=np.float64)
    if kind == "mean":
        return shift, np.ones(D)
    # Population std, accumulated over row blocks so that a large uint8/float32 X is never
    # copied whole into float64.
    squares = np.zeros(D)
    for rows in row_blocks(X):
        block = X[rows].astype(np.float64)
        block -= shift
        squares += np.einsum("ij,ij->j", block, block)
    return shift, np.sqrt(squares / X.shape[0])
