"""Benchmark: peak memory and speed of the table reader (:func:`nncli.data.read_table`).

Generates, once, a few tables in ``--dir`` (default ``$TMPDIR/nncli-table-bench``) and reads
each in a fresh subprocess, so that the peak resident set size (``VmHWM`` of the child,
cross-checked with ``getrusage(RUSAGE_CHILDREN)``) is the reader's alone:

- ``mnist1d``   ``datasets/mnist1d/train.csv`` (4,000 x 40, 2 MB)
- ``wide2k``    40 rows x 2,000 columns of one-digit numbers (171 kB, as in issue 10)
- ``wide50k``   40 rows x 50,000 columns of one-digit numbers (4.4 MB)
- ``longlabel`` 1,000 rows x 10 columns, one label of 100,000 characters
- ``mnist``     60,000 x 784 integers 0..255 plus a label (~110 MB, like MNIST as CSV)

Each child runs under an address-space cap (``--cap-gb``, default 8) so that a reader that
would need tens of GiB fails with ``MemoryError`` instead of taking the machine down.
Figures: seconds (best of ``--repeat``), rows/s, MB/s of file, peak RSS in MB, and the
baseline RSS of a child that imports nncli and reads nothing.

Usage::

    python bench/table_memory.py                    # all cases
    python bench/table_memory.py --cases wide2k wide50k
    PYTHONPATH=/tmp/old-nncli python bench/table_memory.py   # another checkout's reader
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, resource, sys, time
cap = int(sys.argv[3])
if cap:
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
from pathlib import Path
from nncli.config import config_from_dict
from nncli.data import read_table
path = sys.argv[1]
cfg = config_from_dict({"data": {"train": path, "label_column": sys.argv[2]}}).data
result = {}
if path != "-":
    start = time.perf_counter()
    try:
        raw = read_table(Path(path), cfg)
        result["rows"], result["cols"] = int(raw.X.shape[0]), int(raw.X.shape[1])
    except BaseException as exc:  # a benchmark reports every failure
        result["error"] = f"{type(exc).__name__}: {str(exc)[:120]}"
    result["seconds"] = time.perf_counter() - start
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        result["vmhwm_mb"] = int(line.split()[1]) / 1024
print(json.dumps(result))
"""


def write_numbers(path: Path, rows: int, cols: int, fmt: str, seed: int = 0) -> None:
    """A table of ``rows`` x ``cols`` features (``fmt`` "digit": integers 0..9,
    "byte": integers 0..255) and a ``label`` column of 10 classes, written in blocks."""
    rng = np.random.default_rng(seed)
    with path.open("w", encoding="utf-8") as out:
        out.write(",".join([f"c{j}" for j in range(cols)] + ["label"]) + "\n")
        for start in range(0, rows, 1000):
            n = min(1000, rows - start)
            if fmt == "byte":
                block = rng.integers(0, 256, size=(n, cols)).astype(str)
            else:
                block = rng.integers(0, 10, size=(n, cols)).astype(str)
            labels = rng.integers(0, 10, size=n).astype(str)
            out.write("\n".join(",".join(row) + "," + lab for row, lab in zip(block, labels)))
            out.write("\n")


def write_long_label(path: Path) -> None:
    """1,000 rows x 10 features, labels ``a``/``b``, and one label of 100,000 characters."""
    rng = np.random.default_rng(1)
    with path.open("w", encoding="utf-8") as out:
        out.write(",".join([f"c{j}" for j in range(10)] + ["label"]) + "\n")
        for i in range(1000):
            label = "x" * 100_000 if i == 500 else "ab"[i % 2]
            out.write(",".join(f"{v:.3f}" for v in rng.normal(size=10)) + f",{label}\n")


CASES = {
    "mnist1d": lambda d: ROOT / "datasets" / "mnist1d" / "train.csv",
    "wide2k": lambda d: _make(d / "wide2k.csv", lambda p: write_numbers(p, 40, 2000, "digit")),
    "wide50k": lambda d: _make(d / "wide50k.csv", lambda p: write_numbers(p, 40, 50_000,
                                                                           "digit")),
    "longlabel": lambda d: _make(d / "longlabel.csv", write_long_label),
    "mnist": lambda d: _make(d / "mnist784.csv", lambda p: write_numbers(p, 60_000, 784,
                                                                          "byte")),
}


def _make(path: Path, writer) -> Path:  # noqa: ANN001 - a callable writing ``path``
    if not path.exists():
        tmp = path.with_suffix(".partial")
        writer(tmp)
        tmp.replace(path)
    return path


def measure(path: str, cap_bytes: int) -> dict:
    """Read ``path`` ("-" = import only) in a child; its JSON result plus ru_maxrss."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # cwd: not this checkout, so that PYTHONPATH (or the installed nncli) decides what runs
    proc = subprocess.run([sys.executable, "-c", CHILD, path, "label", str(cap_bytes)],
                          capture_output=True, text=True, env=dict(os.environ),
                          cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    result = json.loads(proc.stdout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if after > before:  # ru_maxrss of children is the max over all of them so far
        result["maxrss_mb"] = after / 1024
    return result


def main() -> None:
    """Generate the tables, read each in a subprocess, print one line per case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "nncli-table-bench")
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cap-gb", type=float, default=8.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    cap = int(args.cap_gb * (1 << 30))
    base = measure("-", cap)
    print(f"baseline (import only): peak RSS {base.get('vmhwm_mb', 0):.0f} MB", file=sys.stderr)
    rows = []
    for name in args.cases:
        path = CASES[name](args.dir)
        size_mb = path.stat().st_size / 1e6
        runs = [measure(str(path), cap) for _ in range(max(1, args.repeat))]
        good = [r for r in runs if "error" not in r]
        best = min(good, key=lambda r: r["seconds"]) if good else runs[0]
        peak = max(r.get("vmhwm_mb", 0.0) for r in runs)
        row = {"case": name, "file_mb": round(size_mb, 3), "peak_rss_mb": round(peak, 1),
               "baseline_rss_mb": round(base.get("vmhwm_mb", 0.0), 1)}
        if good:
            row.update(rows=best["rows"], cols=best["cols"], seconds=round(best["seconds"], 3),
                       rows_per_s=round(best["rows"] / best["seconds"]),
                       mb_per_s=round(size_mb / best["seconds"], 1))
        else:
            row["error"] = best.get("error", "?")
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            text = (f"{row['seconds']:8.3f} s {row['rows_per_s']:>10,} rows/s "
                    f"{row['mb_per_s']:7.1f} MB/s" if good else f"  {row['error']}")
            print(f"{name:10s} {size_mb:8.3f} MB  peak RSS {peak:8.1f} MB {text}", flush=True)


if __name__ == "__main__":
    main()
