"""Builders shared by test_data.py, test_train.py and test_inference.py.

Plain functions (not fixtures): tiny synthetic tables and configs written to a folder, and a
CLI runner that keeps stdout and stderr apart.
"""

from __future__ import annotations

import builtins
import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from click.testing import CliRunner, Result

from nncli.cli import main

ROOT = Path(__file__).resolve().parents[1]


def blobs(n_per_class: int = 10, n_features: int = 4, n_classes: int = 3, seed: int = 0,
          spread: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs around random centers: X (n_per_class * n_classes, n_features), y (N,)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, spread, size=(n_classes, n_features))
    X = np.concatenate([c + rng.normal(size=(n_per_class, n_features)) for c in centers])
    return X, np.repeat(np.arange(n_classes), n_per_class)


def separable(n_per_class: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three linearly separable classes in 2-D: unit-variance blobs at distance ~10."""
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 8.0], [-7.0, -4.0], [7.0, -4.0]])
    X = np.concatenate([c + 0.8 * rng.normal(size=(n_per_class, 2)) for c in centers])
    return X, np.repeat(np.arange(3), n_per_class)


def table_text(X: np.ndarray, labels: Sequence[Any], header: Sequence[str] | None = None,
               label_column: str = "label", label_pos: int | None = None,
               delimiter: str = ",") -> str:
    """A table: feature values written with ``repr`` (exact round trip), the label column at
    ``label_pos`` (default last)."""
    D = X.shape[1]
    names = list(header) if header is not None else [f"f{j}" for j in range(D)]
    pos = D if label_pos is None else label_pos
    names.insert(pos, label_column)
    lines = [delimiter.join(names)]
    for row, label in zip(X, labels):
        cells = [repr(float(v)) for v in row]
        cells.insert(pos, str(label))
        lines.append(delimiter.join(cells))
    return "\n".join(lines) + "\n"


def write_table(path: Path, X: np.ndarray, labels: Sequence[Any], **kw: Any) -> Path:
    if "delimiter" not in kw and path.suffix in (".tsv", ".tab"):
        kw["delimiter"] = "\t"
    path.write_text(table_text(X, labels, **kw), encoding="utf-8")
    return path


def write_yaml(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def config_doc(data_path: str | Path, /, **sections: Any) -> dict[str, Any]:
    """A config dict training on ``data_path``; ``data=`` entries merge into its data section."""
    doc: dict[str, Any] = {"data": {"train": str(data_path), **sections.pop("data", {})}}
    doc.update(sections)
    return doc


def cli(*args: str, input: str | None = None) -> Result:
    """Run ``nncli ARGS`` in-process; ``result.stdout`` and ``result.stderr`` are separate."""
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def cli_subprocess(*args: str, input: str | None = None, cwd: Path | None = None,
                   timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m nncli.cli ARGS`` as a real process (real stderr, real exit code)."""
    env = {k: v for k, v in os.environ.items() if k not in ("NNCLI_DEBUG", "PYTHONWARNINGS")}
    return subprocess.run([sys.executable, "-m", "nncli.cli", *map(str, args)], input=input,
                          capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


def train_run(out: Path, doc: dict[str, Any], *extra: str, config_name: str = "cfg.yaml"
              ) -> Path:
    """``nncli train`` the config ``doc`` into run directory ``out``; asserts exit 0."""
    config = write_yaml(out.parent / config_name, doc)
    result = cli("train", config, "--out", out, "--quiet", *extra)
    assert result.exit_code == 0, result.stderr
    return out


def metrics_csv(run: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of ``run/metrics.csv``."""
    rows = list(csv.reader(io.StringIO((run / "metrics.csv").read_text(encoding="utf-8"))))
    return rows[0], rows[1:]


def metrics_jsonl(run: Path) -> list[dict[str, Any]]:
    text = (run / "metrics.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def load_npz(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays of a checkpoint (without ``meta``) and its parsed ``meta`` JSON."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    return arrays, meta


def forward(arrays: dict[str, np.ndarray], X_raw: np.ndarray, activation: str = "relu"
            ) -> np.ndarray:
    """Class scores (N, K) of a checkpoint's network computed directly from its arrays, in
    float64: normalize with norm_shift/norm_scale, then ``a = act(a W^T + b)`` per layer."""
    a = np.asarray(X_raw, dtype=np.float64)
    if "norm_shift" in arrays:
        a = (a - arrays["norm_shift"]) / arrays["norm_scale"]
    n_layers = sum(1 for k in arrays if k[0] == "W" and k[1:].isdigit())
    acts = {"relu": lambda z: np.maximum(z, 0.0), "tanh": np.tanh,
            "sigmoid": lambda z: 1 / (1 + np.exp(-z)), "linear": lambda z: z,
            "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z)}
    for i in range(1, n_layers + 1):
        a = a @ arrays[f"W{i}"].astype(np.float64).T + arrays[f"b{i}"].astype(np.float64)
        if i < n_layers:
            a = acts[activation](a)
    return a


def softmax(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def hide_package(monkeypatch: Any, package: str) -> None:
    """Make ``import package`` (and its submodules) fail as if it were not installed, for
    the rest of the test (``monkeypatch``: pytest's fixture)."""
    real_import = builtins.__import__

    def missing(name: str, *rest: Any, **kw: Any) -> Any:
        if name.split(".")[0] == package:
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *rest, **kw)

    monkeypatch.setattr(builtins, "__import__", missing)
