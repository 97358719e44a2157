"""``predict``'s inputs, read into batches: stdin's lines as they arrive, arguments, folders
of images, table files, and table rows parsed under a header's column layout.

The rules (the README documents them):

- ``-``, or no input at all, is stdin: one input per line, handed over batch by batch as the
  lines arrive (:func:`batched_lines`); blank lines are skipped.
- Image models: an input is an image path. A folder stands for the images in it and in
  its subfolders, sorted by path; hidden files and folders are skipped, and so are files
  whose extension is no image format's (one warning per folder saying how many).
- Table models: an input is one row of feature values, comma-separated (tab-separated when
  the line holds a tab); a ``.csv``/``.tsv``/``.tab`` argument stands for its rows. Columns
  are matched by name whenever there is a header, never by position: a table file's first
  line, or stdin's first non-blank line when its cells name the training columns (the
  features in any order, optionally with the label column, which the rows then carry and
  which is ignored). A header naming a column the model was not trained on, or lacking a
  feature column, is an error naming them (:func:`nncli.data.columns.feature_positions`,
  the rule for every table). A line of numbers is always a row: with numeric column names,
  a header on stdin counts as one only with the label column in it. Without a header a row
  holds the feature values in training column order.
- A model trained on a table with an encoding (:class:`nncli.data.encoding.Encoding`)
  takes rows as the training table came: text in its category columns, missing-value
  markers anywhere (:meth:`TableReader.parse_columns`); columns it ignored may be in a
  header or not. Its rows hold text, so a line is a header only when it names a training
  column.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import os
import select
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np

from nncli.data.cells import raw_columns
from nncli.data.columns import feature_positions, label_positions, refuse_semicolon_header
from nncli.data.labels import is_number
from nncli.data.sources import NPZ_SUFFIXES, TABLE_SUFFIXES
from nncli.errors import NncliError

MAX_BATCH = 256  # lines of a stream handed over at once, at most
BATCH = 256  # inputs per batch when they are all at hand (arguments, folders)
FILE_BATCH = 4096  # rows per batch when reading a table file

log = logging.getLogger("nncli")
T = TypeVar("T")  # what a row reader makes of one row


def batched_lines(stream: IO[str], max_batch: int = MAX_BATCH) -> Iterator[list[str]]:
    """Yield lists of lines: as many as are already available (up to ``max_batch``), so a
    consumer answers each line as soon as it arrives yet batches when input is plentiful."""
    try:
        fd = stream.fileno()
        pollable = os.name == "posix"
    except (AttributeError, OSError, ValueError):
        fd, pollable = -1, False
    batch: list[str] = []
    while True:
        line = stream.readline()
        if not line:
            break
        batch.append(line)
        if len(batch) >= max_batch:
            yield batch
            batch = []
            continue
        # Hand over what we have as soon as the writer has nothing more for us right now
        # (a file or a closed pipe always reads as ready, so those fill whole batches).
        if not _readable_now(fd, pollable):
            yield batch
            batch = []
    if batch:
        yield batch


def _readable_now(fd: int, pollable: bool) -> bool:
    if not pollable:
        return False
    try:
        ready, _, _ = select.select([fd], [], [], 0)
    except (OSError, ValueError):
        return False
    return bool(ready)


def reads_stdin(inputs: Sequence[str]) -> bool:
    """True when predict reads stdin: no input at all, or ``-`` among them."""
    return not inputs or "-" in inputs


def _stdin_lines(stdin: IO[str] | None) -> Iterator[list[str]]:
    """stdin's lines in batches as they arrive, without their line endings."""
    first = True
    for batch in batched_lines(stdin) if stdin is not None else ():
        lines = [line.rstrip("\r\n") for line in batch]
        if first and lines:  # a UTF-8 byte order mark (Excel's), as table files allow
            lines[0] = lines[0].removeprefix("\ufeff")
            first = False
        yield lines


def _refuse_semicolons(cells: list[str], n_features: int, source: str) -> None:
    """A header read as one cell holding ';' (a European CSV), for a model of several
    columns, is named as such."""
    if n_features > 1:
        refuse_semicolon_header(cells, source, "rows are read as comma- or tab-separated")


@dataclass
class Failure:
    """An input that could not be predicted (``predict --keep-going`` reports it, goes on)."""

    input: str
    error: NncliError


def _cells(line: str, delimiter: str | None = None, place: str = "input") -> list[str]:
    """The cells of one row, split as CSV: on ``delimiter``, else tab if the line holds a
    tab, else comma. A row the csv module refuses — a field longer than its limit
    (``csv.field_size_limit()``, 131,072 characters), a NUL character — is an error naming
    ``place``."""
    delimiter = delimiter or ("\t" if "\t" in line else ",")
    try:
        return next(csv.reader(io.StringIO(line), delimiter=delimiter), [])
    except csv.Error as exc:
        limit = csv.field_size_limit()
        if "field larger than field limit" in str(exc):
            raise NncliError(f"{place}: a field is longer than {limit:,} characters (a row of "
                             f"{len(line):,}); no feature value is that long") from None
        raise NncliError(f"{place}: cannot split the row into fields ({exc})") from None


def numbers_in(text: str) -> int:
    """How many values ``text`` holds when it reads as a table row of two or more numbers
    (so it is no image path), else 0."""
    try:
        cells = _cells(text)
    except NncliError:
        return 0
    return len(cells) if len(cells) > 1 and all(is_number(c) for c in cells) else 0


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# ---------------------------------------------------------------- images


def folder_images(folder: str) -> list[str]:
    """The image files under ``folder``, recursively, sorted by path (``folder/a/x.png``).

    Hidden files and folders are skipped; so are files without an image extension, with
    one warning saying how many. No image at all is an error naming the folder.
    """
    from nncli.data.folders import list_folder
    from nncli.data.images import image_extensions

    listing = list_folder(Path(folder))
    files = listing.loose + [rel for entries in listing.files for rel, _, _ in entries]
    extensions = image_extensions()
    is_image = [os.path.splitext(rel)[1].lower() in extensions for rel in files]
    skipped = [rel for rel, ok in zip(files, is_image) if not ok]
    if skipped:
        log.warning("%s: skipped %d file(s) without an image extension, e.g. %s", folder,
                    len(skipped), os.path.join(folder, skipped[0]))
    images = sorted((rel for rel, ok in zip(files, is_image) if ok),
                    key=lambda rel: rel.split("/"))
    if not images:
        raise NncliError(f"{folder}: no images in the folder or its subfolders")
    return [os.path.join(folder, rel) for rel in images]


def _expand(item: str) -> list[str | Failure]:
    """An image path as it is; a folder as its images (or a Failure)."""
    if not os.path.isdir(item):
        return [item]
    try:
        return list(folder_images(item))
    except NncliError as exc:
        return [Failure(item, exc)]


def image_batches(inputs: Sequence[str], stdin: IO[str] | None
                  ) -> Iterator[list[str | Failure]]:
    """Image paths in batches, in input order: arguments (a folder as its images), and for
    ``-`` (or no input) stdin's lines as they arrive."""
    pending: list[str | Failure] = []
    for item in list(inputs) or ["-"]:
        if item != "-":
            pending += _expand(item)
            while len(pending) >= BATCH:
                yield pending[:BATCH]
                pending = pending[BATCH:]
            continue
        if pending:
            yield pending
            pending = []
        for lines in _stdin_lines(stdin):
            yield from _chunks([p for line in lines if line.strip() for p in _expand(line)],
                               BATCH)
    if pending:
        yield pending


# ---------------------------------------------------------------- table rows


@dataclass(frozen=True)
class Layout:
    """Where the D training features sit in a table row of ``width`` cells: feature j is
    cell ``positions[j]``. ``header`` holds the header's cells when a header gave it."""

    width: int
    positions: tuple[int, ...]
    header: tuple[str, ...] | None = None


@dataclass
class Rows:
    """Table rows read together: their text, the ``input`` number printed for each (rows
    count from 1 over all inputs), where each came from (for errors), their layout, and
    their delimiter (None: per line)."""

    lines: list[str]
    numbers: list[int]
    places: list[str]
    layout: Layout
    delimiter: str | None = None


@dataclass(frozen=True)
class ColumnKinds:
    """How a model with a table encoding reads rows: each feature column's type (number
    | category), the missing-value markers, and the training columns it ignores (which a
    header may name or not)."""

    types: tuple[str, ...]
    na: frozenset[str]
    ignored: tuple[str, ...] = ()


class TableReader:
    """Reads table rows for a model trained on columns ``features`` (None for an array
    model) with ``label_column``, D = ``dim`` values per row (one per column); ``expects``
    (what the model was trained on) starts the error for another kind of data. With
    ``kinds`` (a model with a table encoding) cells may be text and missing values
    (:meth:`parse_columns`)."""

    def __init__(self, features: Sequence[str] | None, label_column: str, dim: int,
                 expects: str, kinds: ColumnKinds | None = None) -> None:
        self.features = list(features) if features else None
        self.label_column = label_column
        self.dim = dim
        self.expects = expects
        self.in_order = Layout(dim, tuple(range(dim)))
        self.kinds = kinds
        self.ignored = set(kinds.ignored) if kinds else set()

    def batches(self, inputs: Sequence[str], stdin: IO[str] | None
                ) -> Iterator[Rows | Failure]:
        """Rows in batches, in input order: row arguments, table files, and for ``-`` (or
        no input) stdin's lines as they arrive. A bad file is a Failure; a bad header on
        stdin raises (it governs every row after it)."""
        counter = itertools.count(1)
        pending: list[str] = []
        for item in list(inputs) or ["-"]:
            if item != "-" and os.path.splitext(item)[1].lower() not in TABLE_SUFFIXES:
                pending.append(item)
                if len(pending) >= BATCH:
                    yield self.rows(pending, counter)
                    pending = []
                continue
            if pending:
                yield self.rows(pending, counter)
                pending = []
            if item == "-":
                yield from self._stdin_rows(stdin, counter)
            else:
                yield from self._file_rows(Path(item), counter)
        if pending:
            yield self.rows(pending, counter)

    def rows(self, lines: list[str], counter: Iterator[int], layout: Layout | None = None,
             places: list[str] | None = None, delimiter: str | None = None) -> Rows:
        """A batch of ``lines`` numbered from ``counter`` (``input row N`` in errors unless
        ``places`` say otherwise), in training column order unless ``layout`` says."""
        numbers = [next(counter) for _ in lines]
        return Rows(lines, numbers, places or [f"input row {n}" for n in numbers],
                    layout or self.in_order, delimiter)

    def _stdin_rows(self, stdin: IO[str] | None, counter: Iterator[int]) -> Iterator[Rows]:
        layout: Layout | None = None  # decided by the first non-blank line
        line_no = 0
        for batch in _stdin_lines(stdin):
            lines = []
            for line in batch:
                line_no += 1
                if not line.strip():
                    continue
                if layout is None:
                    layout = self.header_layout(line, f"stdin: line {line_no}") or self.in_order
                    if layout.header is not None:
                        continue
                lines.append(line)
            if lines:
                yield self.rows(lines, counter, layout)

    def _file_rows(self, path: Path, counter: Iterator[int]) -> Iterator[Rows | Failure]:
        """The rows of a table file, its columns matched to the training columns by name."""
        delimiter = TABLE_SUFFIXES[path.suffix.lower()]
        try:
            with path.open(newline="", encoding="utf-8-sig") as handle:
                header = [c.strip() for c in _cells(handle.readline().rstrip("\r\n"),
                                                    delimiter, f"{path}: line 1")]
                if not any(header):
                    raise NncliError(f"{path}: empty table (expected a header line)")
                _refuse_semicolons(header, len(self.features or ()), str(path))
                if (self.features and all(is_number(c) for c in header)
                        and not {*header} & {*self.features, self.label_column}):
                    raise NncliError(f"{path}: line 1 holds numbers, not column names: a "
                                     f"table file needs a header line naming its columns "
                                     f"(rows without a header can be piped on stdin)")
                layout = self.layout_from_header(header, str(path))
                lines: list[str] = []
                places: list[str] = []
                for line_no, raw_line in enumerate(handle, start=2):
                    line = raw_line.rstrip("\r\n")
                    if line.strip():
                        lines.append(line)
                        places.append(f"{path}: line {line_no}")
                    if len(lines) >= FILE_BATCH:
                        yield self.rows(lines, counter, layout, places, delimiter)
                        lines, places = [], []
                if lines:
                    yield self.rows(lines, counter, layout, places, delimiter)
        except FileNotFoundError:
            yield Failure(str(path), NncliError(f"{path}: no such table file"))
        except UnicodeDecodeError:
            yield Failure(str(path), NncliError(f"{path}: not a UTF-8 text table"))
        except OSError as exc:
            yield Failure(str(path), NncliError(f"{path}: cannot read ({exc.strerror or exc})"))
        except NncliError as exc:  # empty, or a header that does not match the model
            yield Failure(str(path), exc)

    def header_layout(self, line: str, source: str) -> Layout | None:
        """The layout a header line on stdin gives, or None when ``line`` is a data row.

        A header is a line that names a training column (a feature or the label column)
        in a cell that is not a number, or a line of two or more cells none of which is a
        number; a line of numbers is a row unless it is exactly the (numeric) feature names
        and the label column. Raises when the header does not match the training columns.
        """
        if not self.features:
            return None
        cells = [c.strip() for c in _cells(line, place=source)]
        _refuse_semicolons(cells, len(self.features), source)
        text = {c for c in cells if not is_number(c)}
        named = {*self.features, self.label_column, *self.ignored}
        if self.kinds is not None and "category" in self.kinds.types:
            # rows hold text too: only a line naming a training column is a header
            return self.layout_from_header(cells, source) if text & named else None
        if not text:
            # Numbers that are exactly the (numeric) column names, in any order, with or
            # without the label column: a header (pandas writes 0, 1, 2, ... as names).
            if sorted(cells) not in (sorted(self.features),
                                     sorted([*self.features, self.label_column])):
                return None
        elif not text & named and (
                len(text) < len(cells) or len(cells) < 2):
            return None
        return self.layout_from_header(cells, source)

    def layout_from_header(self, header: list[str], source: str) -> Layout:
        """Where each training feature sits in rows under ``header`` (stripped cells): by
        name, the label column (if there) skipped; for an array model (no column names),
        the columns other than the label column, in order."""
        label_at = label_positions(header, self.label_column, source)
        keep = [i for i in range(len(header))
                if i not in label_at and header[i] not in self.ignored]
        if not self.features:
            if len(keep) != self.dim:
                raise NncliError(f"{source}: {len(keep)} feature columns; {self.expects}")
            return Layout(len(header), tuple(keep), tuple(header))
        order = feature_positions([header[i] for i in keep], self.features, source)
        return Layout(len(header), tuple(keep[j] for j in order), tuple(header))

    def parse(self, rows: Rows) -> tuple[np.ndarray, list[int], dict[int, Failure]]:
        """Feature values X: (M, D) of the rows that parse, their indices in ``rows``, and
        a Failure for each row that does not (by index)."""
        X = self._parse_fast(rows)
        if X is not None:
            return X, list(range(len(rows.lines))), {}
        parsed, good, failures = self._each_row(rows, self._parse_row)
        return np.array(parsed, dtype=np.float64).reshape(len(good), self.dim), good, failures

    @staticmethod
    def _each_row(rows: Rows, read: Callable[[str, str, Layout, str | None], T]
                  ) -> tuple[list[T], list[int], dict[int, Failure]]:
        """``read(line, place, layout, delimiter)`` of every row: the results of the rows
        it accepts, their indices in ``rows``, and a Failure for each row it refuses."""
        results: list[T] = []
        good: list[int] = []
        failures: dict[int, Failure] = {}
        for i, line in enumerate(rows.lines):
            try:
                results.append(read(line, rows.places[i], rows.layout, rows.delimiter))
                good.append(i)
            except NncliError as exc:
                failures[i] = Failure(str(rows.numbers[i]), exc)
        return results, good, failures

    def _parse_fast(self, rows: Rows) -> np.ndarray | None:
        """All rows at once with NumPy's C parser (~20x faster than row by row): (N, D),
        or None if anything is unusual; then :meth:`_parse_row` finds and names the row."""
        delimiter = rows.delimiter or ("\t" if "\t" in rows.lines[0] else ",")
        separators = rows.layout.width - 1
        if any(line.count(delimiter) != separators or '"' in line for line in rows.lines):
            return None  # another width (loadtxt's usecols would not notice), or quoting
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                X = np.loadtxt(rows.lines, delimiter=delimiter, dtype=np.float64, ndmin=2,
                               comments=None, usecols=rows.layout.positions)
        except ValueError:
            return None
        if X.shape != (len(rows.lines), self.dim) or not np.isfinite(X).all():
            return None
        return X

    def _row_cells(self, line: str, place: str, layout: Layout,
                   delimiter: str | None = None) -> list[str]:
        """One table row -> its feature cells (D,), stripped, in training order."""
        cells = _cells(line, delimiter, place)
        if len(cells) == 1 and not is_number(cells[0]):
            what = self._not_a_row(cells[0].strip())
            if what:
                raise NncliError(f"{self.expects}; {what}")
        if len(cells) != layout.width:
            if layout.header is None:
                raise NncliError(f"{place}: expected {self.dim} feature values, "
                                 f"got {len(cells)}")
            raise NncliError(f"{place}: expected {layout.width} values like the header, "
                             f"got {len(cells)}")
        return [cells[position].strip() for position in layout.positions]

    def _parse_row(self, line: str, place: str, layout: Layout,
                   delimiter: str | None = None) -> np.ndarray:
        """One table row -> its feature values (D,) in training order."""
        values = np.empty(self.dim)
        for j, cell in enumerate(self._row_cells(line, place, layout, delimiter)):
            column = f" (column {self.features[j]})" if self.features else ""
            try:
                values[j] = float(cell)
            except ValueError:
                what = f"not a number: {cell[:40]!r}" if cell else "missing value"
                raise NncliError(f"{place}: {what}{column}") from None
            if not np.isfinite(values[j]):
                raise NncliError(f"{place}: non-finite value {cell!r}{column}")
        return values

    def parse_columns(self, rows: Rows) -> tuple[np.ndarray, list[list[str] | None],
                                                 list[int], dict[int, Failure]]:
        """For a model with a table encoding: the raw columns X: (M, D) of the rows that
        parse (numbers; a category column's codes into ``levels[j]``; NaN where missing),
        the levels, those rows' indices in ``rows``, and a Failure for each other row."""
        assert self.kinds is not None
        if "category" not in self.kinds.types:
            X = self._parse_fast(rows)
            if X is not None:
                return X, [None] * self.dim, list(range(len(rows.lines))), {}
        table, good, failures = self._each_row(rows, self._row_cells)
        if not table:
            return np.empty((0, self.dim)), [None] * self.dim, [], failures
        cells = np.empty((len(table), self.dim), dtype=object)
        cells[:] = table
        X, levels, problems = raw_columns(cells, list(self.kinds.types), self.kinds.na)
        for row, (j, why) in problems.items():
            i = good[row]
            failures[i] = Failure(str(rows.numbers[i]), NncliError(
                f"{rows.places[i]}: {why} (column {self.features[j]})"))
        kept = [row for row in range(len(good)) if row not in problems]
        return X[kept], levels, [good[row] for row in kept], failures

    @staticmethod
    def _not_a_row(text: str) -> str | None:
        """Why a one-cell input to a table model is another kind of data, or None."""
        from nncli.data.images import image_extensions

        suffix = os.path.splitext(text)[1].lower()
        if suffix in image_extensions():
            return f"{text} is an image"
        if os.path.isdir(text):
            from nncli.data.arrayfolder import is_array_folder

            if is_array_folder(Path(text)):
                return f"{text} is an array folder (X.npy, y.npy: score it with nncli eval)"
            return f"{text} is a folder"
        if suffix in NPZ_SUFFIXES:
            return f"{text} is an .npz file (score a labelled one with nncli eval)"
        if suffix in TABLE_SUFFIXES:
            return f"{text} is a table file name (give it as an argument)"
        return None
