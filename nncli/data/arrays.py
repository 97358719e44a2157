"""The ``.npz`` data source: an archive with ``X`` (N, D) or (N, H, W[, C]) and labels ``y``
(N,), read through :mod:`nncli.data.npzfile` (every member's header checked before anything
is loaded, never unpickling)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from nncli.data.labels import canonical_label
from nncli.data.npzfile import check_members, load_arrays
from nncli.data.types import RawData, row_blocks
from nncli.errors import NncliError


def _first_non_finite_row(X: np.ndarray) -> int | None:
    """Index of the first row of X: (N, D) holding NaN or inf, checked in blocks of rows so
    that no full-size boolean temporary is made; None if all are finite."""
    for rows in row_blocks(X):
        finite = np.isfinite(X[rows]).all(axis=1)
        if not finite.all():
            return rows.start + int(np.flatnonzero(~finite)[0])
    return None


def array_labels(y: np.ndarray, path: Path) -> np.ndarray:
    """Labels y: (N,) of numbers or strings as class-name strings (N,) (byte strings
    decoded, integral numbers written as integers: :func:`canonical_label`); a non-finite
    number is an error naming the example. Each distinct value is converted once."""
    if y.dtype.kind == "S":  # byte strings (e.g. from h5py or Python 2): decode, not "b'cat'"
        y = np.char.decode(y, "utf-8", errors="replace")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        row = int(np.flatnonzero(~np.isfinite(y))[0])
        raise NncliError(f"{path}: y has a non-finite label in example {row + 1}")
    uniq, inverse = np.unique(y, return_inverse=True)
    names = np.array([canonical_label(v) for v in uniq.tolist()], dtype=str)
    return names[inverse.reshape(-1)] if len(y) else names


def load_npz(path: Path) -> RawData:
    """An ``.npz`` with ``X`` (N, D) or (N, H, W[, C]) and ``y`` (N,). Never unpickles."""
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
    labels = array_labels(y, path)
    return RawData(X=flat, labels=labels, input_shape=tuple(int(s) for s in X.shape[1:]),
                   source=str(path), kind="array")
