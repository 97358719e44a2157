"""Delimited text tables: the reader (:func:`load_table`) and its streaming parser.

Memory grows with the data present, never with ``rows x columns`` string objects: the rows
are read in chunks of about :data:`CHUNK_CELLS` cells (and at most :data:`CHUNK_CHARS`
characters) straight into a preallocated float64 ``X: (N, D)``; the labels are kept as
one ``str`` per distinct value. Each chunk takes one of two paths:

- fast: a chunk with no quote character, no control character NumPy would read as blank,
  and no line longer than :data:`FIELD_LIMIT` is parsed by ``np.loadtxt(dtype=float64)``
  (C speed, no strings made) after a per-line field count;
- exact: anything else, and any chunk the fast path rejects, is read with ``csv.reader``
  and ``float()`` per field, and its first bad row gives the error (line, column, what is
  wrong) in file order — the same messages as ever.

Both paths give the same numbers (``float()``'s correctly rounded parse). A
``KeyboardInterrupt`` between or inside chunks propagates: nothing here catches it.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import re
import stat
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

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
    (label column left out), ``labels: (N,)`` canonical class names, ``lines: (N,)`` the
    file line of each row (the last line of a row that spans several)."""

    X: np.ndarray
    labels: np.ndarray
    lines: np.ndarray


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

    def read_rows(self, label_index: int, canonical: Callable[[str], str]) -> TableRows:
        """Parse every row after the header. ``canonical(text)`` maps a stripped label
        cell to its class name (called once per distinct cell)."""
        n_columns = len(self.header)
        state = _Parse(self, label_index, n_columns, self._capacity(n_columns), canonical)
        for lines, first_line in self._chunks(n_columns):
            state.chunk(lines, first_line)
        return state.finish()

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


def diagnose_row(path: Path, line: int, row: list[str], n_columns: int,
                 label_index: int) -> NncliError | None:
    """The error of one csv row (field count, then each cell left to right), or None."""
    if len(row) != n_columns:
        return NncliError(f"{path}: line {line}: expected {n_columns} fields like the "
                          f"header, got {len(row)}")
    for col, cell in enumerate(row):
        if col == label_index:
            if not cell.strip():
                return NncliError(f"{path}: line {line}: missing label")
            continue
        if not cell.strip():
            return NncliError(f"{path}: line {line}, column {col + 1}: missing value")
        try:
            value = float(cell)
        except ValueError:
            return NncliError(f"{path}: line {line}, column {col + 1}: "
                              f"not a number: {cell.strip()[:40]!r}")
        if not math.isfinite(value):
            return NncliError(f"{path}: line {line}, column {col + 1}: "
                              f"non-finite value {cell.strip()!r}")
    return None


class _Parse:
    """The growing result of :meth:`TableFile.read_rows`: X, label codes and lines."""

    def __init__(self, table: TableFile, label_index: int, n_columns: int, capacity: int,
                 canonical: Callable[[str], str]) -> None:
        self.table, self.path, self.delim = table, table.path, table.delimiter
        self.label_index, self.n_columns = label_index, n_columns
        self.features = [i for i in range(n_columns) if i != label_index]
        self.X = np.empty((capacity, n_columns - 1), dtype=np.float64)
        self.lines = np.empty(capacity, dtype=np.int64)
        self.codes = np.empty(capacity, dtype=np.int64)  # index into self.names
        self.names: list[str] = []
        self._code: dict[str, int] = {}  # stripped label cell -> index into names
        self.canonical = canonical
        self.n = 0

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
        if not self._fast(lines, first_line):
            self._exact(lines, first_line)

    def _fast(self, lines: list[str], first_line: int) -> bool:
        """np.loadtxt on a plain chunk; False (nothing stored) when it does not apply or
        something in the chunk is wrong — the exact path then says what."""
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
        if not all(cell.strip() for cell in cells):
            return False
        try:
            block = np.loadtxt(lines, delimiter=delim, dtype=np.float64, ndmin=2,
                               usecols=self.features, comments=None, quotechar=None)
        except ValueError:
            return False
        if block.shape != (len(lines), self.n_columns - 1) or not np.isfinite(block).all():
            return False
        self._reserve(len(lines))
        rows = slice(self.n, self.n + len(lines))
        self.X[rows] = block
        self.lines[rows] = np.asarray(keep) + first_line
        self.codes[rows] = [self._label_code(cell) for cell in cells]
        self.n += len(lines)
        return True

    def _exact(self, lines: list[str], first_line: int) -> None:
        """csv.reader and float() over the chunk's lines, continuing into the file for a
        quoted row that spans the chunk's end; raises the first bad row's error."""
        table, path = self.table, self.path
        consumed = 0
        rest = table._handle

        def source() -> Iterator[str]:
            nonlocal consumed
            for line in chain(lines, rest):
                consumed += 1
                yield line

        reader = csv.reader(source(), delimiter=self.delim)
        label_index, n_columns = self.label_index, self.n_columns
        start = 0  # lines consumed before the current row
        values: list[list[float]] = []
        while consumed < len(lines):
            with _TableErrors(path, lambda at=first_line + start: at):
                row = next(reader, None)
            if row is None:
                break
            line = first_line + consumed - 1
            start = consumed
            if _is_blank(row):
                continue
            bad = len(row) != n_columns or not row[label_index].strip()
            if not bad:
                label = row.pop(label_index)
                try:
                    numbers = [float(cell) for cell in row]
                except ValueError:
                    bad = True
                else:
                    total = sum(numbers)
                    bad = total != total or total in (math.inf, -math.inf)
                row.insert(label_index, label)
            if bad:
                error = diagnose_row(path, line, row, n_columns, label_index)
                if error is not None:
                    raise error
            self._reserve(1)
            values.append(numbers)
            self.lines[self.n] = line
            self.codes[self.n] = self._label_code(label)
            self.n += 1
        if values:
            self.X[self.n - len(values):self.n] = values
        table.next_line = first_line + consumed

    def finish(self) -> TableRows:
        """Shrink to the rows read (in place) and build the label array."""
        n = self.n
        if n == 0:
            raise NncliError(f"{self.path}: the table has a header but no rows")
        self.X.resize((n, self.X.shape[1]), refcheck=False)
        self.lines.resize(n, refcheck=False)
        codes = self.codes[:n]
        return TableRows(X=self.X, labels=label_array(self.names, codes), lines=self.lines)


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


def load_table(path: Path, delimiter: str, label_column: str) -> RawData:
    """A delimited text table with a header; the column ``label_column`` holds the labels.

    Every other column is a numeric feature. Returns X: (N, D) float64. The rows are parsed
    in chunks (:class:`TableFile`), so memory grows with the data present, and a signal
    is handled between chunks.
    """
    from nncli.testhooks import pause_here

    with TableFile(path, delimiter) as table:  # NncliError if not UTF-8 or a bad header
        header = table.header
        if not header or not any(header):
            raise NncliError(f"{path}: empty table (expected a header line)")
        label_index = label_column_index(header, label_column, path)
        feature_idx = [i for i in range(len(header)) if i != label_index]
        if not feature_idx:
            raise NncliError(f"{path}: no feature columns besides '{label_column}'")
        pause_here("parse-table")
        rows = table.read_rows(label_index, canonical_label)
    features = [header[i] for i in feature_idx]
    _warn_row_index(path, features, rows.X)
    return RawData(X=rows.X, labels=rows.labels, input_shape=(len(features),),
                   source=str(path), kind="table", features=features,
                   label_lines=rows.lines)


def _warn_row_index(path: Path, features: list[str], X: np.ndarray) -> None:
    """Warn about feature columns that look like a saved row index (pandas' ``to_csv``
    writes one by default, named ``""`` or read back as ``Unnamed: 0``): in a table sorted
    by label it gives the label away. X: (N, D) in ``features`` order."""
    from_0 = np.arange(X.shape[0], dtype=np.float64)
    from_1 = from_0 + 1
    for j, name in enumerate(features):
        column = X[:, j]
        if (name in ROW_INDEX_NAMES or np.array_equal(column, from_0)
                or np.array_equal(column, from_1)) and X.shape[0] > 2:
            log.warning("%s: column %s looks like a saved row index (0..N-1 or 1..N, as "
                        "pandas' to_csv writes by default); as a feature it can leak the "
                        "label — drop it (to_csv(..., index=False))", path,
                        f"'{name}'" if name else "'' (no name)")
