"""Regenerate datasets/penguins/train.csv and test.csv from penguins.csv, as published.

Usage (from the repository root): python datasets/penguins/make.py

penguins.csv is the file the `palmerpenguins` package (0.1.6, on PyPI) ships as
palmerpenguins/data/penguins.csv, byte for byte: 344 rows, string columns (species, island,
sex) and NA for missing values. No row or cell is changed: the split copies each data line
verbatim, stratified by species, 75/25, with scikit-learn's
train_test_split(..., stratify=species, random_state=0); row order is the split's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
SHA256 = "f204db2c753b0937caac3cb35258562c14f073e4bbc76be24b4c51ce22767a93"


def main() -> None:
    source = HERE / "penguins.csv"
    data = source.read_bytes()
    assert hashlib.sha256(data).hexdigest() == SHA256, f"{source} is not the published file"
    header, *rows = data.decode("utf-8").splitlines(keepends=True)
    species = [row.split(",", 1)[0] for row in rows]
    train, test = train_test_split(rows, test_size=0.25, stratify=species, random_state=0)
    for name, part in (("train", train), ("test", test)):
        path = HERE / f"{name}.csv"
        path.write_text(header + "".join(part), encoding="utf-8", newline="")
        counts = {s: sum(r.startswith(s + ",") for r in part) for s in sorted(set(species))}
        gaps = sum(r.count(",NA") for r in part)
        print(f"penguins {name}.csv: {len(part)} rows, {gaps} NA cells, {counts}")
    assert sorted(train + test) == sorted(rows)


if __name__ == "__main__":
    main()
