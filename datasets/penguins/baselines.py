"""scikit-learn's figures on the penguins split, for the README's accuracy table.

Usage (from the repository root): python datasets/penguins/baselines.py

The inputs are nncli's own encoding of the raw CSV (numbers: NA -> training mean, then
standardized; island and sex one-hot, a missing sex its own category), fitted on the whole
of train.csv — the matrices tests/test_tables.py proves equal to scikit-learn's
ColumnTransformer(SimpleImputer(strategy="mean"), OneHotEncoder). Prints the test accuracy
of LogisticRegression and MLPClassifier(32) for seeds 0-3, and of predicting the most
frequent training class.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from nncli.config import config_from_dict
from nncli.data import load_training_data

CONFIG = {"data": {"train": "datasets/penguins/train.csv",
                   "test": "datasets/penguins/test.csv", "label_column": "species"},
          "train": {"dtype": "float64"}}


def main() -> None:
    data = load_training_data(config_from_dict(CONFIG))
    X, y, X_test, y_test = data.train.X, data.train.y, data.test.X, data.test.y
    print(f"train {X.shape}, test {X_test.shape}, inputs: {data.encoding.input_names()}")
    majority = np.bincount(y).argmax()
    print(f"most frequent class: {np.mean(y_test == majority):.4f}")
    for name, make in (
            ("LogisticRegression", lambda s: LogisticRegression(max_iter=5000)),
            ("MLPClassifier(32)", lambda s: MLPClassifier((32,), max_iter=2000, random_state=s))):
        scores = [make(s).fit(X, y).score(X_test, y_test) for s in range(4)]
        print(f"{name}: seed 0 {scores[0]:.4f}, seeds 0-3 {min(scores):.4f}-{max(scores):.4f}")


if __name__ == "__main__":
    main()
