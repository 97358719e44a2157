"""Regenerate datasets/breast_cancer/: Breast Cancer Wisconsin (Diagnostic) as two CSV files.

Usage (from the repository root): python datasets/breast_cancer/make.py [--baselines]

Writes train.csv and test.csv next to this script: 30 feature columns named like
`mean_radius` plus a final string `label` column (`malignant` / `benign`). The split is
stratified 75/25 with random_state=0. Floats are written with Python's repr (shortest exact
round-trip); the files are read back and checked. --baselines also prints the reference test
accuracy of a scikit-learn logistic regression.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).resolve().parent


def write_csv(path: Path, header: list[str], x: np.ndarray, labels: list[str]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for row, label in zip(x, labels):
            w.writerow([repr(float(v)) for v in row] + [label])


def verify(path: Path, header: list[str], x: np.ndarray, labels: list[str]) -> int:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == header, path
    back = np.array([[float(v) for v in r[:-1]] for r in rows[1:]])
    assert np.array_equal(back, x), path
    assert [r[-1] for r in rows[1:]] == labels, path
    return len(rows) - 1


def main() -> None:
    data = load_breast_cancer()
    x, y = data.data, data.target
    header = [n.lower().replace(" ", "_") for n in data.feature_names] + ["label"]
    names = [str(n) for n in data.target_names]  # index 0 = malignant, 1 = benign
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)
    counts = {}
    for name, xs, ys in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        path = HERE / f"{name}.csv"
        path.unlink(missing_ok=True)
        labels = [names[i] for i in ys]
        write_csv(path, header, xs, labels)
        counts[name] = verify(path, header, xs, labels)
        per_class = {n: labels.count(n) for n in names}
        print(f"breast_cancer {name}.csv: {counts[name]} rows, {len(header)} columns, {per_class}")
    if "--baselines" in sys.argv[1:]:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
        acc = model.fit(x_tr, y_tr).score(x_te, y_te)
        print(f"LogisticRegression(max_iter=5000): test accuracy {acc:.4f}")


if __name__ == "__main__":
    main()
