"""Normalization fitted on the training data: the shift and scale of
:class:`~nncli.data.types.Normalization`, which applies them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

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
    """The statistics of :func:`fit_normalization`, (D,) each, before a zero scale is 1: the
    mean in one reduction over X, the squares over its row blocks (so that a large
    uint8/float32 X is never copied whole into float64)."""
    return _statistics(lambda: (X,), lambda: (X[rows] for rows in row_blocks(X)),
                       X.shape[0], X.shape[1], kind, is_image)


Blocks = Callable[[], Iterable[np.ndarray]]


def _statistics(blocks: Blocks, square_blocks: Blocks, n: int, D: int, kind: str,
                is_image: bool) -> tuple[np.ndarray, np.ndarray]:
    """The one home of the formulas: shift and scale (D,) of n rows given as ``blocks()``
    (row blocks whose sums make the mean) and ``square_blocks()`` (the same rows, in the
    blocks that accumulate the squares), accumulated in float64.

    ``scale``: max|x| per column (255 for images); ``mean``/``standard``: the column means;
    ``standard``'s scale the population std ``sqrt(sum((x - mean)^2) / n)``.
    """
    if kind == "scale":
        if is_image:
            return np.zeros(D), np.full(D, 255.0)
        peak = np.zeros(D)
        for block in blocks():
            np.maximum(peak, np.abs(block).max(axis=0), out=peak)
        return np.zeros(D), peak
    total = np.zeros(D)
    for block in blocks():
        total += block.sum(axis=0, dtype=np.float64)
        del block
    shift = total / n  # what X.mean(axis=0, dtype=float64) computes for one block
    if kind == "mean":
        return shift, np.ones(D)
    squares = np.zeros(D)
    for block in square_blocks():
        work = block.astype(np.float64)
        work -= shift
        squares += np.einsum("ij,ij->j", work, work)
        del block, work  # before the next block is gathered: one block's memory at a time
    return shift, np.sqrt(squares / n)


def gathered_blocks(X: np.ndarray, rows: np.ndarray | None,
                    elements: int = 1 << 22) -> Iterator[np.ndarray]:
    """The rows ``rows`` (sorted indices; None: all) of X: (N, D) in blocks of about
    ``elements`` values, each gathered into memory — the blocks :func:`row_blocks` makes
    of ``X[rows]``, without ever holding ``X[rows]`` whole (X may be a memmap)."""
    n = X.shape[0] if rows is None else len(rows)
    step = max(1, elements // max(1, X.shape[1]))
    for start in range(0, n, step):
        yield (np.asarray(X[start:start + step]) if rows is None
               else X[rows[start:start + step]])


def fit_normalization_rows(X: np.ndarray, rows: np.ndarray | None, kind: str,
                           is_image: bool, elements: int = 1 << 22) -> Normalization:
    """:func:`fit_normalization` of ``X[rows]`` (rows: sorted indices, None: all) read in
    blocks of about ``elements`` values, for an X too large to copy (a memmap).

    The same formulas (:func:`_statistics`) on the same squares' blocks: the shift and scale
    equal the in-memory ones exactly when the rows hold at most ``elements`` values (one
    block), else to float64 round-off (the mean is summed block by block).
    """
    if kind == "none":
        return Normalization(kind)
    n, D = (X.shape[0] if rows is None else len(rows)), X.shape[1]

    def blocks() -> Iterator[np.ndarray]:
        return gathered_blocks(X, rows, elements)

    with np.errstate(over="ignore", invalid="ignore"):
        shift, scale = _statistics(blocks, blocks, n, D, kind, is_image)
    overflowed = ~(np.isfinite(shift) & np.isfinite(scale))
    if overflowed.any():  # as in fit_normalization: redo those columns on X / max|x|
        columns = np.flatnonzero(overflowed)
        peak = np.zeros(len(columns))
        for block in blocks():
            np.maximum(peak, np.abs(block[:, columns]).max(axis=0), out=peak)

        def scaled() -> Iterator[np.ndarray]:
            return (block[:, columns] / peak for block in blocks())

        with np.errstate(over="ignore", invalid="ignore"):
            sub_shift, sub_scale = _statistics(scaled, scaled, n, len(columns), kind,
                                               is_image)
        shift[columns], scale[columns] = sub_shift * peak, sub_scale * peak
    scale = np.where(scale > 0, scale, 1.0)
    return Normalization(kind, shift.astype(np.float64), scale.astype(np.float64))
