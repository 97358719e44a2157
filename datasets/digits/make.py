"""Regenerate datasets/digits/: scikit-learn's 8x8 handwritten digits as grayscale PNGs.

Usage (from the repository root): python datasets/digits/make.py [--baselines]

Writes train/<class>/<index>.png and test/<class>/<index>.png next to this script, where
<index> is the image's position in sklearn.datasets.load_digits() zero-padded to 4 digits and
pixel = round(value * 255 / 16). The split is stratified 75/25 with random_state=0. Previous
output is removed first; the written PNGs are read back and checked. --baselines also prints
reference test accuracies of two scikit-learn models.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).resolve().parent


def to_pixels(images: np.ndarray) -> np.ndarray:
    """Map digit values 0..16 to uint8 0..255 (no ties except 127.5 -> 128 either way)."""
    return np.rint(images * 255.0 / 16.0).astype(np.uint8)


def write_split(name: str, idx: np.ndarray, pixels: np.ndarray, y: np.ndarray) -> None:
    for i in idx:
        folder = HERE / name / str(y[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[i]).save(folder / f"{i:04d}.png")


def verify(
    name: str, idx: np.ndarray, pixels: np.ndarray, images: np.ndarray, y: np.ndarray
) -> int:
    files = sorted((HERE / name).glob("*/*.png"))
    assert len(files) == len(idx), (name, len(files), len(idx))
    for f in files:
        i, label = int(f.stem), int(f.parent.name)
        with Image.open(f) as im:
            assert im.mode == "L" and im.size == (8, 8)
            arr = np.asarray(im)
        assert label == y[i] and np.array_equal(arr, pixels[i]), f
        assert np.array_equal(np.rint(arr * 16.0 / 255.0), images[i]), f
    return len(files)


def baselines(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray) -> None:
    models = {
        "LogisticRegression(max_iter=5000)": LogisticRegression(max_iter=5000),
        "MLPClassifier((128,), max_iter=1000, random_state=0)": MLPClassifier(
            hidden_layer_sizes=(128,), max_iter=1000, random_state=0
        ),
    }
    for label, model in models.items():
        acc = make_pipeline(StandardScaler(), model).fit(x_tr, y_tr).score(x_te, y_te)
        print(f"{label}: test accuracy {acc:.4f}")


def main() -> None:
    data = load_digits()
    images, y = data.images, data.target
    pixels = to_pixels(images)
    idx_tr, idx_te = train_test_split(np.arange(len(y)), test_size=0.25, stratify=y, random_state=0)
    for name in ("train", "test"):
        shutil.rmtree(HERE / name, ignore_errors=True)
    write_split("train", idx_tr, pixels, y)
    write_split("test", idx_te, pixels, y)
    n_tr = verify("train", idx_tr, pixels, images, y)
    n_te = verify("test", idx_te, pixels, images, y)
    print(f"digits: {n_tr} train / {n_te} test PNGs verified")
    for name, idx in (("train", idx_tr), ("test", idx_te)):
        print(f"  {name} per class: {np.bincount(y[idx]).tolist()}")
    if "--baselines" in sys.argv[1:]:
        x = data.data / 16.0
        baselines(x[idx_tr], y[idx_tr], x[idx_te], y[idx_te])


if __name__ == "__main__":
    main()
