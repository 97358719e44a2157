"""Run safety: the run directory and the checkpoint state under hostile conditions.

- No write of nncli follows a symbolic link it did not create (a link planted in a run
  directory never truncates the file it points to).
- One writer per run directory: a second ``train`` into it, or a ``--resume`` while it still
  trains, is refused with the holder's pid; the lock dies with its process.
- A run that fails before training writes nothing; a new run that ends before its first
  checkpoint leaves nothing behind, and never touches or points at another run.
- Tampered resume state (metric rows, RNG state, counters, early-stopping best, class
  weights, optimizer state) is one ``Error:`` naming the checkpoint and the field, before
  anything is written.
- A network too large for the memory is refused up front, naming ``model.hidden`` and GB.
- ``name`` is one folder name: it cannot reach outside ``runs/``.

Signals are sent at a known phase through ``nncli.testhooks.pause_here`` (``NNCLI_TEST_PAUSE``),
never after a sleep.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from helpers_data import blobs, table_text

import nncli.memory as model_module
import nncli.train as train_module
from nncli.cli import main
from nncli.errors import NncliError
from nncli.files import atomic_write_bytes
from nncli.nn.model import MLP
from nncli.nn.optim import Optimizer
from nncli.rundir import RunDir

# ---------------------------------------------------------------- helpers


def invoke(*args: Any) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error_line(result: Any, exit_code: int = 2) -> str:
    """The single ``Error:`` line of a refused command (no traceback, no internal error)."""
    assert result.exit_code == exit_code, (result.exit_code, result.stderr, result.stdout)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "internal error" not in lines[0] and "Traceback" not in result.output
    return lines[0]


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root`` (links as their target text): bytes and mtime_ns."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            out[str(path.relative_to(root))] = (os.readlink(path).encode(), 0)
        elif path.is_file():
            out[str(path.relative_to(root))] = (path.read_bytes(), path.stat().st_mtime_ns)
    return out


def write_config(folder: Path, filename: str = "cfg.yaml", **sections: Any) -> Path:
    """A small table config (3 classes, 4 features, an 8-unit MLP, 2 epochs) in ``folder``."""
    data = folder / "train.csv"
    if not data.exists():
        X, y = blobs(n_per_class=8, n_features=4)
        data.write_text(table_text(X, np.array(["cat", "dog", "frog"])[y]), encoding="utf-8")
    doc: dict[str, Any] = {"data": {"train": str(data)}, "model": {"hidden": [8]},
                           "train": {"epochs": 2, "batch_size": 8, "dtype": "float64"}}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    path = folder / filename
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def process_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NNCLI_TEST_PAUSE")}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", **extra)
    return env


def run_process(*args: Any, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nncli.cli", *map(str, args)],
                          capture_output=True, text=True, env=process_env(), timeout=timeout)


def wait_for_pause(pause_file: Path, phase: str, proc: subprocess.Popen[str]) -> int:
    """The pid in the ``paused <phase> <pid>`` line the test hook writes (the process must
    stay alive until then)."""
    deadline = time.monotonic() + 60
    while True:
        if pause_file.exists():
            for line in pause_file.read_text().splitlines():
                if line.startswith(f"paused {phase} "):
                    return int(line.split()[2])
        assert proc.poll() is None, ("ended before pausing", proc.communicate())
        assert time.monotonic() < deadline, "no pause line within 60 s"
        time.sleep(0.01)


def rewrite_checkpoint(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite checkpoint ``path`` in place with ``change(arrays)`` applied (meta as a dict)."""
    with np.load(path, allow_pickle=False) as z:
        arrays: dict[str, Any] = {k: z[k] for k in z.files}
    arrays["meta"] = json.loads(str(arrays["meta"]))
    change(arrays)
    arrays["meta"] = np.array(json.dumps(arrays["meta"]))
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


@pytest.fixture
def finished_run(tmp_path: Path) -> tuple[Path, Path]:
    """(config, run): a finished 2-epoch run, resumable with --set train.epochs=4."""
    cfg = write_config(tmp_path)
    result = invoke("train", cfg, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.stderr
    return cfg, tmp_path / "run"


# ---------------------------------------------------------------- 1. symbolic links


def test_links_planted_in_an_empty_run_directory_are_never_written_through(
        tmp_path: Path) -> None:
    """``ln -s ~/precious out/.nncli-write-test`` (and links named like the run's logs) must
    leave ``precious`` intact: the run writes its own files, the links are replaced."""
    cfg = write_config(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    targets = {}
    for name in (".nncli-write-test", "metrics.csv", "metrics.jsonl", "summary.json"):
        target = tmp_path / f"precious-{name.strip('.')}"
        target.write_text("precious data\n")
        (out / name).symlink_to(target)
        targets[name] = target
    # Links named like a run's files make the folder one a run would replace: refused.
    result = invoke("train", cfg, "--out", out, "--quiet")
    assert result.exit_code == 2 and "which a run would replace" in result.stderr
    for name, target in targets.items():
        assert target.read_text() == "precious data\n", name
    for name in ("metrics.csv", "metrics.jsonl", "summary.json"):
        (out / name).unlink()
    result = invoke("train", cfg, "--out", out, "--quiet")  # the old probe's name alone
    assert result.exit_code == 0, result.stderr
    for name, target in targets.items():
        assert target.read_text() == "precious data\n", name
    assert (out / ".nncli-write-test").is_symlink()  # not ours: left as it was


def test_an_atomic_write_replaces_a_link_and_not_its_target(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.write_text("precious data\n")
    (tmp_path / "config.yaml").symlink_to(precious)
    atomic_write_bytes(tmp_path / "config.yaml", lambda h: h.write(b"seed: 0\n"))
    assert precious.read_text() == "precious data\n"
    assert not (tmp_path / "config.yaml").is_symlink()
    assert (tmp_path / "config.yaml").read_bytes() == b"seed: 0\n"


def test_a_metrics_append_does_not_follow_a_link(tmp_path: Path) -> None:
    """A link swapped in for metrics.csv while a run trains: the append is refused."""
    run = RunDir(tmp_path / "run")
    run.create()
    run.start_metrics()
    precious = tmp_path / "precious"
    precious.write_text("precious data\n")
    (run.path / "metrics.csv").unlink()
    (run.path / "metrics.csv").symlink_to(precious)
    row = {"epoch": 1, "step": 1, "lr": 0.1, "loss": 1.0, "data_loss": 1.0, "reg_loss": 0.0,
           "train_acc": 0.5, "val_loss": None, "val_acc": None, "seconds": 0.1}
    with pytest.raises(NncliError, match="metrics.csv: cannot append the metrics of epoch 1"):
        run.append_metrics(row)
    assert precious.read_text() == "precious data\n"


def test_a_link_named_like_a_run_file_counts_as_a_run(tmp_path: Path) -> None:
    """A (dangling) ``config.yaml`` or ``checkpoints`` link: the folder holds a run, the
    new run is refused and the links are left alone."""
    cfg = write_config(tmp_path)
    for name in ("config.yaml", "checkpoints"):
        out = tmp_path / f"out-{name}"
        out.mkdir()
        (out / name).symlink_to(tmp_path / "nowhere")
        line = one_error_line(invoke("train", cfg, "--out", out, "--quiet"))
        assert f"{out}: already holds a run" in line
        assert sorted(p.name for p in out.iterdir()) == [name] and (out / name).is_symlink()


# ---------------------------------------------------------------- 2. one writer per run


def test_a_resume_while_the_run_still_trains_is_refused_with_its_pid(tmp_path: Path) -> None:
    """A holds its run at the test hook after its first epoch; a --resume of that run is
    refused naming A's pid, and so is a new run into it. A killed with SIGKILL releases the
    lock (the kernel does), and the run then resumes to the end with one row per epoch."""
    cfg = write_config(tmp_path, train={"epochs": 4})
    run = tmp_path / "run"
    pause_file = tmp_path / "pauses"
    holder = subprocess.Popen(
        [sys.executable, "-m", "nncli.cli", "train", str(cfg), "--out", str(run), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=process_env(NNCLI_TEST_PAUSE="train", NNCLI_TEST_PAUSE_FILE=str(pause_file)))
    try:
        pid = wait_for_pause(pause_file, "train", holder)
        assert pid == holder.pid
        before = snapshot(run)
        second = run_process("train", cfg, "--resume", run, "--quiet")
        assert second.returncode == 2, second.stderr
        lines = second.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"Error: {run}: "), lines
        assert f"pid {holder.pid}" in lines[0], lines[0]
        # In-process too (CliRunner), through the same lock.
        line = one_error_line(invoke("train", cfg, "--resume", run / "checkpoints" / "last.npz",
                                     "--quiet"))
        assert f"pid {holder.pid}" in line
        assert "already holds a run" in one_error_line(
            invoke("train", cfg, "--out", run, "--quiet"))
        assert snapshot(run) == before  # nothing touched while the holder holds it
    finally:
        holder.kill()
        holder.communicate(timeout=60)
    assert holder.returncode == -signal.SIGKILL
    done = run_process("train", cfg, "--resume", run, "--quiet")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]


def hold_lock(folder: Path) -> int:
    """Take the run lock on ``folder`` the way a running nncli holds it."""
    fd = os.open(folder, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def test_a_new_run_into_a_locked_folder_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    """Two new runs into the same empty ``--out`` at once both pass the "holds no run"
    check; the lock, taken before the first write, lets only one of them write."""
    cfg = write_config(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    fd = hold_lock(out)
    try:
        line = one_error_line(invoke("train", cfg, "--out", out, "--quiet"))
        assert f"{out}: the run directory is in use by another nncli process (pid " \
               f"{os.getpid()})" in line, line
        assert list(out.iterdir()) == []
    finally:
        os.close(fd)
    assert invoke("train", cfg, "--out", out, "--quiet").exit_code == 0  # free again


def test_the_check_for_an_existing_run_is_repeated_under_the_lock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second new run that checked ``--out`` before the first one wrote anything (here:
    a first check that says "empty") finds the run under the lock and touches nothing."""
    cfg = write_config(tmp_path)
    run = tmp_path / "run"
    assert invoke("train", cfg, "--out", run, "--quiet").exit_code == 0
    before = snapshot(run)
    monkeypatch.setattr(train_module, "holds_run", lambda path: False)
    line = one_error_line(invoke("train", cfg, "--out", run, "--quiet"))
    assert f"{run}: already holds a run" in line
    assert snapshot(run) == before


def test_the_lock_is_released_when_a_run_fails(finished_run: tuple[Path, Path]) -> None:
    cfg, run = finished_run
    one_error_line(invoke("train", cfg, "--resume", run, "--quiet"))  # already finished
    os.close(hold_lock(run))  # would raise if the refused run still held it


# ---------------------------------------------------------------- 3 and 7. early failures


def test_a_run_that_fails_before_training_creates_no_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A network refused for its memory (checked after the data is read, before anything
    is allocated or written): no ``runs/<name>-2`` beside the existing ``runs/<name>``."""
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path, filename="big.yaml")
    assert invoke("train", cfg, "--quiet").exit_code == 0
    before = snapshot(tmp_path / "runs")
    monkeypatch.setattr(model_module, "available_memory_bytes", lambda: 8 * 10**9,
                        raising=False)
    line = one_error_line(invoke("train", cfg, "--quiet", "--set", "model.hidden=[30000,30000]"))
    assert "model.hidden [30000, 30000] needs" in line and "8.0 GB available" in line
    assert snapshot(tmp_path / "runs") == before
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["big"]


def interrupt_first_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C lands in the first training step."""
    def step(self: Any, idx: np.ndarray, lr: float) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module.MinibatchStep, "__call__", step)


def test_ctrl_c_in_the_first_epoch_of_a_new_run_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No checkpoint yet: the folder this run created is removed (an existing empty
    ``--out`` is kept, empty), so the same command can simply be run again."""
    cfg = write_config(tmp_path)
    interrupt_first_step(monkeypatch)
    for out, existed in ((tmp_path / "new" / "run", False), (tmp_path / "empty", True)):
        if existed:
            out.mkdir()
        line = one_error_line(invoke("train", cfg, "--out", out, "--quiet"), exit_code=130)
        assert line == "Error: interrupted during epoch 1 before the first epoch ended; " \
                       "nothing was kept"
        assert out.is_dir() == existed and (not existed or list(out.iterdir()) == [])
    assert not (tmp_path / "new").exists()  # the parent it created goes too
    monkeypatch.undo()
    assert invoke("train", cfg, "--out", tmp_path / "empty", "--quiet").exit_code == 0


def test_divergence_in_the_first_epoch_of_a_new_run_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write_config(tmp_path)
    monkeypatch.setattr(train_module.MinibatchStep, "__call__",
                        lambda self, idx, lr: (float("nan"), 0.0, 0))
    line = one_error_line(invoke("train", cfg, "--out", tmp_path / "run", "--quiet"),
                          exit_code=1)
    assert line.startswith("Error: loss became nan at epoch 1, step 1")
    assert not (tmp_path / "run").exists()


def test_a_new_run_never_writes_into_or_points_at_a_run_that_appeared_meanwhile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``runs/<name>`` holds another run (taken before this one could start writing):
    this run takes ``runs/<name>-2`` (``mkdir`` decides, at the moment of writing), the
    other run stays byte-identical, and an early Ctrl-C's message does not offer its
    checkpoint."""
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path, filename="exp.yaml")
    assert invoke("train", cfg, "--quiet").exit_code == 0
    other = tmp_path / "runs" / "exp"
    before = snapshot(other)
    interrupt_first_step(monkeypatch)
    line = one_error_line(invoke("train", cfg, "--quiet"), exit_code=130)
    assert "last.npz" not in line and str(other) not in line, line
    assert snapshot(other) == before
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["exp"]
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert invoke("train", cfg, "--quiet").exit_code == 0
    assert (tmp_path / "runs" / "exp-2" / "checkpoints" / "last.npz").exists()
    assert snapshot(other) == before


# ---------------------------------------------------------------- 4. tampered state


def _set_meta(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda arrays: arrays["meta"].update(fields)


def _set_row(index: int, **fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda arrays: arrays["meta"]["rows"][index].update(fields)


def _set_rng(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda arrays: arrays["meta"]["rng_state"]["state"].update(fields)


def _set_array(name: str, value: Callable[[np.ndarray], np.ndarray]
               ) -> Callable[[dict[str, Any]], None]:
    def change(arrays: dict[str, Any]) -> None:
        arrays[name] = value(arrays[name])
    return change


TAMPERED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "rows-empty-object": (_set_meta(rows=[{}, {}]), "rows[0]: expected an object with"),
    "rows-one-empty-object": (_set_meta(rows=[{}]), "rows: 1 rows for a checkpoint of epoch 2"),
    "rows-string-loss": (_set_row(1, loss="abc"), "rows[1].loss: expected a finite number"),
    "rows-string-epoch": (_set_row(0, epoch="1"), "rows[0].epoch: expected 1"),
    "rows-out-of-order": (_set_row(1, epoch=1), "rows[1].epoch: expected 2"),
    "rows-nan-loss": (_set_row(0, loss=float("nan")), "rows[0].loss: expected a finite number"),
    "rows-accuracy-above-1": (_set_row(0, train_acc=2.0), "rows[0].train_acc: 2.0 is out of"),
    "rows-step-falls": (_set_row(1, step=0), "rows[1].step: expected an integer >= "),
    "rows-not-a-list": (_set_meta(rows="rows"), "rows: expected a list"),
    "rng-200-bit-state": (_set_rng(state=2**200), "rng_state: state.state must be an integer"),
    "rng-float-state": (_set_rng(inc=1.5), "rng_state: state.inc must be an integer"),
    "rng-other-generator": (_set_meta(rng_state={"bit_generator": "MT19937"}), "rng_state"),
    "epoch-negative": (_set_meta(epoch=-1), "epoch: expected a non-negative integer"),
    "step-string": (_set_meta(step="9"), "step: expected a non-negative integer"),
    "wait-beyond-epoch": (_set_meta(wait=99), "wait: 99 epochs without improvement"),
    "best-value-nan": (_set_meta(best_value=float("nan")), "best_value: expected a finite"),
    "best-value-string": (_set_meta(best_value="low"), "best_value: expected a finite"),
    "best-epoch-too-late": (_set_meta(best_epoch=7), "best_epoch: expected an epoch in 1..2"),
    "class-weights-negative": (_set_meta(class_weights=[1.0, -1.0, 1.0]), "class_weights"),
    "class-weights-nan": (_set_meta(class_weights=[1.0, float("nan"), 1.0]), "class_weights"),
    "class-weights-short": (_set_meta(class_weights=[1.0]), "class_weights: expected 3"),
    "adam-count-negative": (_set_array("opt_t_W1", lambda a: np.array(-1)), "opt_t_W1"),
    "adam-moment-integers": (_set_array("opt_m_W1", lambda a: a.astype(np.int64)), "opt_m_W1"),
    "adam-negative-second-moment": (_set_array("opt_u_b1", lambda a: a - 1.0), "opt_u_b1"),
}


@pytest.mark.parametrize("case", list(TAMPERED), ids=list(TAMPERED))
def test_tampered_resume_state_is_one_error_naming_the_field_and_writes_nothing(
        case: str, finished_run: tuple[Path, Path]) -> None:
    cfg, run = finished_run
    change, field = TAMPERED[case]
    last = run / "checkpoints" / "last.npz"
    rewrite_checkpoint(last, change)
    before = snapshot(run)
    line = one_error_line(invoke("train", cfg, "--resume", run, "--quiet",
                                 "--set", "train.epochs=4"))
    assert line.startswith(f"Error: {last}: damaged checkpoint"), line
    assert field in line, line
    assert snapshot(run) == before


def test_a_log_without_checkpoint_rows_is_checked_too(finished_run: tuple[Path, Path]) -> None:
    """A checkpoint without ``rows`` resumes from ``metrics.jsonl``; a tampered row there
    is an error naming the log, not a crash."""
    cfg, run = finished_run
    rewrite_checkpoint(run / "checkpoints" / "last.npz", lambda a: a["meta"].pop("rows"))
    jsonl = run / "metrics.jsonl"
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    rows[0]["loss"] = "abc"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = snapshot(run)
    line = one_error_line(invoke("train", cfg, "--resume", run, "--quiet",
                                 "--set", "train.epochs=4"))
    assert f"{jsonl}: damaged metrics log (invalid rows[0].loss" in line, line
    assert snapshot(run) == before


def test_an_untampered_checkpoint_still_resumes(finished_run: tuple[Path, Path]) -> None:
    """The checks accept what nncli writes (adam, no validation set, 2 epochs)."""
    cfg, run = finished_run
    result = invoke("train", cfg, "--resume", run, "--quiet", "--set", "train.epochs=4")
    assert result.exit_code == 0, result.stderr


# ---------------------------------------------------------------- 5. memory


def test_a_network_too_large_for_the_memory_is_refused_naming_model_hidden(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``model.hidden: [100000, 100000]`` (10^10 weights) on this machine's real memory."""
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path, model={"hidden": [100000, 100000]})
    line = one_error_line(invoke("train", cfg, "--quiet"))
    assert line.startswith("Error: model.hidden [100000, 100000] needs "), line
    assert " GB for weights, gradients, optimizer state and batch buffers" in line
    assert "GB available" in line
    assert not (tmp_path / "runs").exists()


def test_a_memory_error_while_allocating_is_reported_the_same_way(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the available memory is unknown the check is skipped; the allocation of
    9 x 10^12 weights then fails at once, and that is one Error line too."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(model_module, "available_memory_bytes", lambda: None, raising=False)
    cfg = write_config(tmp_path, model={"hidden": [3_000_000, 3_000_000]})
    line = one_error_line(invoke("train", cfg, "--quiet"))
    assert line.startswith("Error: model.hidden [3000000, 3000000] needs "), line
    assert "allocating it failed (out of memory)" in line
    assert not (tmp_path / "runs").exists()


def test_the_memory_estimate_covers_what_training_allocates() -> None:
    """Reference measured another way: tracemalloc's peak over building the network, the
    optimizer and the step, two steps and an epoch's checkpoint copy stays within the
    estimate (the step's ~40 kB of Python objects aside), and the estimate is not wildly
    above it."""
    sizes, batch = [200, 600, 400, 10], 128
    rng = np.random.default_rng(0)
    X = rng.normal(size=(batch * 2, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], size=batch * 2)
    for optimizer_name in ("sgd", "momentum", "adam"):
        tracemalloc.start()
        try:
            model = MLP.create(sizes[0], sizes[1:-1], sizes[-1], dtype="float32")
            optimizer = Optimizer(optimizer_name)
            step = train_module.MinibatchStep(model, optimizer, X, y, batch)
            for start in (0, batch):
                step(np.arange(start, start + batch), 0.01)
            copies = ({k: v.copy() for k, v in model.params.items()}, optimizer.state_arrays())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        del copies
        estimate = model_module.training_bytes(sizes, "float32", optimizer_name, batch)
        assert peak - 256 * 1024 <= estimate <= 2 * peak, (optimizer_name, peak, estimate)


def test_available_memory_honours_an_address_space_limit() -> None:
    """``ulimit -v``: the limit minus what the process maps already, in a child process."""
    code = ("import resource; from nncli.memory import available_memory_bytes as a; "
            "resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, resource.RLIM_INFINITY)); "
            "print(a())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=process_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert 0 <= int(proc.stdout) < 4 * 2**30


# ---------------------------------------------------------------- 6. the run name


@pytest.mark.parametrize("name", ["/", ".", "..", "../escaped", "a/b", "a\\b", "a\0b",
                                  "tab\there", "x" * 256])
def test_a_name_that_is_not_one_folder_name_is_refused(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    cfg = write_config(tmp_path, name=name)
    line = one_error_line(invoke("train", cfg, "--quiet"))
    assert "cfg.yaml: config key 'name': " in line, line
    assert list((tmp_path / "work").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.yaml", "train.csv", "work"]


def test_a_plain_name_is_the_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path, name="mlp.v2 (small)")
    assert invoke("train", cfg, "--quiet").exit_code == 0
    assert (tmp_path / "runs" / "mlp.v2 (small)" / "checkpoints" / "last.npz").exists()


def test_a_checkpoint_named_before_names_were_checked_still_loads(
        finished_run: tuple[Path, Path]) -> None:
    """``name: exp/a`` was accepted once; its checkpoints still serve info and eval."""
    cfg, run = finished_run
    last = run / "checkpoints" / "last.npz"
    rewrite_checkpoint(last, lambda a: a["meta"]["config"].update(name="exp/a"))
    result = invoke("eval", last, cfg.parent / "train.csv", "--json")
    assert result.exit_code == 0, result.stderr
