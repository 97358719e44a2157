"""A table column's cells as text: missing-value markers (``data.na_values``), numbers and
text, decided once per distinct value (:class:`ColumnCells`), never once per row.

The one home of what a cell is, for the training reader (:mod:`nncli.data.tables`), and
for eval's and predict's rows (:mod:`nncli.data.encoding`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

# SPEC's data.na_values default: the markers pandas, R and spreadsheets write for a gap.
DEFAULT_NA_VALUES = ("", "NA", "N/A", "NaN", "nan", "null", "None", "?")

# What a distinct cell is.
MISSING = 0  # one of data.na_values
NUMBER = 1  # float() parses it to a finite number
TEXT = 2  # anything else (or any non-missing cell of a column read as category)
BLANK = 3  # empty, while "" is not among data.na_values
NONFINITE = 4  # inf, or nan while "nan" is no missing marker


def na_set(na_values: Iterable[str] | None) -> frozenset[str]:
    """The missing markers as a set of stripped texts (None: :data:`DEFAULT_NA_VALUES`)."""
    return frozenset(str(v).strip() for v in (DEFAULT_NA_VALUES if na_values is None
                                               else na_values))


def _kind(text: str, na: frozenset[str], as_text: bool) -> tuple[int, float]:
    if text in na:
        return MISSING, math.nan
    if not text:
        return BLANK, math.nan
    if as_text:
        return TEXT, math.nan
    try:
        value = float(text)
    except ValueError:
        return TEXT, math.nan
    return (NUMBER, value) if math.isfinite(value) else (NONFINITE, math.nan)


@dataclass
class ColumnCells:
    """The R stripped cells of one column by distinct value: ``values: (U,)`` the distinct
    texts (in order of first appearance), ``inverse: (R,)`` each cell's index into them,
    ``kinds: (U,)`` what
    each is (:data:`MISSING` ... :data:`NONFINITE`), ``numbers: (U,)`` float64 (NaN but
    for :data:`NUMBER`)."""

    values: np.ndarray
    inverse: np.ndarray
    kinds: np.ndarray
    numbers: np.ndarray

    @classmethod
    def of(cls, cells: np.ndarray, na: frozenset[str], as_text: bool = False) -> ColumnCells:
        """Classify ``cells: (R,)`` (``str``, object or ``<U`` array), each stripped of
        surrounding whitespace (once per distinct text: two spellings of one value may then
        share a text). With ``as_text`` (a ``category`` column) every non-missing cell is
        text, "3" too."""
        # a dict, not np.unique: sorting object arrays of str costs several times more
        index: dict[str, int] = {}
        inverse = np.fromiter((index.setdefault(t, len(index)) for t in cells.tolist()),
                              dtype=np.int64, count=len(cells))
        values = np.empty(len(index), dtype=object)
        values[:] = [text.strip() for text in index]
        kinds = np.empty(len(values), dtype=np.int8)
        numbers = np.empty(len(values), dtype=np.float64)
        for u, text in enumerate(values.tolist()):
            kinds[u], numbers[u] = _kind(text, na, as_text)
        return cls(values, inverse, kinds, numbers)

    def cell_kinds(self) -> np.ndarray:
        """The kind of each cell, (R,)."""
        return self.kinds[self.inverse]

    def first(self, *kinds: int) -> int | None:
        """The index of the first cell of one of ``kinds``, or None."""
        hits = np.flatnonzero(np.isin(self.cell_kinds(), kinds))
        return int(hits[0]) if hits.size else None

    def text(self, row: int) -> str:
        """Cell ``row``'s text."""
        return str(self.values[self.inverse[row]])

    def row_numbers(self) -> np.ndarray:
        """Each cell's number, (R,) float64: NaN where the cell is not a number."""
        return self.numbers[self.inverse]

    def missing(self) -> np.ndarray:
        """Which cells are missing, (R,) bool."""
        return self.cell_kinds() == MISSING


def cell_problem(kind: int, text: str) -> str:
    """Why a cell of ``kind`` is no value of a number column (a BLANK, TEXT or NONFINITE
    cell), in the words the reader has always used."""
    if kind == BLANK:
        return "missing value"
    if kind == NONFINITE:
        return f"non-finite value {text!r}"
    return f"not a number: {text[:40]!r}"


def raw_columns(cells: np.ndarray, types: list[str], na: frozenset[str]
                ) -> tuple[np.ndarray, list[list[str] | None], dict[int, tuple[int, str]]]:
    """Rows of stripped cells ``(R, C)`` (object) of columns of known ``types`` (number |
    category) as the readers give them: ``X: (R, C)`` float64 (numbers; a category
    column's codes into ``levels[j]``; NaN where missing), and the rows that hold a cell no
    column of its type takes: row -> (column, why), the leftmost such cell."""
    X = np.empty(cells.shape, dtype=np.float64)
    levels: list[list[str] | None] = []
    problems: dict[int, tuple[int, str]] = {}
    for j, kind in enumerate(types):
        col = ColumnCells.of(cells[:, j], na, as_text=kind == "category")
        if kind == "category":
            codes = col.inverse.astype(np.float64)
            codes[col.missing()] = np.nan
            X[:, j] = codes
            levels.append(col.values.tolist())
        else:
            X[:, j] = col.row_numbers()
            levels.append(None)
        kinds = col.cell_kinds()
        for row in np.flatnonzero((kinds != MISSING) & (kinds != (
                TEXT if kind == "category" else NUMBER))).tolist():
            problems.setdefault(row, (j, cell_problem(int(kinds[row]), col.text(row))))
    return X, levels, problems
