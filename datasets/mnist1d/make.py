"""Regenerate datasets/mnist1d/: MNIST-1D from the `mnist1d` package's procedural generator.

Usage (from the repository root): python datasets/mnist1d/make.py [--baselines]

Runs mnist1d.data.make_dataset(get_dataset_args()) with the package defaults (5,000 samples,
seed 42, 4,000 train / 1,000 test, length 40, 10 classes); nothing is downloaded. Writes
train.csv and test.csv next to this script with header x0,...,x39,label. Signals are cast to
float32 and written with %.9g, which round-trips float32 exactly; the files are read back and
checked. --baselines also prints the reference test accuracy of a scikit-learn MLP.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from mnist1d.data import get_dataset_args, make_dataset
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).resolve().parent


def write_csv(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    header = ",".join([f"x{i}" for i in range(x.shape[1])] + ["label"])
    table = np.column_stack([x.astype(object), y.astype(object)])
    fmt = ["%.9g"] * x.shape[1] + ["%d"]
    np.savetxt(path, table, fmt=fmt, delimiter=",", header=header, comments="")


def verify(path: Path, x: np.ndarray, y: np.ndarray) -> int:
    lines = path.read_text().splitlines()
    assert lines[0].split(",")[-1] == "label" and len(lines[0].split(",")) == 41, path
    back = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)
    assert back.shape == (len(y), 41), (path, back.shape)
    assert np.array_equal(back[:, :-1].astype(np.float32), x), path
    assert np.array_equal(back[:, -1].astype(np.int64), y), path
    return back.shape[0]


def main() -> None:
    d = make_dataset(get_dataset_args())
    splits = {
        "train": (d["x"].astype(np.float32), d["y"].astype(np.int64)),
        "test": (d["x_test"].astype(np.float32), d["y_test"].astype(np.int64)),
    }
    for name, (x, y) in splits.items():
        path = HERE / f"{name}.csv"
        path.unlink(missing_ok=True)
        write_csv(path, x, y)
        n = verify(path, x, y)
        print(f"mnist1d {name}.csv: {n} rows, 41 columns, per class {np.bincount(y).tolist()}")
    if "--baselines" in sys.argv[1:]:
        (x_tr, y_tr), (x_te, y_te) = splits["train"], splits["test"]
        mlp = MLPClassifier(hidden_layer_sizes=(100, 100), max_iter=1000, random_state=0)
        acc = make_pipeline(StandardScaler(), mlp).fit(x_tr, y_tr).score(x_te, y_te)
        print(f"MLPClassifier((100, 100), max_iter=1000, random_state=0): test accuracy {acc:.4f}")


if __name__ == "__main__":
    main()
