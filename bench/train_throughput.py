"""Training-step throughput: nncli against PyTorch, scikit-learn and the bare-GEMM bound.

    pip install -e ".[bench]"      # torch==2.13.0 (CPU) and scikit-learn
    python bench/train_throughput.py [--rounds 7] [--quick] [--out bench/RESULTS.md]
    python bench/train_throughput.py --steps-only [--rounds 9]   # textbook vs fused only

In one process, on synthetic MNIST-shaped data (60,000 x 784, 10 classes), rounds
interleave: nncli's training step (``nncli.train.MinibatchStep``: gather, forward, loss,
backward, SGD update), a carefully written textbook NumPy step (softmax only), a PyTorch
eager reference (same architecture, loss and plain SGD,
``torch.set_num_threads`` = cores, data in memory), scikit-learn's
``MLPClassifier(solver="sgd", momentum=0)`` on float32 (softmax only: it has no hinge
loss), and the bound: the step's matrix multiplies alone on the same shapes. Each round
measures every implementation once, in rotating order; ratios come from pairs measured in
the same round, and the table reports medians with min-max. Warm-up rounds come first.

Textbook step against fused step: ``MinibatchStep`` with ``step: textbook``
(``nncli.nn.step``) and ``step: fused`` (``nncli.fast.step``) on 784-256-10, batch 128,
float32, for plain SGD and for adam, all four measured in every round in rotating order;
the ratio fused/textbook is taken per round and per optimizer. ``--steps-only`` runs just
this and replaces its section of RESULTS.md, leaving the rest.

It then times ``nncli train`` as a whole process on an .npz of the same data (epoch wall
time from metrics.csv against the in-process step rate, and peak RSS) and ``nncli
eval``/``predict`` throughput, and writes everything to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nncli.nn.losses import Objective
from nncli.nn.model import MLP
from nncli.nn.optim import Optimizer
from nncli.train import MinibatchStep

N, D, K = 60_000, 784, 10
LR = 0.01
MODELS = {"linear 784-10": (), "784-256-10": (256,), "784-512-256-10": (512, 256)}
TARGET_SECONDS = 0.25  # per measurement
SETTLE_SECONDS = float(os.environ.get("SETTLE", 0.5))  # idle time before each measurement


@dataclass(frozen=True)
class Case:
    model: str
    batch: int
    dtype: str = "float32"
    loss: str = "softmax"

    @property
    def hidden(self) -> tuple[int, ...]:
        return MODELS[self.model]

    def label(self) -> str:
        return f"{self.model} b{self.batch} {self.dtype} {self.loss}"


def cases(quick: bool) -> list[Case]:
    if quick:
        return [Case("784-256-10", 128), Case("784-256-10", 128, loss="svm")]
    out = [Case(m, b) for m in MODELS for b in (32, 128, 512)]
    out += [Case(m, 128, loss="svm") for m in MODELS]
    out += [Case(m, 128, dtype="float64") for m in MODELS]
    return out


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# ---------------------------------------------------------------- implementations
# Each factory returns run(steps) -> seconds for `steps` training steps.

Runner = Callable[[int], float]


def cycling_batches(order: Any, batch: int) -> Iterator[Any]:
    """Full batches of ``order`` (an index permutation, NumPy or torch) over and over."""
    while True:
        for i in range(0, N - batch + 1, batch):
            yield order[i:i + batch]


def timed(step: Callable[[Any], object], batches: Iterator[Any]) -> Runner:
    """run(steps) -> seconds for ``steps`` calls of ``step`` on the next batches."""
    def run(steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            step(next(batches))
        return time.perf_counter() - start

    return run


def nncli_runner(case: Case, X: np.ndarray, y: np.ndarray) -> Runner:
    rng = np.random.default_rng(0)
    model = MLP.create(D, case.hidden, K, "relu", "auto", rng, case.dtype)
    step = MinibatchStep(model, Optimizer("sgd"), X, y, case.batch, Objective(case.loss))
    return timed(lambda idx: step(idx, LR), cycling_batches(rng.permutation(N), case.batch))


def bound_runner(case: Case, X: np.ndarray, y: np.ndarray) -> Runner:
    """The step's GEMMs alone, in nncli's layout (W held as a C-contiguous (in, out) array):
    forward A @ W^T per layer; backward dW^T = A^T dZ per layer and dA = dZ W above layer 1."""
    rng = np.random.default_rng(0)
    sizes = [D, *case.hidden, K]
    Wts = [np.ascontiguousarray(rng.standard_normal((i, o)).astype(case.dtype) * 0.01)
           for i, o in zip(sizes[:-1], sizes[1:])]
    xb = np.ascontiguousarray(X[:case.batch])
    zs = [np.empty((case.batch, o), case.dtype) for o in sizes[1:]]
    das = [np.empty((case.batch, o), case.dtype) for o in sizes[1:]]
    dWts = [np.empty_like(Wt) for Wt in Wts]

    def run(steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            a = xb
            for Wt, z in zip(Wts, zs):
                np.matmul(a, Wt, out=z)
                a = z
            for layer in range(len(Wts) - 1, -1, -1):
                a_prev = xb if layer == 0 else zs[layer - 1]
                dz = zs[layer] if layer == len(Wts) - 1 else das[layer]
                np.matmul(a_prev.T, dz, out=dWts[layer])
                if layer > 0:
                    np.matmul(dz, Wts[layer].T, out=das[layer - 1])
        return time.perf_counter() - start

    return run


def numpy_runner(case: Case, X: np.ndarray, y: np.ndarray) -> Runner | None:
    """A carefully written textbook NumPy step, cs231n style (W: (in, out), scores =
    X W + b), with every array preallocated: take(out=), matmul(out=), in-place ReLU,
    softmax and SGD. What nncli's step adds on top is measured by nncli/numpy."""
    if case.loss != "softmax":
        return None
    rng = np.random.default_rng(0)
    sizes = [D, *case.hidden, K]
    dt = case.dtype
    Ws = [(rng.standard_normal((i, o)) * np.sqrt(2.0 / i)).astype(dt)
          for i, o in zip(sizes[:-1], sizes[1:])]
    bs = [np.zeros(o, dt) for o in sizes[1:]]
    B = case.batch
    xb, yb = np.empty((B, D), dt), np.empty(B, y.dtype)
    zs = [np.empty((B, o), dt) for o in sizes[1:]]
    das = [np.empty((B, o), dt) for o in sizes[1:-1]]
    masks = [np.empty((B, o), bool) for o in sizes[1:-1]]
    dWs = [np.empty_like(W) for W in Ws]
    dbs = [np.empty_like(b) for b in bs]
    rows = np.arange(B)
    batches = cycling_batches(rng.permutation(N), B)
    n_layers = len(Ws)

    def step(idx: np.ndarray) -> None:
        X.take(idx, axis=0, out=xb, mode="clip")
        y.take(idx, out=yb, mode="clip")
        a = xb
        for i in range(n_layers):
            z = np.matmul(a, Ws[i], out=zs[i])
            z += bs[i]
            if i < n_layers - 1:
                np.maximum(z, 0, out=z)
            a = z
        scores = a
        # Training accuracy and loss, as a training loop reports them (nncli does both).
        int(np.count_nonzero(scores.argmax(axis=1) == yb))
        scores -= scores.max(axis=1, keepdims=True)  # softmax cross-entropy, in place
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        float(-np.log(scores[rows, yb]).mean())
        scores[rows, yb] -= 1.0
        scores /= B
        dz = scores
        for i in range(n_layers - 1, -1, -1):
            a_prev = xb if i == 0 else zs[i - 1]
            np.matmul(a_prev.T, dz, out=dWs[i])
            np.sum(dz, axis=0, out=dbs[i])
            if i > 0:
                da = np.matmul(dz, Ws[i].T, out=das[i - 1])
                da *= np.greater(a_prev, 0, out=masks[i - 1])
                dz = da
        for W, dW, b, db in zip(Ws, dWs, bs, dbs):
            W -= np.multiply(dW, LR, out=dW)
            b -= np.multiply(db, LR, out=db)

    return timed(step, batches)


def torch_runner(case: Case, X: np.ndarray, y: np.ndarray) -> Runner | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(cores())
    torch.manual_seed(0)
    dtype = torch.float32 if case.dtype == "float32" else torch.float64
    sizes = [D, *case.hidden, K]
    layers: list[torch.nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(fan_in, fan_out, dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    Xt = torch.from_numpy(X)
    yt = torch.from_numpy(y.astype(np.int64))
    batches = cycling_batches(torch.from_numpy(np.random.default_rng(0).permutation(N)),
                              case.batch)

    def loss_fn(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if case.loss == "svm":
            # multi_margin_loss divides by K; the cost is the same as nncli's hinge.
            return torch.nn.functional.multi_margin_loss(scores, target, margin=1.0)
        return torch.nn.functional.cross_entropy(scores, target)

    def run(steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            idx = next(batches)
            xb, yb = Xt.index_select(0, idx), yt.index_select(0, idx)
            opt.zero_grad(set_to_none=True)
            loss_fn(net(xb), yb).backward()
            opt.step()
        return time.perf_counter() - start

    return run


def sklearn_runner(case: Case, X: np.ndarray, y: np.ndarray) -> Runner | None:
    if case.loss != "softmax":
        return None
    try:
        from sklearn.neural_network import MLPClassifier
    except ImportError:
        return None
    clf = MLPClassifier(hidden_layer_sizes=case.hidden, solver="sgd", momentum=0.0,
                        learning_rate_init=LR, alpha=0.0, batch_size=case.batch, shuffle=True,
                        random_state=0)
    classes = np.arange(K)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.partial_fit(X[:case.batch], y[:case.batch], classes=classes)
    except ValueError:
        return None  # e.g. no hidden layer
    position = [0]

    def run(steps: int) -> float:
        remaining = steps * case.batch
        elapsed = 0.0
        while remaining > 0:  # in passes of at most N rows, so every step is real work
            count = min(remaining, N - N % case.batch)
            i = position[0]
            if i + count > N:
                i = 0
            Xs, ys = X[i:i + count], y[i:i + count]
            start = time.perf_counter()
            clf.partial_fit(Xs, ys)  # one pass over Xs in minibatches of case.batch
            elapsed += time.perf_counter() - start
            position[0] = i + count
            remaining -= count
        return elapsed

    return run


IMPLS = {"nncli": nncli_runner, "numpy": numpy_runner, "torch": torch_runner,
         "sklearn": sklearn_runner, "bound": bound_runner}


@dataclass
class Result:
    case: Case
    rates: dict[str, list[float]] = field(default_factory=dict)
    ratios: dict[str, list[float]] = field(default_factory=dict)


def calibrate(run: Runner, batch: int) -> int:
    """Steps that take about TARGET_SECONDS."""
    steps = 4
    while True:
        elapsed = run(steps)
        if elapsed > 0.05 or steps > 100_000:
            return max(4, int(steps * TARGET_SECONDS / max(elapsed, 1e-6)))
        steps *= 4


def bench_case(case: Case, rounds: int, warmup: int, data: dict[str, tuple]) -> Result:
    X, y = data[case.dtype]
    runners = {name: make(case, X, y) for name, make in IMPLS.items()}
    runners = {k: v for k, v in runners.items() if v is not None}
    steps = {name: calibrate(run, case.batch) for name, run in runners.items()}
    result = Result(case, {k: [] for k in runners})
    names = list(runners)
    for r in range(warmup + rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        rate = {}
        for name in order:
            # Let the previous library's worker threads (OpenBLAS, torch's OpenMP) stop
            # spinning first: they would otherwise steal cores from the next measurement.
            time.sleep(SETTLE_SECONDS)
            rate[name] = steps[name] * case.batch / runners[name](steps[name])
        if r < warmup:
            continue
        for name in names:
            result.rates[name].append(rate[name])
        for ref in ("numpy", "torch", "sklearn", "bound"):
            if ref in rate:
                result.ratios.setdefault(ref, []).append(rate["nncli"] / rate[ref])
        if "numpy" in rate:  # how close the textbook step gets, for comparison
            result.ratios.setdefault("numpy/bound", []).append(rate["numpy"] / rate["bound"])
    return result


def fmt_rate(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (f"{statistics.median(values) / 1000:,.1f}k "
            f"({min(values) / 1000:,.1f}–{max(values) / 1000:,.1f})")


def fmt_ratio(values: list[float] | None) -> str:
    if not values:
        return "n/a"
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


# ---------------------------------------------------------------- textbook vs fused

STEP_CASE = Case("784-256-10", 128)
STEP_KINDS = ("textbook", "fused")
STEP_OPTIMIZERS = ("sgd", "adam")
STEPS_HEADER = "## Textbook step against fused step"


def step_runner(kind: str, optimizer: str, X: np.ndarray, y: np.ndarray) -> Runner:
    """The trainer's MinibatchStep with the training step ``kind`` and ``optimizer``."""
    rng = np.random.default_rng(0)
    model = MLP.create(D, STEP_CASE.hidden, K, "relu", "auto", rng, STEP_CASE.dtype)
    step = MinibatchStep(model, Optimizer(optimizer), X, y, STEP_CASE.batch, Objective(),
                         kind)
    lr = LR if optimizer == "sgd" else 1e-4  # adam: keep the weights finite for many steps
    return timed(lambda idx: step(idx, lr), cycling_batches(rng.permutation(N),
                                                             STEP_CASE.batch))


def compare_steps(rounds: int, warmup: int, X: np.ndarray, y: np.ndarray
                  ) -> dict[str, dict[str, list[float]]]:
    """``{optimizer: {"textbook": rates, "fused": rates, "ratio": fused/textbook per
    round}}``: every round measures the four runners once, the two steps of an optimizer
    back to back (which goes first alternates), so a ratio compares neighbours in time."""
    runners = {(k, o): step_runner(k, o, X, y) for o in STEP_OPTIMIZERS for k in STEP_KINDS}
    steps = {key: calibrate(run, STEP_CASE.batch) for key, run in runners.items()}
    out = {o: {"textbook": [], "fused": [], "ratio": []} for o in STEP_OPTIMIZERS}
    for r in range(warmup + rounds):
        rate = {}
        kinds = STEP_KINDS if r % 2 == 0 else STEP_KINDS[::-1]
        optimizers = STEP_OPTIMIZERS if r % 4 < 2 else STEP_OPTIMIZERS[::-1]
        for key in [(k, o) for o in optimizers for k in kinds]:
            time.sleep(SETTLE_SECONDS)
            rate[key] = steps[key] * STEP_CASE.batch / runners[key](steps[key])
        if r < warmup:
            continue
        for o in STEP_OPTIMIZERS:
            out[o]["textbook"].append(rate["textbook", o])
            out[o]["fused"].append(rate["fused", o])
            out[o]["ratio"].append(rate["fused", o] / rate["textbook", o])
    return out


def steps_section(result: dict[str, dict[str, list[float]]], rounds: int,
                  warmup: int) -> list[str]:
    lines = [
        STEPS_HEADER, "",
        f"`MinibatchStep` ({STEP_CASE.label()}, relu) with `train.step: textbook` "
        "(`nncli/nn/step.py`) and `fused` (`nncli/fast/step.py`), the two back to back in "
        f"every round (alternating which first); {rounds} rounds after {warmup} warm-up, "
        f"{time.strftime('%Y-%m-%d')}, {cores()} cores, OPENBLAS_NUM_THREADS="
        f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}. Samples/s median (min–max); "
        "fused/textbook: median (min–max) of the per-round ratios.", "",
        "| optimizer | textbook | fused | fused/textbook |", "|---|---|---|---|",
    ]
    for o, r in result.items():
        lines.append(f"| {o} | {fmt_rate(r['textbook'])} | {fmt_rate(r['fused'])} | "
                     f"{fmt_ratio(r['ratio'])} |")
    faster = [o for o, r in result.items() if statistics.median(r["ratio"]) >= 1.05]
    lines += ["", "nncli/fast stays while the fused step's median is >= 1.05 for an optimizer "
              "(in this run: " + (", ".join(faster) or "none") + "); `train.step: auto` is "
              "`nncli.build.AUTO_STEP`."]
    return lines


def replace_section(path: Path, header: str, lines: list[str]) -> None:
    """Put ``lines`` in place of the section ``header`` of ``path`` (up to the next
    ``## `` heading), or before the reading guide if it has none yet."""
    old = path.read_text().splitlines() if path.exists() else []
    if header in old:
        start = old.index(header)
        end = next((i for i in range(start + 1, len(old)) if old[i].startswith("## ")),
                   len(old))
    else:
        start = end = next((i for i, line in enumerate(old)
                            if line.startswith("## Reading")), len(old))
    path.write_text("\n".join(old[:start] + lines + [""] + old[end:]).rstrip() + "\n")


# ---------------------------------------------------------------- end to end


def end_to_end(X: np.ndarray, y: np.ndarray, workdir: Path) -> dict:
    """``nncli train`` as a process on .npz files (54,000 train + 6,000 validation rows,
    progress lines on stderr), its epoch time against the in-process step rate measured
    just before and after it, and eval and predict throughput."""
    n_train = N - N // 10
    npz, val_npz = workdir / "mnist-shaped.npz", workdir / "mnist-shaped-val.npz"
    np.savez(npz, X=X, y=y)  # eval reads all 60,000 rows
    train_npz = workdir / "train.npz"
    np.savez(train_npz, X=X[:n_train], y=y[:n_train])
    np.savez(val_npz, X=X[n_train:], y=y[n_train:])
    epochs = 3
    cfg = workdir / "cfg.yaml"
    cfg.write_text(
        f"name: e2e\ndata: {{train: {train_npz}, val: {val_npz}, normalize: none}}\n"
        f"model: {{hidden: [256]}}\ntrain: {{epochs: {epochs}, batch_size: 128, lr: {LR}}}\n")
    run_dir = workdir / "run"
    cmd = [sys.executable, "-m", "nncli.cli", "train", str(cfg), "--out", str(run_dir),
           "--json"]
    step = nncli_runner(Case("784-256-10", 128), X, y)
    steps = calibrate(step, 128)

    def step_rates() -> list[float]:
        rates = []
        for _ in range(3):
            time.sleep(SETTLE_SECONDS)
            rates.append(steps * 128 / step(steps))
        return rates

    rates = step_rates()
    time.sleep(SETTLE_SECONDS)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    rates += step_rates()
    summary = json.loads(proc.stdout)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    epoch_seconds = [r["seconds"] for r in rows]  # training + validation of each epoch
    step_rate = statistics.median(rates)
    ideal = n_train / step_rate
    return {
        "epochs": epochs,
        "epoch_seconds": epoch_seconds,
        "step_rates_around": rates,
        "ideal_epoch_seconds": ideal,
        "process_wall_seconds": wall,
        "summary_samples_per_sec": summary["samples_per_sec"],
        # From the process itself (summary.json): getrusage(RUSAGE_CHILDREN) here would
        # count this big benchmark process, which the child is forked from.
        "peak_rss_mb": summary["peak_rss_mb"],
        "data_mb": X.nbytes / 2**20,
        **eval_and_predict(run_dir / "checkpoints" / "last.npz", npz, X),
    }


def eval_and_predict(ckpt: Path, npz: Path, X: np.ndarray) -> dict[str, float]:
    """``nncli eval`` of ``ckpt`` on all of ``npz`` and ``nncli predict`` of 5,000 CSV rows
    of X from stdin, as processes: rows/s and seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nncli.cli", "eval", str(ckpt), str(npz), "--json"],
                   capture_output=True, check=True)
    eval_seconds = time.perf_counter() - start

    n_predict = 5000
    lines = "\n".join(",".join(f"{v:.4g}" for v in row) for row in X[:n_predict]) + "\n"
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "nncli.cli", "predict", str(ckpt), "-"],
                         input=lines, capture_output=True, text=True, check=True).stdout
    predict_seconds = time.perf_counter() - start
    assert len(out.splitlines()) == n_predict
    return {"eval_rows_per_sec": N / eval_seconds, "eval_seconds": eval_seconds,
            "predict_rows_per_sec": n_predict / predict_seconds,
            "predict_seconds": predict_seconds}


def table_lines(results: list[Result], args: argparse.Namespace,
                versions: dict[str, str]) -> list[str]:
    """The head of RESULTS.md and the per-case table."""
    lines = [
        "# Training-step throughput",
        "",
        f"Written by `python bench/train_throughput.py{' --quick' if args.quick else ''}` on "
        f"{time.strftime('%Y-%m-%d')}, {cores()} cores, "
        + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        f"Synthetic {N:,} x {D} data, {K} classes, plain SGD (lr {LR}). Samples/s: median "
        f"(min–max) of {args.rounds} rounds after {args.warmup} warm-up rounds; ratios are "
        "nncli over the reference measured in the same round, median (min–max).",
        "",
        "| case | nncli | NumPy textbook | torch | sklearn | GEMM bound | nncli/NumPy | "
        "nncli/torch | nncli/sklearn | nncli/bound | NumPy/bound |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        lines.append(
            f"| {res.case.label()} | {fmt_rate(res.rates['nncli'])} | "
            f"{fmt_rate(res.rates.get('numpy', []))} | "
            f"{fmt_rate(res.rates.get('torch', []))} | {fmt_rate(res.rates.get('sklearn', []))} | "
            f"{fmt_rate(res.rates['bound'])} | {fmt_ratio(res.ratios.get('numpy'))} | "
            f"{fmt_ratio(res.ratios.get('torch'))} | {fmt_ratio(res.ratios.get('sklearn'))} | "
            f"{fmt_ratio(res.ratios.get('bound'))} | {fmt_ratio(res.ratios.get('numpy/bound'))} |")
    return lines


def e2e_lines(e2e: dict) -> list[str]:
    """The end-to-end section of RESULTS.md."""
    epoch_med = statistics.median(e2e["epoch_seconds"])
    ideal = e2e["ideal_epoch_seconds"]
    return [
        "",
        "## `nncli train` end to end (784-256-10, batch 128, float32, .npz input)",
        "",
        "54,000 training and 6,000 validation rows, one progress line per epoch on stderr.",
        "",
        f"- epoch wall time, training + validation (metrics.csv `seconds`, median of "
        f"{e2e['epochs']}): {epoch_med:.3f} s; the in-process step rate measured just "
        f"before and after the process ({statistics.median(e2e['step_rates_around']):,.0f} "
        f"samples/s) predicts {ideal:.3f} s for the training alone -> ratio "
        f"{epoch_med / ideal:.3f}",
        f"- whole process ({e2e['epochs']} epochs, including start-up and loading): "
        f"{e2e['process_wall_seconds']:.2f} s",
        f"- peak RSS {e2e['peak_rss_mb']:.0f} MB for {e2e['data_mb']:.0f} MB of data "
        f"({e2e['peak_rss_mb'] / e2e['data_mb']:.2f}x)",
        f"- `nncli eval` on the 60,000 rows: {e2e['eval_rows_per_sec']:,.0f} rows/s "
        f"({e2e['eval_seconds']:.2f} s as a process)",
        f"- `nncli predict` on 5,000 CSV rows from stdin: "
        f"{e2e['predict_rows_per_sec']:,.0f} rows/s ({e2e['predict_seconds']:.2f} s)",
    ]


def versions() -> dict[str, str]:
    found = {"numpy": np.__version__, "python": platform.python_version()}
    for mod in ("torch", "sklearn"):
        try:
            found[mod] = __import__(mod).__version__
        except ImportError:
            found[mod] = "not installed"
    return found


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="only 784-256-10 at batch 128")
    parser.add_argument("--no-e2e", action="store_true", help="skip the whole-process runs")
    parser.add_argument("--steps-only", action="store_true",
                        help="only textbook against fused step (replaces its section)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    rng = np.random.default_rng(0)
    X32 = rng.standard_normal((N, D), dtype=np.float32)
    y = rng.integers(0, K, N)
    data = {"float32": (X32, y), "float64": (X32.astype(np.float64), y)}

    steps = compare_steps(args.rounds, args.warmup, X32, y)
    for o, r in steps.items():
        print(f"step {o:5s} textbook {fmt_rate(r['textbook']):>24s}  fused "
              f"{fmt_rate(r['fused']):>24s}  fused/textbook {fmt_ratio(r['ratio'])}",
              flush=True)
    if args.steps_only:
        replace_section(args.out, STEPS_HEADER, steps_section(steps, args.rounds, args.warmup))
        print(f"wrote {args.out}")
        return

    results = []
    for case in cases(args.quick):
        res = bench_case(case, args.rounds, args.warmup, data)
        results.append(res)
        print(f"{case.label():40s} nncli {fmt_rate(res.rates['nncli']):>24s}  "
              f"/numpy {fmt_ratio(res.ratios.get('numpy')):>18s}  "
              f"/torch {fmt_ratio(res.ratios.get('torch')):>18s}  "
              f"/sklearn {fmt_ratio(res.ratios.get('sklearn')):>18s}  "
              f"/bound {fmt_ratio(res.ratios.get('bound')):>18s}  "
              f"(numpy/bound {fmt_ratio(res.ratios.get('numpy/bound'))})", flush=True)
    lines = table_lines(results, args, versions())
    if not args.no_e2e:
        with tempfile.TemporaryDirectory() as tmp:
            e2e = end_to_end(X32, y, Path(tmp))
        print(json.dumps(e2e, indent=1))
        lines += e2e_lines(e2e)
    lines += [""] + steps_section(steps, args.rounds, args.warmup)
    notes = Path(__file__).with_name("RESULTS-notes.md")
    if notes.exists():  # hand-written reading guide, kept across runs
        lines += ["", notes.read_text().rstrip()]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
