"""Data sources, labels, splits and normalization.

A source is read into :class:`RawData` (features as an (N, D) matrix, one example per row,
and the raw labels as strings) by the reader registered for its kind in ``SOURCES``:
an image folder (one subfolder per class), a ``.csv``/``.tsv`` table or an ``.npz``
with ``X`` and ``y``. :func:`load_training_data` turns a config into normalized,
label-encoded :class:`Dataset` splits in the compute dtype.
"""

from __future__ import annotations

import difflib
import logging
import re
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np

from nncli.config import Config, DataConfig
from nncli.errors import NncliError
from nncli.files import refuse_special_file

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
ROW_INDEX_NAMES = ("", "Unnamed: 0")

log = logging.getLogger("nncli")


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


@dataclass
class Dataset:
    """A labelled split ready for the network. X: (N, D) normalized, y: (N,) class indices."""

    X: np.ndarray
    y: np.ndarray
    classes: list[str]
    source: str


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


# ---------------------------------------------------------------- labels


def is_number(text: str) -> bool:
    """True when ``float(text)`` parses (e.g. "3", "-1.5e3", "nan")."""
    try:
        float(text)
    except ValueError:
        return False
    return True


# A label that is a number: decimal digits (ASCII only: "١٢" is not 12), an optional
# fraction and exponent. Not "nan", "inf", "1_000" or "0x10", which float() or int() accept.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_MAX_INT_DIGITS = 4000  # integral labels up to this many digits are written out exactly


def _label_number(text: str) -> Decimal | None:
    """The exact value of a numeric label (see ``_DECIMAL``), or None."""
    if not _DECIMAL.fullmatch(text):
        return None
    try:
        return Decimal(text)
    except ArithmeticError:  # not reached for text that matches _DECIMAL
        return None


def canonical_label(value: object) -> str:
    """A label as a class name: an integral number is written as its exact integer, so 3,
    3.0, "3", "+3" and "3e0" agree, while 12345678901234567890 and 12345678901234567891 stay
    two classes (no trip through float64). Other text, non-integral numbers included, is
    kept as it is (stripped)."""
    text = str(value).strip()
    number = _label_number(text)
    if number is None or number != number.to_integral_value() \
            or number.adjusted() > _MAX_INT_DIGITS:
        return text
    return str(int(number))


def sort_classes(names: Sequence[str]) -> list[str]:
    """Sorted class names: numerically (by exact value, so 12345678901234567890 <
    12345678901234567891, and 7 < 12.5 < 100) when every name is a number, else by name."""
    unique = sorted(set(names))
    values = [_label_number(name) for name in unique]
    if any(v is None for v in values):
        return unique
    return [name for _, name in sorted(zip(values, unique))]


def encode_labels(labels: np.ndarray, classes: Sequence[str], source: str,
                  lines: np.ndarray | None = None) -> np.ndarray:
    """Class indices (N,) for string labels (N,); unknown labels are an error naming one
    (and up to 20 of the model's classes)."""
    index = {name: i for i, name in enumerate(classes)}
    uniq, inverse = np.unique(labels, return_inverse=True)
    mapping = np.empty(len(uniq), dtype=np.int64)
    for j, name in enumerate(uniq):
        if name not in index:
            row = int(np.flatnonzero(labels == name)[0])
            where = f"line {int(lines[row])}" if lines is not None else f"example {row + 1}"
            shown = ", ".join(classes[:20]) + (f", ... ({len(classes):,} in all)"
                                               if len(classes) > 20 else "")
            raise NncliError(f"{source}: {where}: label '{name[:200]}' is not one of the "
                             f"model's classes ({shown})")
        mapping[j] = index[name]
    return mapping[inverse.reshape(-1)]


# ---------------------------------------------------------------- readers


def refuse_semicolon_header(header: Sequence[str], source: str, how_read: str) -> None:
    """A header that came out as one cell holding ``;`` (a European CSV) is an error that
    says so; ``how_read`` tells how the reader splits rows."""
    if len(header) == 1 and ";" in header[0]:
        raise NncliError(f"{source}: the header looks ';'-separated ({header[0][:60]!r}); "
                         f"{how_read} — convert it, e.g. with pandas: "
                         f"read_csv(path, sep=';').to_csv(new, index=False), or tr ';' ','")


def _column_index(header: list[str], label_column: str, path: Path) -> int:
    hits = [i for i, name in enumerate(header) if name == label_column]
    if not hits:
        if path.suffix.lower() == ".csv":
            refuse_semicolon_header(header, str(path), ".csv tables are read as "
                                    "comma-separated")
        lowered = {name.lower(): name for name in header}
        close = ([lowered[label_column.lower()]] if label_column.lower() in lowered else
                 difflib.get_close_matches(label_column, header, n=1, cutoff=0.6))
        hint = (f" — did you mean data.label_column: {close[0]}?" if close
                else " — set data.label_column")
        raise NncliError(f"{path}: no label column '{label_column}' in the header "
                         f"(columns: {', '.join(header[:12])}{', ...' if len(header) > 12 else ''})"
                         f"{hint}")
    if len(hits) > 1:
        raise NncliError(f"{path}: the label column '{label_column}' appears {len(hits)} times "
                         f"in the header")
    return hits[0]


def read_table(path: Path, data_cfg: DataConfig) -> RawData:
    """A delimited text table with a header; ``data_cfg.label_column`` holds the labels.

    Every other column is a numeric feature. Returns X: (N, D) float64. The rows are parsed
    in chunks (:mod:`nncli.tables`), so memory grows with the data present, and a signal
    is handled between chunks.
    """
    from nncli.tables import TableFile
    from nncli.testhooks import pause_here

    delimiter = TABLE_SUFFIXES[path.suffix.lower()]
    with TableFile(path, delimiter) as table:  # NncliError if not UTF-8 or a bad header
        header = table.header
        if not header or not any(header):
            raise NncliError(f"{path}: empty table (expected a header line)")
        label_index = _column_index(header, data_cfg.label_column, path)
        feature_idx = [i for i in range(len(header)) if i != label_index]
        if not feature_idx:
            raise NncliError(f"{path}: no feature columns besides '{data_cfg.label_column}'")
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


def _first_non_finite_row(X: np.ndarray) -> int | None:
    """Index of the first row of X: (N, D) holding NaN or inf, checked in blocks of rows so
    that no full-size boolean temporary is made; None if all are finite."""
    for rows in row_blocks(X):
        finite = np.isfinite(X[rows]).all(axis=1)
        if not finite.all():
            return rows.start + int(np.flatnonzero(~finite)[0])
    return None


def read_npz(path: Path, data_cfg: DataConfig) -> RawData:
    """An ``.npz`` with ``X`` (N, D) or (N, H, W[, C]) and ``y`` (N,). Never unpickles."""
    from nncli.npzfile import check_members, load_arrays

    if not zipfile.is_zipfile(path):  # np.load would try to unpickle anything else
        raise NncliError(f"{path}: not a readable .npz archive (not a zip file)")
    # Every member's declared shape, dtype and size is checked before anything is loaded:
    # a header declaring terabytes, a zip bomb, Python objects or a huge header is one error.
    headers = check_members(path, ("X", "y"))
    missing = [k for k in ("X", "y") if k not in headers]
    if missing:
        with zipfile.ZipFile(path) as archive:
            names = [n.removesuffix(".npy") for n in archive.namelist()]
        raise NncliError(f"{path}: missing array(s) {', '.join(missing)} "
                         f"(has: {', '.join(names[:20]) or 'nothing'}); "
                         f"expected X (N, D) and y (N,)")
    x_head, y_head = headers["X"], headers["y"]
    if len(x_head.shape) < 2 or x_head.shape[0] == 0:
        raise NncliError(f"{path}: X must have shape (N, D) or (N, H, W[, C]) with N > 0, "
                         f"got {x_head.shape}")
    if x_head.dtype.kind not in "iuf":
        raise NncliError(f"{path}: X must be numeric, got dtype {x_head.dtype}")
    if len(y_head.shape) != 1 or y_head.shape[0] != x_head.shape[0]:
        raise NncliError(f"{path}: y must have shape ({x_head.shape[0]},) to match X, got "
                         f"{y_head.shape}")
    arrays = load_arrays(path, ("X", "y"))
    X, y = arrays["X"], arrays["y"]
    if X.ndim < 2 or X.shape[0] == 0:
        raise NncliError(f"{path}: X must have shape (N, D) or (N, H, W[, C]) with N > 0, "
                         f"got {X.shape}")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise NncliError(f"{path}: y must have shape ({X.shape[0]},) to match X, got {y.shape}")
    if not (np.issubdtype(X.dtype, np.number) and not np.issubdtype(X.dtype, np.complexfloating)):
        raise NncliError(f"{path}: X must be numeric, got dtype {X.dtype}")
    flat = X.reshape(X.shape[0], -1)
    bad_row = _first_non_finite_row(flat) if np.issubdtype(flat.dtype, np.floating) else None
    if bad_row is not None:
        row = bad_row
        raise NncliError(f"{path}: X has a non-finite value in example {row + 1}")
    if y.dtype.kind == "S":  # byte strings (e.g. from h5py or Python 2): decode, not "b'cat'"
        y = np.char.decode(y, "utf-8", errors="replace")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        row = int(np.flatnonzero(~np.isfinite(y))[0])
        raise NncliError(f"{path}: y has a non-finite label in example {row + 1}")
    labels = np.array([canonical_label(v) for v in y.tolist()], dtype=str)
    return RawData(X=flat, labels=labels, input_shape=tuple(int(s) for s in X.shape[1:]),
                   source=str(path), kind="array")


def read_folder(path: Path, data_cfg: DataConfig) -> RawData:
    """An image folder with one subfolder per class (see :mod:`nncli.images`)."""
    from nncli.images import read_image_folder

    return read_image_folder(path, data_cfg.image.size, data_cfg.image.mode)


SOURCES: dict[str, Callable[[Path, DataConfig], RawData]] = {
    "folder": read_folder,
    "table": read_table,
    "npz": read_npz,
}


def source_kind(path: Path) -> str:
    """Which reader handles ``path``: folder, table (.csv/.tsv/.tab) or npz."""
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return "table"
    if suffix == ".npz":
        return "npz"
    raise NncliError(f"{path}: unknown data kind '{suffix or path.name}' (expected an image "
                     f"folder, a .csv/.tsv table or an .npz with X and y)")


def read_source(path: str | Path, data_cfg: DataConfig) -> RawData:
    """Read any supported source; errors name the path."""
    from nncli.interrupts import raise_if_interrupted
    from nncli.testhooks import pause_here

    pause_here("load")  # tests send signals at this phase
    path = Path(path)
    if not path.exists():
        hint = ""
        beside = Path(data_cfg.config_dir or ".") / path
        if not path.is_absolute() and data_cfg.config_dir and beside.exists():
            hint = (f" (relative paths are taken from the current directory; it exists next "
                    f"to the config file, as {beside}: run nncli from there or give that "
                    f"path)")
        raise NncliError(f"{path}: no such file or folder{hint}")
    refuse_special_file(path, "a data source")
    raw = SOURCES[source_kind(path)](path, data_cfg)
    raise_if_interrupted()  # a SIGINT/SIGTERM whose exception C code swallowed meanwhile
    if raw.X.shape[0] == 0:
        raise NncliError(f"{path}: contains no examples")
    return raw


# ---------------------------------------------------------------- normalization


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


# ---------------------------------------------------------------- splits


def stratified_split(y: np.ndarray, fraction: float,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out) holding out ``fraction`` of each class (at least one per
    class with two or more examples). y: (N,) -> two sorted index arrays."""
    held = []
    for k in np.unique(y):
        members = np.flatnonzero(y == k)
        n_out = int(round(fraction * len(members)))
        if len(members) >= 2:
            n_out = min(max(n_out, 1), len(members) - 1)
        else:
            n_out = 0
        held.append(rng.permutation(members)[:n_out])
    held_out = np.sort(np.concatenate(held)) if held else np.array([], dtype=np.int64)
    keep = np.setdiff1d(np.arange(len(y)), held_out)
    return keep, held_out


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


def align_features(raw: RawData, features: Sequence[str] | None,
                   role: str | None = None) -> RawData:
    """Match a table's feature columns to the training columns ``features`` by name, in any
    order (as pandas users expect), never by position. Returns ``raw`` or a copy with
    ``X: (N, D)`` reordered to the training order.

    A header that lacks a training column, or names one the model was not trained on, is an
    error naming them and the expected ones (``role``, e.g. "eval", says what the examples
    are for). A name that occurs several times matches its occurrences in order. Sources
    without column names (``.npz``, image folders), and models trained on such sources
    (``features`` None), are left to the shape check.
    """
    if not features or raw.features is None or list(raw.features) == list(features):
        return raw
    given = list(raw.features)
    at: dict[str, list[int]] = {}
    for i, name in enumerate(given):
        at.setdefault(name, []).append(i)
    order: list[int] = []
    missing: list[str] = []
    for name in features:
        slots = at.get(name)
        if slots:
            order.append(slots.pop(0))
        else:
            missing.append(name)
    unknown = [given[i] for i in sorted(set(range(len(given))) - set(order))]
    repeated = sorted({name for name in unknown if name in features})
    unknown = [name for name in unknown if name not in features]
    if missing or unknown or repeated:

        def listed(names: Sequence[str], limit: int = 20) -> str:
            more = f", ... ({len(names)} in all)" if len(names) > limit else ""
            return ", ".join(names[:limit]) + more

        problems = []
        if missing:
            problems.append(f"lacks the feature column(s) {listed(missing)}")
        if unknown:
            problems.append(f"names column(s) the model was not trained on: {listed(unknown)}")
        if repeated:
            problems.append(f"names column(s) more often than the training data: "
                            f"{listed(repeated)}")
        counts = (f"{role} examples have {len(given)} features, the training data has "
                  f"{len(features)}; " if role and len(given) != len(features) else "")
        raise NncliError(f"{raw.source}: {counts}the header {' and '.join(problems)} "
                         f"(the training feature columns: {listed(list(features))})")
    return RawData(X=raw.X[:, order], labels=raw.labels, input_shape=raw.input_shape,
                   source=raw.source, kind=raw.kind, features=list(features),
                   label_lines=raw.label_lines)


def make_dataset(raw: RawData, classes: Sequence[str], norm: Normalization,
                 dtype: str, role: str, input_shape: tuple[int, ...],
                 features: Sequence[str] | None = None) -> Dataset:
    """Encode labels and normalize features of a non-training source with training stats.

    ``raw`` is consumed: its features may be normalized in place (no second copy of them).
    """
    raw = align_features(raw, features)
    check_shape(raw, input_shape, role)
    y = encode_labels(raw.labels, classes, raw.source, raw.label_lines)
    return Dataset(norm.apply(raw.X, dtype, Normalization.rows_of(raw), overwrite=True), y,
                   list(classes), raw.source)


def load_training_data(cfg: Config, splits: Sequence[str] = ("train", "val", "test"),
                       dtype: str | None = None) -> TrainingData:
    """Read, split, label-encode and normalize the data of ``cfg``.

    Classes and normalization are learned on the training part only (after ``val_split``).
    ``splits`` limits which of val/test are read (train always is).
    """
    d = cfg.data
    dtype = dtype or cfg.train.dtype
    raw = read_source(d.train, d)
    classes = sort_classes(raw.labels.tolist())
    if len(classes) < 2:
        raise NncliError(f"{d.train}: found only one class ('{classes[0]}'); a classifier "
                         f"needs at least 2")
    y = encode_labels(raw.labels, classes, raw.source, raw.label_lines)
    X = raw.X
    val: Dataset | None = None
    norm_X_val = None
    keep = held = None
    if d.val_split > 0 and d.val is None and "val" in splits:
        keep, held = stratified_split(y, d.val_split, np.random.default_rng([cfg.seed, 2]))
        if held.size == 0:
            raise NncliError(f"config key 'data.val_split': {d.val_split:g} holds out no "
                             f"examples of {d.train} (a class needs 2 or more examples to lend "
                             f"one to validation)")
        norm_X_val, y_val = X[held], y[held]
        X, y = X[keep], y[keep]
    norm = fit_normalization(X, d.normalize, raw.kind == "images")
    train = Dataset(norm.apply(X, dtype, Normalization.rows_of(raw, keep), overwrite=True), y,
                    classes, raw.source)
    del raw.X  # normalized in place above when possible: drop the only other reference
    if norm_X_val is not None:
        val = Dataset(norm.apply(norm_X_val, dtype, Normalization.rows_of(raw, held),
                                 overwrite=True), y_val,
                      classes, f"{raw.source} (val_split {d.val_split})")
    elif d.val is not None and "val" in splits:
        val = make_dataset(read_source(d.val, d), classes, norm, dtype, "val", raw.input_shape,
                           raw.features)
    test = None
    if d.test is not None and "test" in splits:
        test = make_dataset(read_source(d.test, d), classes, norm, dtype, "test",
                            raw.input_shape, raw.features)
    return TrainingData(train=train, val=val, test=test, classes=classes,
                        input_shape=raw.input_shape, normalization=norm,
                        features=raw.features, kind=raw.kind)


def class_weight_vector(spec: None | str | dict[str, float], classes: Sequence[str],
                        y: np.ndarray) -> np.ndarray | None:
    """Per-class loss weights (K,) or None.

    ``balanced``: ``w_k = N / (K N_k)`` from training labels y: (N,); a mapping names
    classes (missing ones weigh 1, as in Keras); unknown class names are errors.
    """
    if spec is None:
        return None
    K = len(classes)
    if spec == "balanced":
        counts = np.bincount(y, minlength=K).astype(np.float64)
        return np.where(counts > 0, len(y) / (K * np.maximum(counts, 1)), 0.0)
    weights = np.ones(K)
    lookup = {name: i for i, name in enumerate(classes)}
    for name, w in spec.items():
        key = canonical_label(name)
        if key not in lookup:
            raise NncliError(f"config key 'loss.class_weight.{name}': no class '{name}' in the "
                             f"training data (classes: {', '.join(classes)})")
        weights[lookup[key]] = w
    return weights
