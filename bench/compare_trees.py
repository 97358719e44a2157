"""``nncli train`` of two source trees side by side: is a change as fast as the code before it?

    python bench/compare_trees.py OLD_TREE NEW_TREE [--rounds 7] [--optimizers sgd adam]

Each tree is a checkout of the repository (``git worktree add /tmp/old <commit>``). Every
round trains the headline shape (784-256-10, batch 128, float32; 54,000 synthetic
MNIST-shaped rows from .npz, 3 epochs) once with each tree, in alternating order, each as
its own process with ``PYTHONPATH`` set to the tree; the rate is the training samples/s that
``summary.json`` reports (training only: start-up, loading and validation excluded). The
ratio new/old is taken per round, so the machine's drift cancels out; the median and the
min–max of those ratios are printed, one line per optimizer.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_TRAIN, DIM, CLASSES = 54_000, 784, 10
SETTLE_SECONDS = 0.5  # let the previous process's BLAS threads stop spinning


def make_data(workdir: Path) -> Path:
    """Synthetic MNIST-shaped training rows (float32 in [0, 1], 10 classes) as .npz."""
    rng = np.random.default_rng(0)
    X = rng.random((N_TRAIN, DIM), dtype=np.float32)
    y = rng.integers(0, CLASSES, N_TRAIN)
    path = workdir / "train.npz"
    np.savez(path, X=X, y=y)
    return path


def train_rate(tree: Path, config: Path, out: Path) -> float:
    """Training samples/s of one ``nncli train`` process run from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-m", "nncli.cli", "train", str(config), "--out", str(out),
           "--json", "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return float(json.loads(proc.stdout)["samples_per_sec"])


def compare(old: Path, new: Path, optimizer: str, rounds: int, workdir: Path,
            train_npz: Path) -> tuple[list[float], list[float]]:
    """Per-round rates of the old and the new tree for one optimizer."""
    config = workdir / f"{optimizer}.yaml"
    lr = 0.01 if optimizer == "sgd" else 0.001
    config.write_text(f"name: ab\ndata: {{train: {train_npz}, normalize: none}}\n"
                      f"model: {{hidden: [256]}}\ntrain: {{epochs: 3, batch_size: 128, "
                      f"lr: {lr}, optimizer: {optimizer}}}\n")
    rates: dict[str, list[float]] = {"old": [], "new": []}
    for r in range(rounds):
        order = [("old", old), ("new", new)] if r % 2 == 0 else [("new", new), ("old", old)]
        for label, tree in order:
            time.sleep(SETTLE_SECONDS)
            out = workdir / f"run-{optimizer}-{label}-{r}"
            rates[label].append(train_rate(tree, config, out))
    return rates["old"], rates["new"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--optimizers", nargs="+", default=["sgd", "adam"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        train_npz = make_data(workdir)
        for optimizer in args.optimizers:
            old, new = compare(args.old.resolve(), args.new.resolve(), optimizer,
                               args.rounds, workdir, train_npz)
            ratios = [b / a for a, b in zip(old, new)]
            print(f"{optimizer}: old {statistics.median(old):,.0f} samples/s "
                  f"({min(old):,.0f}–{max(old):,.0f}), new {statistics.median(new):,.0f} "
                  f"({min(new):,.0f}–{max(new):,.0f}); new/old per round: median "
                  f"{statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f})")


if __name__ == "__main__":
    main()
