"""Training from a memory-mapped array folder against the same rows in memory.

    python bench/memmap_train.py [--rows 1000000] [--dir /var/tmp/nncli-memmap]
                                 [--epochs 1] [--keep]

Makes (or reuses, when its shape matches) an array folder ``DIR/X.npy`` (rows x 784
float32, 3.1 GB at the default 1,000,000 rows; written in chunks, never held whole) and
``DIR/y.npy`` (10 classes), reads the file once so that it sits in the page cache, then
trains a 784-256-10 MLP (sgd, batch 128, float32, ``normalize: standard``) for
``--epochs`` epochs twice (per round; ``--rounds`` alternates their order), each in a
child process of its own:

- ``memmap``: ``data.train: DIR`` — the array folder, X memory-mapped, statistics in
  blocks, rows normalized per batch, block-shuffled epochs;
- ``memory``: the same rows copied into memory first (``np.load`` without ``mmap_mode``),
  then the ordinary in-memory path (normalized in place, ``rng.permutation`` epochs).

While each child runs, this process samples its ``RssAnon`` and ``RssFile``
(``/proc/<pid>/status``) every 0.2 s. Printed: per mode the training throughput
(``summary.json``'s ``samples_per_sec``: the batch loops only), the wall time of the whole
run (the statistics pass included), peak RssAnon and RssFile; then the throughput ratio
memmap / memory. The issue's target at 1,000,000 rows: peak RssAnon under 1 GiB for
``memmap``, ratio >= 0.8 while the file is in the page cache. ``--rows`` shrinks the data
(run it at 100,000 rows on a shared machine); the folder is deleted afterwards unless
``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

D, CLASSES, CHUNK = 784, 10, 50_000


def make_folder(folder: Path, rows: int) -> None:
    """X.npy (rows, 784) float32 written chunk by chunk (reused when it has that shape),
    y.npy the class of each row's largest of 10 fixed projections (learnable labels)."""
    x_path = folder / "X.npy"
    if x_path.exists() and (folder / "y.npy").exists():
        X = np.load(x_path, mmap_mode="r")
        if X.shape == (rows, D) and X.dtype == np.float32:
            return
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    project = rng.normal(size=(D, CLASSES)).astype(np.float32)
    X = np.lib.format.open_memmap(x_path, mode="w+", dtype=np.float32, shape=(rows, D))
    y = np.empty(rows, dtype=np.int64)
    for start in range(0, rows, CHUNK):
        block = rng.random((min(CHUNK, rows - start), D), dtype=np.float32)
        X[start:start + len(block)] = block
        y[start:start + len(block)] = (block @ project).argmax(axis=1)
    X.flush()
    del X
    np.save(folder / "y.npy", y)


def warm(path: Path) -> float:
    """Read the file once (into the page cache); returns the seconds it took."""
    start = time.perf_counter()
    with open(path, "rb") as handle:
        while handle.read(64 << 20):
            pass
    return time.perf_counter() - start


def child(mode: str, folder: Path, epochs: int, out: Path) -> None:
    """Train in this process and print the summary as one JSON line."""
    import nncli.data.prepare as prepare
    from nncli.config import config_from_dict
    from nncli.train import train

    if mode == "memory":  # the same rows as an in-memory source
        from nncli.data.arrayfolder import read_array_folder

        raw = read_array_folder(folder)
        raw.X = np.load(folder / "X.npy")  # a plain array: the in-memory path
        prepare.read_source = lambda path, data_cfg: raw  # type: ignore[assignment]
    cfg = config_from_dict({
        "name": f"bench-{mode}", "data": {"train": str(folder), "normalize": "standard"},
        "model": {"hidden": [256]},
        "train": {"epochs": epochs, "batch_size": 128, "lr": 0.01, "optimizer": "sgd",
                  "dtype": "float32"}})
    result = train(cfg, out=out)
    print(json.dumps(result.summary))


def status_kib(pid: int) -> dict[str, int]:
    """RssAnon and RssFile of process ``pid`` in KiB (empty once it has ended)."""
    found = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                key = line.split(":")[0]
                if key in ("RssAnon", "RssFile"):
                    found[key] = int(line.split()[1])
    except OSError:
        pass
    return found


def measure(mode: str, folder: Path, epochs: int, work: Path) -> dict[str, float]:
    """Run the child for ``mode``, sampling its memory every 0.2 s."""
    command = [sys.executable, __file__, "--child", mode, "--dir", str(folder),
               "--epochs", str(epochs), "--out", str(work / f"run-{mode}")]
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    peaks = {"RssAnon": 0, "RssFile": 0}

    def sample() -> None:
        while proc.poll() is None:
            for key, value in status_kib(proc.pid).items():
                peaks[key] = max(peaks[key], value)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    stdout, _ = proc.communicate()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{mode}: the training child failed (exit {proc.returncode})")
    summary = json.loads(stdout.strip().splitlines()[-1])
    return {"samples_per_sec": summary["samples_per_sec"],
            "wall": time.perf_counter() - start,
            "rss_anon_mib": peaks["RssAnon"] / 1024, "rss_file_mib": peaks["RssFile"] / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp/nncli-memmap"))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of both modes, their order alternating; the median "
                             "ratio is printed")
    parser.add_argument("--keep", action="store_true", help="keep the array folder")
    parser.add_argument("--child", choices=["memmap", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.dir, args.epochs, args.out)
        return
    folder = args.dir / f"rows-{args.rows}"
    make_folder(folder, args.rows)
    size = (folder / "X.npy").stat().st_size
    seconds = warm(folder / "X.npy")
    print(f"X.npy: {args.rows:,} x {D} float32, {size / 1e9:.2f} GB; "
          f"read once in {seconds:.1f} s ({size / seconds / 1e9:.1f} GB/s)")
    ratios = []
    for round_no in range(args.rounds):
        modes = ("memmap", "memory") if round_no % 2 == 0 else ("memory", "memmap")
        with tempfile.TemporaryDirectory(prefix="nncli-memmap-runs-") as work:
            results = {mode: measure(mode, folder, args.epochs, Path(work)) for mode in modes}
        for mode in ("memmap", "memory"):
            r = results[mode]
            print(f"{mode:7s} {r['samples_per_sec']:>10,.0f} samples/s  wall {r['wall']:6.1f} s"
                  f"  peak RssAnon {r['rss_anon_mib']:7.1f} MiB  "
                  f"RssFile {r['rss_file_mib']:7.1f} MiB")
        ratios.append(results["memmap"]["samples_per_sec"]
                      / results["memory"]["samples_per_sec"])
        print(f"round {round_no + 1}: throughput memmap / memory: {ratios[-1]:.2f}", flush=True)
    if args.rounds > 1:
        print(f"median memmap / memory over {args.rounds} rounds: {np.median(ratios):.2f} "
              f"(range {min(ratios):.2f}-{max(ratios):.2f})")
    if not args.keep:
        shutil.rmtree(folder)
    os.sync() if hasattr(os, "sync") else None


if __name__ == "__main__":
    main()
