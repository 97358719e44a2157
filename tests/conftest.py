"""Shared fixtures: small tables and configs written to ``tmp_path``, a hypothesis profile.

The helpers are fixtures that return functions, so test files never import this module.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, settings

# Every property test runs with a modest budget and no deadline (NumPy start-up and the first
# call of a function are slow on a loaded 2-core machine). Tests ask for more or fewer
# examples with their own @settings(max_examples=...).
settings.register_profile(
    "nncli", max_examples=25, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("nncli")


@pytest.fixture(autouse=True)
def _private_image_cache(tmp_path_factory: pytest.TempPathFactory,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read or write the user's image cache (~/.cache/nncli)."""
    monkeypatch.setenv("NNCLI_CACHE_DIR", str(tmp_path_factory.mktemp("image-cache")))


def blobs(n_per_class: int = 8, n_features: int = 4, n_classes: int = 3,
          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs: X (n_per_class * n_classes, n_features) float64, y (N,) int in 0..K-1."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 3.0, size=(n_classes, n_features))
    X = np.concatenate([c + rng.normal(size=(n_per_class, n_features)) for c in centers])
    y = np.repeat(np.arange(n_classes), n_per_class)
    return X, y


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[..., Path]:
    """``write_csv(X, labels, name="train.csv")`` -> path of a table with a ``label`` column."""

    def write(X: np.ndarray, labels: Any, name: str = "train.csv") -> Path:
        path = tmp_path / name
        header = [f"f{j}" for j in range(X.shape[1])] + ["label"]
        lines = [",".join(header)]
        for row, label in zip(X, labels):
            lines.append(",".join(repr(float(v)) for v in row) + f",{label}")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    return write


@pytest.fixture
def write_npz(tmp_path: Path) -> Callable[..., Path]:
    """``write_npz(X, y, name="train.npz")`` -> path of an ``.npz`` holding X and y."""

    def write(X: np.ndarray, y: np.ndarray, name: str = "train.npz") -> Path:
        path = tmp_path / name
        np.savez(path, X=X, y=y)
        return path

    return write


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """``write_config(doc, name="cfg.yaml")`` -> path of the YAML dump of ``doc`` (a dict),
    or of ``doc`` itself when it is already text."""

    def write(doc: dict[str, Any] | str, name: str = "cfg.yaml") -> Path:
        path = tmp_path / name
        text = doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False)
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def table_config(write_csv: Callable[..., Path], write_config: Callable[..., Path]
                 ) -> Callable[..., Path]:
    """``table_config(model=..., loss=..., reg=..., train=...)`` -> a config over a small
    three-class CSV of blobs (classes cat, dog, frog; 4 features; 24 rows)."""

    def make(name: str = "cfg.yaml", **sections: Any) -> Path:
        X, y = blobs()
        names = np.array(["cat", "dog", "frog"])
        data = write_csv(X, names[y])
        doc: dict[str, Any] = {"data": {"train": str(data)}}
        for key, value in sections.items():
            doc[key] = value
        return write_config(doc, name)

    return make
