"""Checkpoint files: one ``.npz`` of plain arrays plus a JSON ``meta`` string array.

Writes are atomic (temp file in the same folder, fsync, rename), so a crash at any moment
leaves the previous checkpoint intact; loading uses ``allow_pickle=False`` and never
unpickles anything.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nncli import __version__
from nncli.config import Config, check_run_name, config_from_dict
from nncli.data import Normalization
from nncli.data.encoding import Encoding
from nncli.errors import NncliError
from nncli.files import atomic_write_bytes, refuse_special_file
from nncli.interrupts import held
from nncli.nn.model import MLP
from nncli.text import short_repr

FORMAT = 1
# Format 1's meta keys in the order nncli writes them (new files stay byte-identical to
# older nncli's). Keys the loader does not know are ignored.
META_KEYS = ("format", "nncli_version", "config", "classes", "input_shape", "normalize",
             "activation", "epoch", "step", "rng_state", "best_value", "best_epoch", "wait",
             "features", "data_kind", "class_weights", "rows", "target_shift", "target_scale",
             "encoding")


@dataclass
class ResumeState:
    """What ``--resume`` continues from besides the arrays: the shuffling RNG, the early
    stopping state and the metric rows so far."""

    rng_state: dict[str, Any] | None = None  # bit_generator.state; None: start from the seed
    best_value: float | None = None  # the early-stopping metric's best value and its
    best_epoch: int | None = None  # epoch; both None before the first improvement
    wait: int = 0  # epochs since the last improvement
    rows: list[dict[str, Any]] | None = None  # one per epoch; None (older files): the logs'

    def to_meta(self) -> dict[str, Any]:
        """The meta keys; an absent RNG state or row list is left out, as older files lack
        them."""
        meta: dict[str, Any] = {"best_value": self.best_value, "best_epoch": self.best_epoch,
                                "wait": self.wait}
        if self.rng_state is not None:
            meta["rng_state"] = self.rng_state
        if self.rows is not None:
            meta["rows"] = self.rows
        return meta

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> ResumeState:
        """The resume state in a checked meta (:func:`_check_resume_counters`); absent keys
        take the defaults."""
        return cls(rng_state=meta.get("rng_state"), best_value=meta.get("best_value"),
                   best_epoch=meta.get("best_epoch"), wait=meta.get("wait", 0),
                   rows=meta.get("rows"))


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
    resume: ResumeState = field(default_factory=ResumeState)
    # What eval and predict need to read data as training did:
    features: list[str] | None = None  # a table's training columns, in order
    data_kind: str | None = None  # images, table or array; None in older files
    class_weights: np.ndarray | None = None  # (K,) float64, the loss's per-class weights
    # task: regression: the network predicts (t - target_shift) / target_scale (None for
    # a classifier, and in older files)
    target_shift: float | None = None
    target_scale: float | None = None
    encoding: Encoding | None = None  # a table's columns -> inputs; None in older files


def _meta(ckpt: Checkpoint) -> dict[str, Any]:
    """The JSON meta of ``ckpt``, keys in :data:`META_KEYS` order."""
    weights = ckpt.class_weights
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
        **ckpt.resume.to_meta(),
        "features": ckpt.features,
        "data_kind": ckpt.data_kind,
        "class_weights": None if weights is None else weights.tolist(),
        "target_shift": ckpt.target_shift,  # null for a classifier
        "target_scale": ckpt.target_scale,
        "encoding": None if ckpt.encoding is None else ckpt.encoding.to_json(),
    }
    return {key: meta[key] for key in META_KEYS if key in meta}


def _savez_held(handle: Any, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez(handle, **arrays)`` with Ctrl-C/SIGTERM held to its end: zipfile turns a
    KeyboardInterrupt raised inside its bookkeeping into a ValueError and an "Exception
    ignored" traceback (see :mod:`nncli.interrupts`). The interrupt then abandons the
    complete temp file like any other."""
    with held():
        np.savez(handle, **arrays)


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
    arrays["meta"] = np.array(json.dumps(_meta(ckpt)))
    try:
        atomic_write_bytes(path, lambda handle: _savez_held(handle, arrays))
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
        if slot == "t":  # adam's update count
            if (value.shape != () or value.dtype.kind not in "iu" or int(value) < 0):
                raise ValueError(f"{name}: expected a non-negative integer count")
            continue
        shape = params[key].shape
        if value.shape != shape or value.dtype.kind != "f" or not np.isfinite(value).all():
            raise ValueError(f"{name}: expected finite numbers of shape {shape}")
        if slot == "u" and not (value >= 0).all():  # adam's mean of squared gradients
            raise ValueError(f"{name}: negative values")
    _check_resume_counters(meta, sizes[-1])


def _count(meta: dict[str, Any], key: str) -> int:
    value = meta.get(key, 0)
    if not (type(value) is int and value >= 0):
        raise ValueError(f"{key}: expected a non-negative integer, got "
                         f"{short_repr(value)}")
    return value


def _check_resume_counters(meta: dict[str, Any], n_classes: int) -> None:
    """The training state beside the arrays: counters (epoch, step, wait: non-negative
    integers, wait <= epoch), early-stopping best (best_value finite and best_epoch in
    1..epoch, or both null), features, class weights (``n_classes`` finite numbers >= 0)
    and the shuffling RNG state (PCG64's exact layout, each integer in its range)."""
    epoch = _count(meta, "epoch")
    _count(meta, "step")
    if _count(meta, "wait") > epoch:
        raise ValueError(f"wait: {meta['wait']} epochs without improvement after {epoch}")
    best_value, best_epoch = meta.get("best_value"), meta.get("best_epoch")
    if (best_value is None) != (best_epoch is None):
        raise ValueError("best_value/best_epoch: one is null and the other not")
    if best_value is not None and not (type(best_value) in (int, float)
                                       and np.isfinite(best_value)):
        raise ValueError(f"best_value: expected a finite number or null, got "
                         f"{short_repr(best_value)}")
    if best_epoch is not None and not (type(best_epoch) is int and 1 <= best_epoch <= epoch):
        raise ValueError(f"best_epoch: expected an epoch in 1..{epoch} or null, got "
                         f"{short_repr(best_epoch)}")
    features, weights = meta.get("features"), meta.get("class_weights")
    if features is not None and not (isinstance(features, list)
                                     and all(isinstance(f, str) for f in features)):
        raise ValueError("features: expected a list of column names")
    if weights is not None and not (
            isinstance(weights, list) and len(weights) == n_classes
            and all(type(w) in (int, float) and np.isfinite(w) and w >= 0 for w in weights)):
        raise ValueError(f"class_weights: expected {n_classes} finite numbers >= 0")
    if "rng_state" in meta:
        _check_rng_state(meta["rng_state"])


def _check_rng_state(state: Any) -> None:
    """``state`` must be what ``np.random.default_rng().bit_generator.state`` gives (PCG64:
    128-bit ``state`` and ``inc``, ``has_uint32`` 0/1, a 32-bit ``uinteger``), checked
    field by field: NumPy's own setter accepts floats and crashes on big integers."""
    def integer(value: Any, bits: int, name: str) -> None:
        if not (type(value) is int and 0 <= value < 2 ** bits):
            raise ValueError(f"rng_state: {name} must be an integer in [0, 2^{bits}), got "
                             f"{short_repr(value)}")

    if not (isinstance(state, dict) and state.get("bit_generator") == "PCG64"
            and set(state) == {"bit_generator", "state", "has_uint32", "uinteger"}
            and isinstance(state["state"], dict) and set(state["state"]) == {"state", "inc"}):
        raise ValueError("rng_state: expected the state of a PCG64 generator "
                         "{bit_generator, state: {state, inc}, has_uint32, uinteger}")
    integer(state["state"]["state"], 128, "state.state")
    integer(state["state"]["inc"], 128, "state.inc")
    integer(state["has_uint32"], 1, "has_uint32")
    integer(state["uinteger"], 32, "uinteger")
    try:
        np.random.default_rng().bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ValueError(f"rng_state: {exc}") from None


def _with_safe_name(raw: Any) -> Any:
    """A checkpoint's config with a run name that is not one folder name (accepted before
    names were checked, e.g. ``exp/a``) dropped: loading does not depend on the name."""
    if isinstance(raw, dict) and isinstance(raw.get("name"), str):
        try:
            check_run_name(raw["name"])
        except NncliError:
            return {**raw, "name": None}
    return raw


def checkpoint_file(path: str | Path) -> Path:
    """The file a checkpoint argument names: a run folder stands for its last.npz."""
    path = Path(path)
    return path / "checkpoints" / "last.npz" if path.is_dir() else path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (or a run folder's last.npz);
    errors name the file."""
    path = _existing_checkpoint(path)
    arrays = _read_arrays(path)
    meta = _read_meta(path, arrays)
    try:
        config, params = _checked_contents(meta, arrays)
        target = _target_scaling(meta, config)
        encoding = _checked_encoding(meta)
    except (KeyError, TypeError, ValueError, NncliError) as exc:
        raise NncliError(f"{path}: damaged checkpoint (missing or invalid {exc})") from None
    if "norm_shift" in arrays:
        norm = Normalization(meta.get("normalize", config.data.normalize),
                             arrays.pop("norm_shift"), arrays.pop("norm_scale"))
    else:
        norm = Normalization("none")
    weights, kind = meta.get("class_weights"), meta.get("data_kind")
    return Checkpoint(
        model=MLP(params, config.model.activation), config=config, classes=meta["classes"],
        input_shape=tuple(meta["input_shape"]), normalization=norm,
        epoch=meta.get("epoch", 0), step=meta.get("step", 0),
        optimizer_state={k: v for k, v in arrays.items() if k.startswith("opt_")},
        resume=ResumeState.from_meta(meta), features=meta.get("features"),
        data_kind=kind if isinstance(kind, str) else None,
        class_weights=None if weights is None else np.asarray(weights, dtype=np.float64),
        encoding=encoding,
        **target,
    )


def _target_scaling(meta: dict[str, Any], config: Config) -> dict[str, float | None]:
    """A regression checkpoint's target_shift and target_scale (finite, the scale not 0;
    raises ValueError), or None for both of a classifier's."""
    if config.task != "regression":
        return {"target_shift": None, "target_scale": None}
    shift, scale = meta.get("target_shift"), meta.get("target_scale")
    for name, value in (("target_shift", shift), ("target_scale", scale)):
        if not (type(value) in (int, float) and np.isfinite(value)):
            raise ValueError(f"{name}: expected a finite number, got {short_repr(value)}")
    if scale == 0:
        raise ValueError("target_scale: zero")
    return {"target_shift": float(shift), "target_scale": float(scale)}


def _checked_encoding(meta: dict[str, Any]) -> Encoding | None:
    """The table encoding of a checked meta, which must give the model's input size and
    the feature columns; None when absent (older files, images, arrays)."""
    if meta.get("encoding") is None:
        return None
    encoding = Encoding.from_json(meta["encoding"])
    if encoding.width != int(np.prod(meta["input_shape"])):
        raise ValueError(f"encoding: {encoding.width} inputs, input_shape "
                         f"{meta['input_shape']}")
    if meta.get("features") is not None and meta["features"] != encoding.names:
        raise ValueError("encoding: its columns are not the features")
    return encoding


def _existing_checkpoint(path: str | Path) -> Path:
    """The checkpoint file ``path`` names, checked to be a regular file holding an .npz
    archive whose members' headers are sane (sizes against memory, no object arrays, a
    header of sane length), before np.load reads any of it."""
    given, path = Path(path), checkpoint_file(path)
    if given.is_dir() and not path.exists():
        raise NncliError(f"{given}: is a folder without checkpoints/last.npz")
    if not path.exists():
        raise NncliError(f"{path}: no such checkpoint file")
    refuse_special_file(path, "a checkpoint")
    if not zipfile.is_zipfile(path):
        raise NncliError(f"{path}: not an nncli checkpoint (not an .npz archive)")
    from nncli.data.npzfile import check_members

    check_members(path)
    return path


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of the archive at ``path``, never unpickling anything."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise NncliError(f"{path}: holds pickled Python objects; refusing to load it") \
                from None
        raise NncliError(f"{path}: not an nncli checkpoint ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise NncliError(f"{path}: not an nncli checkpoint (cannot read it as .npz: {exc})") \
            from None


def _read_meta(path: Path, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The JSON object of the ``meta`` array (taken out of ``arrays``), of format 1."""
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
    return meta


def _checked_contents(meta: dict[str, Any], arrays: dict[str, np.ndarray]
                      ) -> tuple[Config, dict[str, np.ndarray]]:
    """The config and the parameters (taken out of ``arrays``), after checking them, the
    classes, the input shape, the other arrays and the resume state; raises KeyError,
    TypeError, ValueError or NncliError naming what is missing or invalid."""
    config = config_from_dict(_with_safe_name(meta["config"]))
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
    outputs = 1 if config.task == "regression" else len(classes)
    _check_numbers(params, [int(np.prod(input_shape)), *config.model.hidden, outputs],
                   arrays, meta)
    return config, params
