"""The array-folder data source: a folder holding ``X.npy`` and ``y.npy``, for data larger
than memory.

``X.npy`` (N, D) or (N, H, W[, C]) of float32, float64 or uint8 is opened memory-mapped
(``np.load(path, mmap_mode="r")``): nothing of it is read here, and training gathers its
rows batch by batch (:class:`~nncli.data.rowview.NormalizedRows`). ``y.npy`` (N,) holds the
labels (integers or strings; numbers for ``task: regression``) and is loaded whole: N labels
are small beside N rows of features.

A folder is an array folder when it holds ``X.npy`` or ``y.npy`` (one without the other is
an error naming the missing file); any other folder is an image folder. Both headers are
read and checked before anything is mapped, so that each bad file is one error naming it:
Python objects (never unpickled), a dtype other than the three above, Fortran order (its
rows are not contiguous on disk: every gathered row would touch D pages), a wrong number
of dimensions, N differing between the two files, a file shorter than its header declares.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from nncli.data.arrays import array_labels
from nncli.data.npzfile import read_npy_header
from nncli.data.types import RawData
from nncli.errors import NncliError

X_FILE, Y_FILE = "X.npy", "y.npy"
X_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.uint8))


def is_array_folder(path: Path) -> bool:
    """Whether the folder ``path`` is an array folder (it holds X.npy or y.npy)."""
    return (path / X_FILE).exists() or (path / Y_FILE).exists()


def read_header(path: Path) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """(shape, dtype, fortran_order, data offset) of the ``.npy`` file at ``path``, its
    size checked against what the header declares; errors name the file."""
    try:
        with open(path, "rb") as handle:
            shape, fortran, dtype, nbytes = read_npy_header(handle, str(path))
            offset = handle.tell()
    except OSError as exc:
        raise NncliError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    held = os.path.getsize(path) - offset
    if nbytes > held:
        raise NncliError(f"{path}: declares shape {shape} of {dtype} ({nbytes:,} bytes) but "
                         f"holds {max(held, 0):,} bytes of data: truncated or damaged")
    return shape, dtype, fortran, offset


def _check_x(path: Path, shape: tuple[int, ...], dtype: np.dtype, fortran: bool) -> None:
    """Refuse an X.npy that cannot be trained on row by row."""
    if len(shape) < 2:
        raise NncliError(f"{path}: X must have shape (N, D) or (N, H, W[, C]), got {shape}")
    if not dtype.isnative or dtype not in X_DTYPES:
        raise NncliError(f"{path}: dtype {dtype}; an array folder's X holds float32, float64 "
                         f"or uint8 in this machine's byte order (convert it, e.g. "
                         f"np.save('X.npy', X.astype(np.float32)))")
    if fortran and math.prod(shape[1:]) > 1 and shape[0] > 1:
        raise NncliError(f"{path}: stored in Fortran (column) order, so a row is scattered "
                         f"over the whole file; save it in C order "
                         f"(np.save('X.npy', np.ascontiguousarray(X)))")


def _labels(path: Path, n: int) -> np.ndarray:
    """The labels of ``y.npy`` at ``path``: (n,), checked, as class-name strings."""
    shape, dtype, _, _ = read_header(path)
    if len(shape) != 1 or shape[0] != n:
        raise NncliError(f"{path}: y must have shape ({n},) to match X.npy, got {shape}")
    if dtype.kind not in "iufbUS":
        raise NncliError(f"{path}: y must hold numbers or strings, got dtype {dtype}")
    try:
        y = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise NncliError(f"{path}: not a readable .npy array "
                         f"({str(exc).splitlines()[0][:200]})") from None
    except MemoryError:
        raise NncliError(f"{path}: not enough memory to load its {n:,} labels") from None
    return array_labels(y, path)


def read_array_folder(path: Path) -> RawData:
    """The array folder at ``path``: X memory-mapped, flattened to (N, D) (``input_shape``
    keeps its shape), and the labels of y.npy (N,) as strings."""
    x_path, y_path = path / X_FILE, path / Y_FILE
    for have, lack in ((x_path, y_path), (y_path, x_path)):
        if have.exists() and not lack.exists():
            raise NncliError(f"{lack}: no such file; an array folder holds {X_FILE} (N, D) "
                             f"and {Y_FILE} (N,) side by side")
    shape, dtype, fortran, _ = read_header(x_path)
    _check_x(x_path, shape, dtype, fortran)
    labels = _labels(y_path, shape[0])
    if shape[0] == 0:
        raise NncliError(f"{path}: contains no examples")
    try:
        X = np.load(x_path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise NncliError(f"{x_path}: cannot map it ({str(exc).splitlines()[0][:200]})") from None
    flat = X.reshape(shape[0], -1)  # a view: C order was checked
    return RawData(X=flat, labels=labels, input_shape=shape[1:], source=str(path),
                   kind="array")
