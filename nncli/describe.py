"""What ``nncli info`` reports about a config or a checkpoint, as plain dicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nncli.config import Config, load_config
from nncli.errors import NncliError


def architecture(input_dim: int | None, hidden: tuple[int, ...], n_classes: int | None,
                 activation: str) -> tuple[list[dict[str, Any]], dict[str, int | None]]:
    """Layer descriptions and per-parameter counts; unknown sizes give ``None`` counts."""
    sizes = [input_dim, *hidden, n_classes]
    layers, params = [], {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        known = fan_in is not None and fan_out is not None
        layers.append({
            "name": f"fc{i}", "in": fan_in, "out": fan_out,
            "activation": activation if i < len(sizes) - 1 else "linear",
            "params": fan_in * fan_out + fan_out if known else None,
        })
        params[f"W{i}"] = fan_in * fan_out if known else None
        params[f"b{i}"] = fan_out
    return layers, params


def _summary(cfg: Config, input_dim: int | None, classes: list[str] | None,
             input_shape: tuple[int, ...] | None) -> dict[str, Any]:
    regression = cfg.task == "regression"  # one output unit, the predicted value
    layers, params = architecture(input_dim, cfg.model.hidden,
                                  1 if regression else len(classes) if classes else None,
                                  cfg.model.activation)
    counts = list(params.values())
    info: dict[str, Any] = {
        "model": "linear" if not cfg.model.hidden else "mlp",
        "layers": layers,
        "params": params,
        "total_params": sum(counts) if None not in counts else None,
        "input_dim": input_dim,
        "input_shape": list(input_shape) if input_shape else None,
        "loss": cfg.loss.type,
        "reg_lambda": cfg.reg_lambda,
    }
    if regression:
        info["task"] = "regression"
    elif classes is not None:
        info["classes"] = classes
    return info


def columns_info(encoding: Any) -> list[dict[str, Any]]:
    """Every column of a table ``encoding`` (:class:`nncli.data.Encoding`) in file order:
    name, type (number | category | ignore), category count and inputs."""
    columns: list[dict[str, Any]] = [
        {"name": c.name, "type": c.type,
         "categories": len(c.categories) if c.type == "category" else None,
         "missing_level": c.missing_level if c.type == "category" else None,
         "inputs": c.width} for c in encoding.columns]
    columns += [{"name": name, "type": "ignore", "categories": None, "missing_level": None,
                 "inputs": 0} for name in encoding.ignored]
    return columns


def _table_encoding(raw: Any, cfg: Config) -> Any:
    """The encoding the training table gets, fitted on all its rows (training fits it on
    the rows left after val_split and test_split); None for other sources."""
    from nncli.data import Encoding

    if raw.levels is None:
        return None
    return Encoding.fit(raw.X, raw.levels, raw.features or [], raw.ignored or [],
                        cfg.data.missing, raw.source)


def info_for_config(path: str | Path, overrides: tuple[str, ...] = ()
                    ) -> tuple[dict[str, Any], str | None]:
    """Describe the config at ``path``; returns (info, warning). Reads the training data for
    the input size and classes; if it cannot, sizes are ``None`` and a warning says why."""
    from nncli.data import read_source, sort_classes

    cfg = load_config(path, overrides)
    warning = None
    input_dim = classes = shape = None
    try:
        raw = read_source(cfg.data.train, cfg.data)
        classes = sort_classes(raw.labels.tolist())
        encoding = _table_encoding(raw, cfg)
        shape = raw.input_shape if encoding is None else (encoding.width,)
        input_dim = int(np.prod(shape))
        info = _summary(cfg, input_dim, classes, shape)
        info["data"] = {"train": cfg.data.train, "n": int(raw.X.shape[0]), "kind": raw.kind}
        if encoding is not None:
            info["columns"] = columns_info(encoding)
    except NncliError as exc:
        warning = f"cannot read the training data ({exc}); sizes that depend on it are unknown"
        info = _summary(cfg, input_dim, classes, shape)
    info["config"] = cfg.to_dict()
    return info, warning


def info_for_checkpoint(path: str | Path) -> dict[str, Any]:
    """Describe a checkpoint: architecture, classes, training progress, resolved config."""
    from nncli.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    cfg = ckpt.config
    info = _summary(cfg, int(np.prod(ckpt.input_shape)), ckpt.classes, ckpt.input_shape)
    info["checkpoint"] = {"path": str(path), "epoch": ckpt.epoch, "step": ckpt.step,
                          "dtype": str(ckpt.model.dtype), "normalize": ckpt.normalization.kind}
    if ckpt.encoding is not None:
        info["columns"] = columns_info(ckpt.encoding)
    info["config"] = cfg.to_dict()
    return info


def is_checkpoint_path(path: str | Path) -> bool:
    """True for ``.npz`` files that hold a ``meta`` array, and run folders."""
    path = Path(path)
    if path.is_dir():
        return (path / "checkpoints" / "last.npz").exists()
    return path.suffix.lower() == ".npz"
