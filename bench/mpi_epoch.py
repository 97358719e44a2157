"""Epoch time of ``mpirun -n 2 nncli train`` against one process, same config and batch.

    pip install -e ".[mpi]"
    python bench/mpi_epoch.py [--rows 60000] [--epochs 4] [--rounds 3] [--batch 128]
                              [--hidden 256] [--out bench/RESULTS-mpi.md]
    python bench/mpi_epoch.py --rows 4000 --epochs 2 --rounds 1     # a quick look

Synthetic MNIST-shaped data (``--rows`` x 784 float32, 10 classes) in an .npz, a
784-``hidden``-10 network, sgd, float32, global batch ``--batch``, no validation. Three
ways to train the same config, run in rotating order in every round:

- ``1 process, 2 threads``: plain ``nncli --threads 2 train`` (BLAS uses both cores);
- ``1 process, 1 thread``: ``nncli --threads 1 train``;
- ``mpirun -n 2, 1 thread each``: ``mpirun -n 2 nncli --threads 1 train`` (each rank
  computes half of every batch; one Allreduce of all the gradients per step).

The epoch time is the median of the ``seconds`` column of metrics.csv over the epochs
after the first (the first pays for warm-up); the table reports the median over rounds and
the ratios against the mpirun run measured in the same round. On a machine with 2 cores the
data-parallel run competes with a single process that already uses both cores through
BLAS threads; it can only win where BLAS scales badly (small layers, small batches) or
against the 1-thread process. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

CASES = ("1 process, 2 threads", "1 process, 1 thread", "mpirun -n 2, 1 thread each")


def _mpirun() -> str:
    beside = Path(sys.executable).parent / "mpirun"
    found = str(beside) if beside.exists() else shutil.which("mpirun")
    if found is None:
        sys.exit('mpirun not found: pip install "nncli[mpi]"')
    return found


def write_data(folder: Path, rows: int, seed: int = 0) -> Path:
    """An .npz of ``rows`` x 784 float32 features in [0, 1) and labels 0..9 that depend on
    them (so the loss falls)."""
    rng = np.random.default_rng(seed)
    X = rng.random((rows, 784), dtype=np.float32)
    y = (X[:, :10].argmax(axis=1)).astype(np.int64)
    path = folder / "data.npz"
    np.savez(path, X=X, y=y)
    return path


def write_config(folder: Path, data: Path, args: argparse.Namespace) -> Path:
    doc = {"data": {"train": str(data), "normalize": "none"},
           "model": {"hidden": [args.hidden]},
           "train": {"epochs": args.epochs, "batch_size": args.batch, "lr": 0.05,
                     "optimizer": "sgd", "dtype": "float32"}}
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def command(case: str, config: Path, out: Path) -> list[str]:
    threads = "2" if case == CASES[0] else "1"
    train = [sys.executable, "-m", "nncli.cli", "--threads", threads, "train", str(config),
             "--out", str(out), "--quiet"]
    if case != CASES[2]:
        return train
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    return [_mpirun(), "-n", "2", "--oversubscribe", *root, *train]


def epoch_seconds(run: Path) -> float:
    """Median epoch time of a run, leaving out its first epoch when there are more."""
    with open(run / "metrics.csv", encoding="utf-8") as handle:
        seconds = [float(row["seconds"]) for row in csv.DictReader(handle)]
    return statistics.median(seconds[1:] if len(seconds) > 1 else seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NNCLI_")}
    times: dict[str, list[float]] = {c: [] for c in CASES}
    ratios: dict[str, list[float]] = {c: [] for c in CASES}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = write_config(folder, write_data(folder, args.rows), args)
        for round_no in range(args.rounds):
            order = CASES[round_no % 3:] + CASES[:round_no % 3]
            measured = {}
            for case in order:
                out = folder / f"run-{round_no}-{CASES.index(case)}"
                subprocess.run(command(case, config, out), env=env, check=True,
                               stdout=subprocess.DEVNULL)
                measured[case] = epoch_seconds(out)
                times[case].append(measured[case])
            for case in CASES:
                ratios[case].append(measured[case] / measured[CASES[2]])
    lines = [f"## mpirun -n 2 against one process ({args.rows} x 784 float32, "
             f"784-{args.hidden}-10 sgd, batch {args.batch}, {os.cpu_count()} cores, "
             f"{args.rounds} rounds)", "",
             "| how | epoch seconds (median) | epoch time / mpirun's |", "|---|---:|---:|"]
    for case in CASES:
        lines.append(f"| {case} | {statistics.median(times[case]):.3f} | "
                     f"{statistics.median(ratios[case]):.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
