"""Regenerate datasets/diabetes/: scikit-learn's diabetes regression table, unscaled, as CSV.

Usage (from the repository root): python datasets/diabetes/make.py [--baselines]

Writes train.csv and test.csv next to this script: the 10 baseline variables (age, sex, bmi,
bp, s1..s6) in their original units, as scikit-learn ships them in
sklearn/datasets/data/diabetes_data_raw.csv.gz (``load_diabetes(scaled=False)``), and a
final numeric ``target`` column (disease progression one year after baseline). Split:
``train_test_split(test_size=0.25, random_state=0)`` (a fixed split: a regression target
has no classes to stratify over). Numbers are written with Python's repr (an integral
value without its ".0"), exact round trips; the files are read back and checked.
--baselines prints the scikit-learn reference figures on the same split (test RMSE and R^2
of the mean, LinearRegression, and MLPRegressor over seeds 0-3).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_diabetes
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).resolve().parent


def number(value: float) -> str:
    """The shortest exact decimal of ``value``; an integral one without ".0"."""
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


def write_csv(path: Path, header: list[str], x: np.ndarray, y: np.ndarray) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for row, target in zip(x, y):
            w.writerow([number(v) for v in row] + [number(target)])


def verify(path: Path, header: list[str], x: np.ndarray, y: np.ndarray) -> int:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == header, path
    back = np.array([[float(v) for v in r] for r in rows[1:]])
    assert np.array_equal(back[:, :-1], x) and np.array_equal(back[:, -1], y), path
    return len(rows) - 1


def split() -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(header, x_train, x_test, y_train, y_test) of the fixed split."""
    data = load_diabetes(scaled=False)
    header = [str(n) for n in data.feature_names] + ["target"]
    x_tr, x_te, y_tr, y_te = train_test_split(data.data, data.target, test_size=0.25,
                                              random_state=0)
    return header, x_tr, x_te, y_tr, y_te


def baselines(x_tr: np.ndarray, x_te: np.ndarray, y_tr: np.ndarray, y_te: np.ndarray) -> None:
    """Test RMSE and R^2 of scikit-learn's models on the split (MLPRegressor: seeds 0-3)."""
    def score(model: object, name: str) -> tuple[float, float]:
        pred = model.fit(x_tr, y_tr).predict(x_te)  # type: ignore[attr-defined]
        rmse, r2 = float(np.sqrt(mean_squared_error(y_te, pred))), float(r2_score(y_te, pred))
        print(f"{name}: test RMSE {rmse:.2f}  R2 {r2:.4f}")
        return rmse, r2

    score(DummyRegressor(strategy="mean"), "mean of the training targets")
    score(LinearRegression(), "LinearRegression")
    results = [score(make_pipeline(StandardScaler(), TransformedTargetRegressor(
        MLPRegressor(hidden_layer_sizes=(32,), alpha=1e-3, learning_rate_init=1e-3,
                     max_iter=2000, early_stopping=True, validation_fraction=0.15,
                     n_iter_no_change=30, random_state=seed),
        transformer=StandardScaler())), f"MLPRegressor(32) seed {seed}") for seed in range(4)]
    rmses, r2s = zip(*results)
    print(f"MLPRegressor(32) seeds 0-3: RMSE {min(rmses):.2f}-{max(rmses):.2f}  "
          f"R2 {min(r2s):.4f}-{max(r2s):.4f}")


def main() -> None:
    header, x_tr, x_te, y_tr, y_te = split()
    for name, xs, ys in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        path = HERE / f"{name}.csv"
        path.unlink(missing_ok=True)
        write_csv(path, header, xs, ys)
        rows = verify(path, header, xs, ys)
        print(f"diabetes {name}.csv: {rows} rows, {len(header)} columns, target "
              f"{ys.min():g}..{ys.max():g} (mean {ys.mean():.2f})")
    if "--baselines" in sys.argv[1:]:
        baselines(x_tr, x_te, y_tr, y_te)


if __name__ == "__main__":
    main()
