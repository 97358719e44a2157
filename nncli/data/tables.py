"""Delimited text tables: the reader (:func:`load_table`) and its streaming parser.

Memory grows with the data present, never with ``rows x columns`` string objects: the rows
are read in chunks of about :data:`CHUNK_CELLS` cells (and at most :data:`CHUNK_CHARS`
characters) straight into a preallocated float64 ``X: (N, D)``; the labels, and the texts
of a category column, are kept as one ``str`` per distinct value. Each chunk takes one of
two paths:

- fast: a chunk of numbers only (no category column yet), with no quote character, no
  control character NumPy would read as blank, no line longer than :data:`FIELD_LIMIT`
  and no label that is missing, is parsed by ``np.loadtxt(dtype=float64)`` (C speed, no
  strings made) after a per-line field count;
- exact: anything else, and any chunk the fast path rejects, is read with ``csv.reader``
  and each column typed at once (:class:`nncli.data.cells.ColumnCells`: missing-value
  markers, numbers, text, decided per distinct value); its first bad cell gives the error
  (line, column, what is wrong) in file order.

A column's type is declared (``data.columns``) or taken from its first value; a later
value of the other kind is the mixed-column error. Both paths give the same numbers
(``float()``'s correctly rounded parse). A ``KeyboardInterrupt`` between or inside chunks
propagates: nothing here catches it.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

from nncli.data.cells import (
    BLANK,
    NONFINITE,
    NUMBER,
    TEXT,
    ColumnCells,
    cell_problem,
    na_set,
)
from nncli.data.columns import label_column_index
from nncli.data.labels import canonical_label
from nncli.data.types import RawData
from nncli.errors import NncliError

CHUNK_CELLS = 1 << 18  # ~2 MB of float64 per chunk
CHUNK_CHARS = 1 << 22  # and at most ~4 M characters of text
FIELD_LIMIT = 131_072  # csv's default field_size_limit, kept as a documented bound
FIXED_WIDTH_WASTE = 8  # a "<U" label array may cost this many times an object array

ROW_INDEX_NAMES = ("", "Unnamed: 0")  # what pandas' to_csv names a saved row index

log = logging.getLogger("nncli")

# Control characters ``np.loadtxt`` treats as blank but ``float()`` refuses, and NUL.
_FAST_UNSAFE = re.compile(r'["\x00\x1c-\x1f]')


@dataclass
class TableRows:
    """The parsed body of a table: ``X: (N, D)`` float64 features in file column order
    (label and ignored columns left out; NaN where missing; a category column's codes),
    ``labels: (N,)`` canonical class names, ``lines: (N,)`` the file line of each row (the
    last line of a row that spans several), ``levels[j]`` category column j's texts in code
    order (None for a number column)."""

    X: np.ndarray
    labels: np.ndarray
    lines: np.ndarray
    levels: list[list[str] | None]


class TableFile:
    """An open UTF-8 table: :attr:`header` (stripped names), then :meth:`read_rows` once.

    Use as a context manager. Errors name the file; an undecodable byte anywhere is
    ``not a UTF-8 text table``.
    """

    def __init__(self, path: Path, delimiter: str) -> None:
        self.path, self.delimiter = path, delimiter
        with ExitStack() as on_error:  # closes the file unless the header was read
            self._handle = path.open(newline="", encoding="utf-8-sig")  # Excel's BOM is fine
            on_error.callback(self._handle.close)
            reader = csv.reader(self._handle, delimiter=delimiter)
            with _TableErrors(path, lambda: 1):
                row = next(reader, None)
            on_error.pop_all()
        self.header: list[str] | None = None if row is None else [h.strip() for h in row]
        self.next_line = reader.line_num + 1  # file line number of the next unread line

    def __enter__(self) -> TableFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def _capacity(self, n_columns: int) -> int:
        """Rows that can follow the header, from the file's size and line count: every
        row has ``n_columns - 1`` delimiters and a character per field at least."""
        try:
            info = os.fstat(self._handle.fileno())
        except (OSError, io.UnsupportedOperation):
            return 1024
        if not stat.S_ISREG(info.st_mode):
            return 1024  # and grow: a pipe cannot be read twice
        newlines = 0
        with self.path.open("rb") as raw:
            for block in iter(lambda: raw.read(1 << 20), b""):
                newlines += block.count(b"\n") + block.count(b"\r")
        return max(1, min(newlines + 1, info.st_size // (2 * n_columns - 1) + 1))

    def read_rows(self, label_index: int, canonical: Callable[[str], str],
                  spec: ColumnTypes) -> TableRows:
        """Parse every row after the header. ``canonical(text)`` maps a stripped label
        cell to its class name (called once per distinct cell); ``spec`` says how each
        column is read."""
        n_columns = len(self.header)
        state = _Parse(self, label_index, n_columns, self._capacity(n_columns), canonical,
                       spec)
        for lines, first_line in self._chunks(n_columns):
            state.chunk(lines, first_line)
        return state.finish(self.header[label_index])

    def _chunks(self, n_columns: int) -> Iterator[tuple[list[str], int]]:
        """Lists of raw lines (each ≤ CHUNK_CELLS cells and ~CHUNK_CHARS characters) and
        the file line number of each list's first line."""
        max_rows = max(1, CHUNK_CELLS // n_columns)
        handle = self._handle
        with _TableErrors(self.path, lambda: self.next_line):
            while True:
                lines: list[str] = []
                chars = 0
                for line in handle:
                    lines.append(line)
                    chars += len(line)
                    if len(lines) >= max_rows or chars >= CHUNK_CHARS:
                        break
                if not lines:
                    return
                first = self.next_line
                self.next_line += len(lines)
                yield lines, first


class _TableErrors:
    """Turns decoding and csv errors inside a ``with`` into one NncliError naming the
    file (and the line ``line()`` for csv's)."""

    def __init__(self, path: Path, line: Callable[[], int]) -> None:
        self.path, self.line = path, line

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> bool:
        if kind is not None and issubclass(kind, UnicodeDecodeError):
            raise NncliError(f"{self.path}: not a UTF-8 text table") from None
        if kind is not None and issubclass(kind, csv.Error):
            raise _csv_error(self.path, self.line(), exc) from None
        return False


def _csv_error(path: Path, line: int, exc: BaseException | None) -> NncliError:
    if "field larger than field limit" in str(exc):
        return NncliError(f"{path}: line {line}: a field is longer than {FIELD_LIMIT:,} "
                          f"characters (a table cell is a number or a label; an unclosed "
                          f"'\"' makes the rest of the file one field)")
    return NncliError(f"{path}: line {line}: {exc}")


def _is_blank(row: list[str]) -> bool:
    """csv's view of a line to skip: no field, or one field of whitespace."""
    return not row or (len(row) == 1 and not row[0].strip())


def field_count_error(path: Path, line: int, row: list[str],
                      n_columns: int) -> NncliError | None:
    """The error of a csv row with another number of fields than the header, or None."""
    if len(row) != n_columns:
        return NncliError(f"{path}: line {line}: expected {n_columns} fields like the "
                          f"header, got {len(row)}")
    return None


@dataclass
class ColumnTypes:
    """How the reader takes each column: ``types[i]`` the ``data.columns`` type of file
    column i (``number``, ``category``, ``ignore``; None: inferred) and ``na`` the
    missing-value markers."""

    types: list[str | None]
    na: frozenset[str]


class _Parse:
    """The growing result of :meth:`TableFile.read_rows`: X, label codes, lines, and each
    feature column's type (inferred from its first value unless declared) and categories.

    X holds a number column's values (NaN where missing) and a category column's codes into
    :attr:`levels` (NaN where missing); the label column and ignored columns are left out.
    """

    def __init__(self, table: TableFile, label_index: int, n_columns: int, capacity: int,
                 canonical: Callable[[str], str], spec: ColumnTypes) -> None:
        self.table, self.path, self.delim = table, table.path, table.delimiter
        self.label_index, self.n_columns, self.na = label_index, n_columns, spec.na
        # markers that read as numbers (-999): a chunk holding their value is read exactly
        self.na_numbers = np.array([float(v) for v in spec.na if ColumnCells.of(
            np.array([v], dtype=object), frozenset()).kinds[0] == NUMBER])
        self.features = [i for i in range(n_columns)
                         if i != label_index and spec.types[i] != "ignore"]
        self.declared = [spec.types[i] for i in self.features]
        self.kinds: list[str | None] = list(self.declared)  # number | category | None
        # (line, text or number) of a column's first value, for the mixed-column error: by
        # column when the exact path typed it, else the fast path's first row (line, (D,))
        self.first_seen: dict[int, tuple[int, str | float]] = {}
        self.first_row: tuple[int, np.ndarray] | None = None
        self.levels: dict[int, dict[str, int]] = {}  # category column j: text -> code
        self.X = np.empty((capacity, len(self.features)), dtype=np.float64)
        self.lines = np.empty(capacity, dtype=np.int64)
        self.codes = np.empty(capacity, dtype=np.int64)  # index into self.names
        self.names: list[str] = []
        self._code: dict[str, int] = {}  # stripped label cell -> index into names
        self.canonical = canonical
        self.n = 0
        self.dropped, self.first_dropped = 0, 0  # rows without a label, and the first's line

    def _reserve(self, rows: int) -> None:
        """Room for ``rows`` more rows (the capacity bound is only ever exceeded by a
        file that changed while read, or a non-regular one)."""
        need = self.n + rows
        if need > len(self.X):
            size = max(need, 2 * len(self.X))
            self.X.resize((size, self.X.shape[1]), refcheck=False)
            self.lines.resize(size, refcheck=False)
            self.codes.resize(size, refcheck=False)

    def _label_code(self, cell: str) -> int:
        text = cell.strip()
        code = self._code.get(text)
        if code is None:
            code = self._code[text] = len(self.names)
            self.names.append(self.canonical(text))
        return code

    def chunk(self, lines: list[str], first_line: int) -> None:
        """Parse one chunk: the fast path when it applies and succeeds, else exactly."""
        if "category" in self.kinds or not self._fast(lines, first_line):
            self._exact(lines, first_line)

    def _fast(self, lines: list[str], first_line: int) -> bool:
        """np.loadtxt on a plain chunk of numbers; False (nothing stored) when it does not
        apply or something in the chunk is not a number — the exact path then reads it."""
        delim = self.delim
        if (_FAST_UNSAFE.search("".join(lines)) is not None
                or max(map(len, lines)) > FIELD_LIMIT):
            return False
        keep = [i for i, line in enumerate(lines) if delim in line or not line.isspace()]
        if len(keep) != len(lines):
            lines = [lines[i] for i in keep]
        if not lines:
            return True
        if any(line.count(delim) != self.n_columns - 1 for line in lines):
            return False
        if self.label_index == self.n_columns - 1:
            cells = [line.rpartition(delim)[2] for line in lines]
        elif self.label_index == 0:
            cells = [line.partition(delim)[0] for line in lines]
        else:
            at = self.label_index
            cells = [line.split(delim, at + 1)[at] for line in lines]
        na = self.na
        if not all((text := cell.strip()) and text not in na for cell in cells):
            return False
        try:
            block = np.loadtxt(lines, delimiter=delim, dtype=np.float64, ndmin=2,
                               usecols=self.features, comments=None, quotechar=None)
        except ValueError:
            return False
        if block.shape != (len(lines), len(self.features)) or not np.isfinite(block).all():
            return False
        if self.na_numbers.size and np.isin(block, self.na_numbers).any():
            return False
        self._reserve(len(lines))
        rows = slice(self.n, self.n + len(lines))
        self.X[rows] = block
        self.lines[rows] = np.asarray(keep) + first_line
        self.codes[rows] = [self._label_code(cell) for cell in cells]
        self.n += len(lines)
        if None in self.kinds:
            self.kinds = ["number" if kind is None else kind for kind in self.kinds]
            self.first_row = (keep[0] + first_line, block[0].copy())
        return True

    def _exact(self, lines: list[str], first_line: int) -> None:
        """csv.reader over the chunk's lines, continuing into the file for a quoted row
        that spans the chunk's end, then each column at once (:meth:`_store`); raises the
        first bad row's error in file order."""
        table, path = self.table, self.path
        consumed = 0
        rest = table._handle

        def source() -> Iterator[str]:
            nonlocal consumed
            for line in chain(lines, rest):
                consumed += 1
                yield line

        reader = csv.reader(source(), delimiter=self.delim)
        start = 0  # lines consumed before the current row
        rows: list[list[str]] = []
        row_lines: list[int] = []
        problem = None
        while consumed < len(lines):
            with _TableErrors(path, lambda at=first_line + start: at):
                row = next(reader, None)
            if row is None:
                break
            line = first_line + consumed - 1
            start = consumed
            if _is_blank(row):
                continue
            problem = field_count_error(path, line, row, self.n_columns)
            if problem is not None:
                break  # rows before it may hold an earlier error: _store says which
            rows.append(row)
            row_lines.append(line)
        if rows:
            self._store(rows, np.asarray(row_lines, dtype=np.int64))
        if problem is not None:
            raise problem
        table.next_line = first_line + consumed

    def _store(self, rows: list[list[str]], lines: np.ndarray) -> None:
        """Rows of cells (each ``n_columns`` long) at file ``lines``: rows without a label
        dropped (counted), each feature column typed and converted at once."""
        cells = np.empty((len(rows), self.n_columns), dtype=object)
        cells[:] = rows
        na = self.na
        labels = [cell.strip() for cell in cells[:, self.label_index].tolist()]
        if "" not in na and not all(labels):  # blank, and blank is no missing marker
            raise NncliError(f"{self.path}: line {int(lines[labels.index('')])}: "
                             f"missing label")
        labelled = np.array([bool(t) and t not in na for t in labels])
        if not labelled.all():
            if not self.dropped:
                self.first_dropped = int(lines[np.argmin(labelled)])
            self.dropped += int((~labelled).sum())
            cells, lines = cells[labelled], lines[labelled]
        if not len(lines):
            return
        values = np.empty((len(lines), len(self.features)), dtype=np.float64)
        errors = []
        for j, column in enumerate(self.features):
            col = ColumnCells.of(cells[:, column], na, self.declared[j] == "category")
            error = self._column(j, col, lines, values[:, j])
            if error is not None:
                errors.append(error)
        if errors:
            raise min(errors, key=lambda e: e[0])[1]
        self._reserve(len(lines))
        rows_at = slice(self.n, self.n + len(lines))
        self.X[rows_at] = values
        self.lines[rows_at] = lines
        self.codes[rows_at] = [self._label_code(t) for t in cells[:, self.label_index]]
        self.n += len(lines)

    def _column(self, j: int, col: ColumnCells, lines: np.ndarray, out: np.ndarray
                ) -> tuple[tuple[int, int], NncliError] | None:
        """Feature ``j``'s cells into ``out: (R,)`` (numbers, or codes into its levels;
        NaN where missing); returns the first bad cell's ((row, j), error), or None."""
        kind = self.kinds[j]
        if kind is None and (first := col.first(NUMBER, TEXT)) is not None:
            kind = self.kinds[j] = "number" if col.cell_kinds()[first] == NUMBER else "category"
            self.first_seen[j] = (int(lines[first]), col.text(first))
        other = TEXT if kind == "number" else NUMBER
        found = [row for row in (col.first(BLANK, NONFINITE), col.first(other))
                 if row is not None]
        if found:
            row = min(found)
            return (row, j), self._cell_error(j, col, row, int(lines[row]))
        if kind == "category":
            level = self.levels.setdefault(j, {})
            codes = np.array([float(level.setdefault(text, len(level))) if k == TEXT
                              else np.nan for text, k in zip(col.values.tolist(), col.kinds)])
            out[:] = codes[col.inverse]
        else:
            out[:] = col.row_numbers()
        return None

    def _cell_error(self, j: int, col: ColumnCells, row: int, line: int) -> NncliError:
        """The error for feature ``j``'s cell ``row`` (at file ``line``)."""
        kind, text = int(col.cell_kinds()[row]), col.text(row)
        column = self.features[j] + 1
        where = f"line {line}, column {column}: "
        name = self.table.header[self.features[j]]
        if kind in (BLANK, NONFINITE) or self.declared[j] is not None:
            hint = (f" (column '{name}' holds numbers; add the text to data.na_values if "
                    f"it marks a missing value)" if kind == TEXT else "")
            return NncliError(f"{self.path}: {where}{cell_problem(kind, text)}{hint}")
        if j in self.first_seen:
            seen_line, seen = self.first_seen[j]
        else:
            seen_line, seen = self.first_row[0], float(self.first_row[1][j])
        if kind == TEXT:
            return NncliError(
                f"{self.path}: line {line}: feature column '{name}' holds numbers (line "
                f"{seen_line}: {seen if isinstance(seen, str) else format(seen, 'g')}) and "
                f"text — set data.columns: {{{name}: category}} to read it as categories, "
                f"or add the text to data.na_values if it marks a missing value; "
                f"{where}{cell_problem(kind, text)}")
        return NncliError(
            f"{self.path}: line {line}: feature column '{name}' holds text (line {seen_line}: "
            f"{str(seen)[:40]!r}) and numbers — set data.columns: {{{name}: category}} to read "
            f"the numbers as categories too; {where}a number among text: {text[:40]!r}")

    def finish(self, label_column: str) -> TableRows:
        """Shrink to the rows read (in place), build the label array, and warn about rows
        dropped for a missing label."""
        n = self.n
        if self.dropped:
            log.warning("%s: dropped %d row(s) whose label '%s' is missing (first at line %d)",
                        self.path, self.dropped, label_column, self.first_dropped)
        if n == 0:
            raise NncliError(f"{self.path}: the table has a header but no rows"
                             + (" with a label" if self.dropped else ""))
        self.X.resize((n, self.X.shape[1]), refcheck=False)
        self.lines.resize(n, refcheck=False)
        codes = self.codes[:n]
        levels = [list(self.levels.get(j, ())) if kind == "category" else None
                  for j, kind in enumerate(self.kinds)]
        return TableRows(X=self.X, labels=label_array(self.names, codes), lines=self.lines,
                         levels=levels)


def label_array(names: list[str], codes: np.ndarray) -> np.ndarray:
    """``labels: (N,)`` = ``names[codes]``: a fixed-width ``<U`` array as usual, but an
    object array sharing the ``str`` of each name when ``<U`` would cost more than
    :data:`FIXED_WIDTH_WASTE` times that and over 1 MiB (one 100,000-character label
    must not make every row 400 kB wide)."""
    fixed = 4 * len(codes) * max(map(len, names))
    shared = 8 * len(codes) + sum(56 + 4 * len(name) for name in names)
    if fixed <= max(1 << 20, FIXED_WIDTH_WASTE * shared):
        return np.array(names, dtype=str)[codes]
    table = np.empty(len(names), dtype=object)
    table[:] = names
    return table[codes]


def load_table(path: Path, delimiter: str, label_column: str,
               columns: Mapping[str, str] | None = None,
               na_values: Sequence[str] | None = None) -> RawData:
    """A delimited text table with a header; the column ``label_column`` holds the labels.

    Every other column is a feature: ``columns`` (``data.columns``) may name its type
    (``number``, ``category``, ``ignore``), else it is inferred from its values; a cell in
    ``na_values`` (default :data:`nncli.data.cells.DEFAULT_NA_VALUES`) is missing (NaN in
    X), and a row whose label is missing is dropped with a warning. Returns X: (N, D)
    float64 (a category column's codes into ``levels``). The rows are parsed in chunks
    (:class:`TableFile`), so memory grows with the data present, and a signal is handled
    between chunks.
    """
    from nncli.testhooks import pause_here

    columns = columns or {}
    with TableFile(path, delimiter) as table:  # NncliError if not UTF-8 or a bad header
        header = table.header
        if not header or not any(header):
            raise NncliError(f"{path}: empty table (expected a header line)")
        label_index = label_column_index(header, label_column, path)
        types = [None if i == label_index else columns.get(name)
                 for i, name in enumerate(header)]
        feature_idx = [i for i in range(len(header))
                       if i != label_index and types[i] != "ignore"]
        if not feature_idx:
            raise NncliError(f"{path}: no feature columns besides '{label_column}'"
                             + (" (the others are ignored by data.columns)"
                                if len(header) > 1 else ""))
        pause_here("parse-table")
        rows = table.read_rows(label_index, canonical_label,
                               ColumnTypes(types, na_set(na_values)))
    features = [header[i] for i in feature_idx]
    ignored = [header[i] for i in range(len(header)) if types[i] == "ignore"]
    _warn_row_index(path, features, rows.X, rows.levels)
    return RawData(X=rows.X, labels=rows.labels, input_shape=(len(features),),
                   source=str(path), kind="table", features=features,
                   label_lines=rows.lines, levels=rows.levels, ignored=ignored)


def _warn_row_index(path: Path, features: list[str], X: np.ndarray,
                    levels: list[list[str] | None]) -> None:
    """Warn about feature columns that look like a saved row index (pandas' ``to_csv``
    writes one by default, named ``""`` or read back as ``Unnamed: 0``): in a table sorted
    by label it gives the label away. X: (N, D) in ``features`` order."""
    n = X.shape[0]
    if n <= 2:
        return
    from_0 = np.arange(n, dtype=np.float64)
    from_1 = from_0 + 1
    # only columns that start and end like an index are compared whole (a wide table has
    # tens of thousands of columns)
    ends = ((X[0] == 0) & (X[-1] == n - 1)) | ((X[0] == 1) & (X[-1] == n))
    for j, name in enumerate(features):
        column = X[:, j]
        numbers = levels[j] is None
        if name in ROW_INDEX_NAMES or numbers and ends[j] and (
                np.array_equal(column, from_0) or np.array_equal(column, from_1)):
            log.warning("%s: column %s looks like a saved row index (0..N-1 or 1..N, as "
                        "pandas' to_csv writes by default); as a feature it can leak the "
                        "label — drop it (to_csv(..., index=False)) or set data.columns: "
                        "{'%s': ignore}", path, f"'{name}'" if name else "'' (no name)",
                        name.replace("'", "''"))
