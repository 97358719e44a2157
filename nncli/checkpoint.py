"""Checkpoint files: one ``.npz`` of plain arrays plus a JSON ``meta`` string array.

Writes are atomic (temp file in the same folder, fsync, rename), so a crash at any moment
leaves the previous checkpoint intact; loading uses ``allow_pickle=False`` and never
unpickles anything.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nncli import __version__
from nncli.config import Config, config_from_dict
from nncli.data import Normalization
from nncli.errors import NncliError
from nncli.model import MLP

FORMAT = 1


@dataclass
class Checkpoint:
    """Everything a checkpoint holds, in memory."""

    model: MLP
    config: Config
    classes: list[str]
    input_shape: tuple[int, ...]
    normalization: Normalization
    epoch: int = 0
    step: int = 0
    optimizer_state: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # rng state, features, kind, history


def _default_permissions(fd: int) -> None:
    """mkstemp creates files 0600; give ours the mode ``open()`` would: 0666 & ~umask."""
    if not hasattr(os, "fchmod"):
        return
    mask = os.umask(0o022)  # the only way to read the umask is to set it; put it right back
    os.umask(mask)
    try:
        os.fchmod(fd, 0o666 & ~mask)
    except OSError:  # a file system without modes: keep what mkstemp gave
        pass


def atomic_write_bytes(path: Path, write: Any, durable: bool = True) -> None:
    """Call ``write(file_object)`` on a temp file next to ``path``, fsync, then rename it over
    ``path``. On any failure the temp file is removed and ``path`` is untouched.
    ``durable=False`` skips the fsyncs (for caches, which are rebuilt if lost)."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        _default_permissions(fd)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise
    if not durable:
        return
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> None:
    """Write ``ckpt`` to ``path`` atomically. Refuses non-finite parameters."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    for name, value in ckpt.model.params.items():
        if not np.isfinite(value).all():
            raise NncliError(f"{path}: refusing to save non-finite values in {name}")
        arrays[name] = value
    if ckpt.normalization.shift is not None:
        arrays["norm_shift"] = ckpt.normalization.shift
        arrays["norm_scale"] = ckpt.normalization.scale
    arrays.update(ckpt.optimizer_state)
    meta = {
        "format": FORMAT,
        "nncli_version": __version__,
        "config": ckpt.config.to_dict(),
        "classes": list(ckpt.classes),
        "input_shape": list(ckpt.input_shape),
        "normalize": ckpt.normalization.kind,
        "activation": ckpt.model.activation_name,
        "epoch": int(ckpt.epoch),
        "step": int(ckpt.step),
        **ckpt.extra,
    }
    arrays["meta"] = np.array(json.dumps(meta))
    try:
        atomic_write_bytes(path, lambda handle: np.savez(handle, **arrays))
    except OSError as exc:
        raise NncliError(f"{path}: cannot write checkpoint ({exc.strerror or exc}); "
                         f"the previous file, if any, is unchanged") from None


def _check_numbers(params: dict[str, np.ndarray], sizes: list[int],
                   arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Raise ValueError unless the arrays and the meta fields that training, eval and predict
    use have the types and shapes this checkpoint's config implies (a file edited by hand or
    damaged must be an error naming it, not a crash deep inside NumPy)."""
    dtype = params["W1"].dtype
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"W1: dtype {dtype}, expected float32 or float64")
    for i in range(1, len(sizes)):
        for name, shape in ((f"W{i}", (sizes[i], sizes[i - 1])), (f"b{i}", (sizes[i],))):
            value = params[name]
            if value.shape != shape or value.dtype != dtype:
                raise ValueError(f"{name}: {value.dtype} {value.shape}, its config needs "
                                 f"{dtype} {shape}")
            if not np.isfinite(value).all():
                raise ValueError(f"{name}: non-finite values")
    if ("norm_shift" in arrays) != ("norm_scale" in arrays):
        raise ValueError("norm_shift/norm_scale: one without the other")
    for name in ("norm_shift", "norm_scale"):
        value = arrays.get(name)
        if value is not None and (value.shape != (sizes[0],) or value.dtype.kind != "f"
                                  or not np.isfinite(value).all()):
            raise ValueError(f"{name}: expected {sizes[0]} finite numbers")
    if "norm_scale" in arrays and not (arrays["norm_scale"] != 0).all():
        raise ValueError("norm_scale: zero")
    for name, value in arrays.items():  # optimizer state: opt_<slot>_<param>
        slot, _, key = name[4:].partition("_")
        if not name.startswith("opt_") or key not in params:
            continue
        shape = () if slot == "t" else params[key].shape
        if value.shape != shape or value.dtype.kind not in "fiu" or not np.isfinite(value).all():
            raise ValueError(f"{name}: expected finite numbers of shape {shape}")
    for key in ("epoch", "step", "wait"):
        if key in meta and not (type(meta[key]) is int and meta[key] >= 0):
            raise ValueError(f"{key}: expected a non-negative integer")
    for key in ("best_value", "best_epoch"):
        if meta.get(key) is not None and type(meta[key]) not in (int, float):
            raise ValueError(f"{key}: expected a number or null")
    features, weights = meta.get("features"), meta.get("class_weights")
    if features is not None and not (isinstance(features, list)
                                     and all(isinstance(f, str) for f in features)):
        raise ValueError("features: expected a list of column names")
    if weights is not None and not (isinstance(weights, list) and len(weights) == sizes[-1]
                                    and all(type(w) in (int, float) for w in weights)):
        raise ValueError(f"class_weights: expected {sizes[-1]} numbers")
    if "rng_state" in meta:
        try:
            np.random.default_rng().bit_generator.state = meta["rng_state"]
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"rng_state: {exc}") from None


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; errors name the file."""
    path = Path(path)
    if path.is_dir():
        candidate = path / "checkpoints" / "last.npz"
        if not candidate.exists():
            raise NncliError(f"{path}: is a folder without checkpoints/last.npz")
        path = candidate
    if not path.exists():
        raise NncliError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        raise NncliError(f"{path}: not an nncli checkpoint (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise NncliError(f"{path}: holds pickled Python objects; refusing to load it") \
                from None
        raise NncliError(f"{path}: not an nncli checkpoint ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise NncliError(f"{path}: not an nncli checkpoint (cannot read it as .npz: {exc})") \
            from None
    if "meta" not in arrays:
        raise NncliError(f"{path}: not an nncli checkpoint (no 'meta' array)")
    try:
        meta = json.loads(str(arrays.pop("meta")))
        if not isinstance(meta, dict):
            raise ValueError("meta is not an object")
    except ValueError as exc:
        raise NncliError(f"{path}: damaged checkpoint meta ({exc})") from None
    if type(meta.get("format")) is not int or meta["format"] != FORMAT:
        raise NncliError(f"{path}: checkpoint format {meta.get('format')!r} is not supported "
                         f"by nncli {__version__} (expected {FORMAT})")
    try:
        config = config_from_dict(meta["config"])
        classes, input_shape = meta["classes"], meta["input_shape"]
        if not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)
                and len(set(classes)) == len(classes)):
            raise ValueError("classes: expected a list of distinct names")
        if not (isinstance(input_shape, list) and input_shape
                and all(type(s) is int and s > 0 for s in input_shape)):
            raise ValueError("input_shape: expected a list of positive integers")
        n_layers = len(config.model.hidden) + 1
        params = {}
        for i in range(1, n_layers + 1):
            params[f"W{i}"] = arrays.pop(f"W{i}")
            params[f"b{i}"] = arrays.pop(f"b{i}")
        _check_numbers(params, [int(np.prod(input_shape)), *config.model.hidden, len(classes)],
                       arrays, meta)
    except (KeyError, TypeError, ValueError, NncliError) as exc:
        raise NncliError(f"{path}: damaged checkpoint (missing or invalid {exc})") from None
    model = MLP(params, config.model.activation)
    input_shape = tuple(input_shape)
    if "norm_shift" in arrays:
        norm = Normalization(meta.get("normalize", config.data.normalize),
                             arrays.pop("norm_shift"), arrays.pop("norm_scale"))
    else:
        norm = Normalization("none")
    reserved = {"format", "nncli_version", "config", "classes", "input_shape", "normalize",
                "activation", "epoch", "step"}
    return Checkpoint(
        model=model, config=config, classes=classes, input_shape=input_shape,
        normalization=norm, epoch=meta.get("epoch", 0), step=meta.get("step", 0),
        optimizer_state={k: v for k, v in arrays.items() if k.startswith("opt_")},
        extra={k: v for k, v in meta.items() if k not in reserved},
    )
