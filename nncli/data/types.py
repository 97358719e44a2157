"""The data nouns every room shares: what a source holds (:class:`RawData`), the
normalization learned on the training data (:class:`Normalization`, stored in checkpoints),
and the labelled splits ready for the network (:class:`Dataset`, :class:`TrainingData`).

Imports nothing of nncli but the error type, so that readers, preparation, training and the
checkpoint can all stand on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from nncli.errors import NncliError

if TYPE_CHECKING:
    from nncli.data.encoding import Encoding


@dataclass
class RawData:
    """What a source holds: ``X: (N, D)`` features and ``labels: (N,)`` as strings."""

    X: np.ndarray
    labels: np.ndarray
    input_shape: tuple[int, ...]
    source: str
    kind: str
    features: list[str] | None = None  # table column names, in order
    label_lines: np.ndarray | None = None  # for tables: file line number of each row
    # For tables: each feature column's category texts in code order (None: a number
    # column), and the columns data.columns ignores that the file holds.
    levels: list[list[str] | None] | None = None
    ignored: list[str] | None = None


def row_blocks(X: np.ndarray, elements: int = 1 << 22) -> Iterator[slice]:
    """Slices of X's rows, each block ~``elements`` values, so that a pass over a large
    X: (N, D) never makes a full-size temporary."""
    step = max(1, elements // max(1, X.shape[1]))
    for start in range(0, X.shape[0], step):
        yield slice(start, start + step)


@dataclass
class Normalization:
    """``x_net = (x - shift) / scale``, learned on the training data. shift, scale: (D,)."""

    kind: str
    shift: np.ndarray | None = None
    scale: np.ndarray | None = None

    def apply(self, X: np.ndarray, dtype: str | np.dtype,
              where: Callable[[int], str] | None = None, overwrite: bool = False) -> np.ndarray:
        """Normalize X: (N, D) into an array of ``dtype``, in row chunks to bound memory.

        With ``overwrite`` and X already of ``dtype`` (and writeable), X itself is normalized
        in place instead of copied — the caller no longer needs the raw values, and a
        60,000 x 784 training set then costs its size once, not twice.
        A value that does not fit ``dtype`` after normalization (beyond float32's ~3.4e38 or
        float64's ~1.8e308) is an error naming the example (``where(i)`` describes row i,
        default ``example i+1``), the feature and the value; NumPy's overflow warnings are
        not raised as such.
        """
        in_place = (overwrite and X.dtype == np.dtype(dtype) and X.flags.writeable
                    and X.flags.c_contiguous)
        if in_place and self.shift is None:
            return X
        out = X if in_place else np.empty(X.shape, dtype=dtype)
        for rows in row_blocks(X):
            block = X[rows].astype(np.float64)
            with np.errstate(over="ignore", invalid="ignore"):
                if self.shift is not None:
                    block -= self.shift
                    block /= self.scale
                out[rows] = block
            finite = np.isfinite(out[rows])
            if not finite.all():
                row, column = (int(i) for i in np.argwhere(~finite)[0])
                self._out_of_range(X, rows.start + row, column, dtype, where)
        return out

    def _out_of_range(self, X: np.ndarray, row: int, column: int, dtype: str | np.dtype,
                      where: Callable[[int], str] | None) -> None:
        """Raise the error for X[row, column], which does not fit ``dtype`` once normalized
        (X itself may already be overwritten in place: then the value is not quoted)."""
        place = where(row) if where else f"example {row + 1}"
        dtype = np.dtype(dtype)
        value = X[row, column]
        quoted = f" {float(value):.6g}" if np.isfinite(value) and abs(value) > 1 else ""
        how = "once normalized as (x - shift) / scale" if self.shift is not None else "as is"
        limit = f"{float(np.finfo(dtype).max):.2g}" if dtype.kind == "f" else "its range"
        advice = ("rescale the data" if dtype == np.float64 else
                  "train with train.dtype: float64, or rescale the data")
        raise NncliError(f"{place}: feature {column + 1}: the value{quoted} does not fit "
                         f"{dtype} {how} ({dtype} ends near {limit}; {advice})")

    @staticmethod
    def rows_of(raw: RawData, index: np.ndarray | None = None) -> Callable[[int], str]:
        """``where`` for :meth:`apply` on ``raw.X`` (or its rows ``index``): file and line
        for tables, file and example number otherwise."""
        if raw.label_lines is not None:
            lines = raw.label_lines if index is None else raw.label_lines[index]
            return lambda i: f"{raw.source}: line {int(lines[i])}"
        numbers = np.arange(len(raw.X)) if index is None else index
        return lambda i: f"{raw.source}: example {int(numbers[i]) + 1}"


def is_mapped(X: object) -> bool:
    """Whether X is a memory-mapped array (an array folder's X.npy), whose rows are read
    batch by batch rather than copied whole."""
    return isinstance(X, np.memmap)


@dataclass
class Dataset:
    """A labelled split ready for the network. X: (N, D) normalized, y: (N,) class indices
    (or, for regression, the normalized targets).

    X is an array, or for an array folder a :class:`~nncli.data.rowview.NormalizedRows`
    (the same interface for training and scoring: ``shape``, ``dtype``, ``take``,
    slices), normalized as rows are read. ``order(rng) -> (N,)`` is the order of an
    epoch's examples; None: ``rng.permutation(N)``.
    """

    X: np.ndarray
    y: np.ndarray
    classes: list[str]
    source: str
    order: Callable[[np.random.Generator], np.ndarray] | None = None


@dataclass
class TrainingData:
    """Everything a run learns from its data (all but ``train`` may be None)."""

    train: Dataset
    val: Dataset | None
    test: Dataset | None
    classes: list[str]
    input_shape: tuple[int, ...]
    normalization: Normalization
    features: list[str] | None = None
    kind: str = "table"
    extra: dict[str, object] = field(default_factory=dict)
    # task: regression: y holds the targets as (t - target_shift) / target_scale
    task: str = "classification"
    target_shift: float = 0.0
    target_scale: float = 1.0
    encoding: Encoding | None = None  # a table's columns -> the network's inputs
