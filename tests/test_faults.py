"""Runs that survive: SIGKILL at random moments, Ctrl-C and SIGTERM, a full disk while a
checkpoint or a metrics row is written, divergence, and resume that is bit-for-bit the
same as never stopping; plus early stopping's bookkeeping.

The SIGKILL test (``test_sigkill_at_random_moments_leaves_a_resumable_run``) runs ten
independent experiments rather than one chain of kill/resume cycles, so that every kill
is followed by a resume that must *finish*. Four kills land ``uniform(0, T)`` seconds
after the process starts, ``T`` the wall time of one uninterrupted run of the same config
measured first (that run is also the reference): they cover start-up (nothing written
yet), the first epoch and the end. Six land in the steady state whatever the machine's
speed: once the run's log shows a seeded-random epoch ``k`` (up to 80% of the run), after
``uniform(0, 3)`` epoch durations. Most of an epoch's few milliseconds go into writing
``best.npz``, ``last.npz`` and the metrics rows, so a random moment is likely to be
inside a write. (Timing alone made the test flaky: on a loaded machine start-up took a
larger share of the run and too few kills landed in training.) After each kill the files
left behind must be consistent and loadable, the resume must exit 0, and the resumed run
must end with exactly the reference's metrics (``seconds`` aside) and bit-identical
checkpoints (weights and optimizer state).
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from helpers_data import blobs, table_text

import nncli.checkpoint as checkpoint_module
import nncli.rundir as rundir_module
from nncli.cli import main
from nncli.rundir import RunDir

HEADER = ["epoch", "step", "lr", "loss", "data_loss", "reg_loss", "train_acc", "val_loss",
          "val_acc", "seconds"]
RUN_FILES = {"config.yaml", "metrics.csv", "metrics.jsonl", "summary.json",
             "checkpoints/last.npz", "checkpoints/best.npz"}
# What a killed atomic write may leave: `.<name>.<random>.tmp` (removed by the next start).
TEMP_FILE = re.compile(r"^(checkpoints/)?\.(config\.yaml|metrics\.csv|metrics\.jsonl|"
                       r"summary\.json|last\.npz|best\.npz)\.[A-Za-z0-9_]+\.tmp$")
PROBE_FILE = ".nncli-write-test"

# ---------------------------------------------------------------- helpers


def invoke(*args: Any):
    return CliRunner().invoke(main, [str(a) for a in args])


def write_yaml(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def process_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NNCLI_DEBUG", "PYTHONWARNINGS")}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _default_sigint() -> None:
    # A shell without job control starts background commands with SIGINT ignored, and
    # Python keeps an ignored SIGINT ignored: restore the default so Ctrl-C is testable.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(*args: Any) -> subprocess.Popen[str]:
    """``python -m nncli.cli ARGS`` as a real process (stdout/stderr captured)."""
    return subprocess.Popen([sys.executable, "-m", "nncli.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=process_env(), preexec_fn=_default_sigint)


def run_process(*args: Any, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nncli.cli", *map(str, args)],
                          capture_output=True, text=True, env=process_env(), timeout=timeout)


def npz_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """All arrays of a checkpoint but ``meta``, and ``meta`` parsed; never unpickles."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(str(arrays.pop("meta")))
    assert isinstance(meta, dict)
    return arrays, meta


def assert_finite_checkpoint(path: Path) -> dict[str, Any]:
    arrays, meta = npz_arrays(path)
    for name, value in arrays.items():
        if value.dtype.kind in "fc":
            assert np.isfinite(value).all(), f"{path}: {name} holds non-finite numbers"
    return meta


def jsonl_rows(run: Path) -> list[dict[str, Any]]:
    text = (run / "metrics.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]  # every line must parse


def csv_rows(run: Path) -> list[list[str]]:
    """Data rows of metrics.csv, checked: SPEC's header, 10 cells, numbers where due."""
    rows = list(csv.reader(io.StringIO((run / "metrics.csv").read_text(encoding="utf-8"))))
    assert rows and rows[0] == HEADER, rows[:1]
    for row in rows[1:]:
        assert len(row) == len(HEADER), row
        for name, cell in zip(HEADER, row):
            if cell or not name.startswith("val_"):
                float(cell)  # raises on a torn or garbled cell
    return rows[1:]


def without_seconds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def run_files(run: Path) -> set[str]:
    return {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()}


def check_left_behind(run: Path) -> int | None:
    """The state a crash left in ``run`` is consistent; returns last.npz's epoch (or None).

    Checkpoints load with allow_pickle=False, hold only finite numbers and parseable meta;
    metrics.csv has SPEC's header and complete rows, metrics.jsonl parses line by line, the
    two logs and the checkpoints agree; nothing but run files and atomic-write temp files
    (hidden, ``.tmp``, never matched by ``*.npz``) is there.
    """
    if not run.exists():
        return None
    for name in run_files(run) - RUN_FILES:
        assert TEMP_FILE.match(name) or name == PROBE_FILE, f"unexpected file {name}"
    assert not [p for p in run.rglob("*.npz") if p.name not in ("last.npz", "best.npz")]
    epochs: dict[str, int] = {}
    for name in ("last", "best"):
        path = run / "checkpoints" / f"{name}.npz"
        if path.exists():
            epochs[name] = assert_finite_checkpoint(path)["epoch"]
    if not (run / "metrics.jsonl").exists():
        assert not epochs
        return None
    rows = jsonl_rows(run)
    table = csv_rows(run) if (run / "metrics.csv").exists() else []
    assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1))
    assert [int(r[0]) for r in table] == list(range(1, len(table) + 1))
    # An epoch's checkpoints are written first, then its row is appended (csv, then jsonl);
    # last.npz carries the rows, so a resume restores a row the kill kept from the logs.
    assert len(table) - len(rows) in (0, 1)
    if "last" in epochs:
        assert epochs["last"] - len(rows) in (0, 1), (len(rows), epochs)
        meta_rows = npz_arrays(run / "checkpoints" / "last.npz")[1]["rows"]
        assert without_seconds(meta_rows[:len(rows)]) == without_seconds(rows)
    if "best" in epochs:
        # An improving epoch writes best.npz, then last.npz: a kill between the two leaves
        # best.npz one epoch ahead, holding that epoch's rows; resume recomputes the epoch
        # and rewrites it bit for bit (finish() checks that).
        last = epochs.get("last", 0)
        assert epochs["best"] <= last + 1, epochs
        best_rows = npz_arrays(run / "checkpoints" / "best.npz")[1]["rows"]
        assert len(best_rows) == epochs["best"]
        assert without_seconds(best_rows[:len(rows)]) == without_seconds(rows[:len(best_rows)])
    return epochs.get("last")


def assert_same_run(run: Path, reference: Path) -> None:
    """``run`` ended exactly as ``reference``: metrics (seconds aside) and checkpoints."""
    assert without_seconds(jsonl_rows(run)) == without_seconds(jsonl_rows(reference))
    assert [r[:-1] for r in csv_rows(run)] == [r[:-1] for r in csv_rows(reference)]
    for name in ("last.npz", "best.npz"):
        arrays, meta = npz_arrays(run / "checkpoints" / name)
        ref_arrays, ref_meta = npz_arrays(reference / "checkpoints" / name)
        assert sorted(arrays) == sorted(ref_arrays)
        for key in arrays:
            assert arrays[key].dtype == ref_arrays[key].dtype, key
            assert np.array_equal(arrays[key], ref_arrays[key]), f"{name}: {key} differs"
        # The checkpoint carries the metric rows; their wall-clock seconds differ by nature.
        meta["rows"] = without_seconds(meta.get("rows", []))
        ref_meta["rows"] = without_seconds(ref_meta.get("rows", []))
        assert meta == ref_meta, name


# ---------------------------------------------------------------- the process experiments

TRAIN_SECONDS = 1.0  # the reference run trains this long (plus ~0.3 s of start-up)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Where the process experiments write: a RAM disk when there is one. A run fsyncs
    ~6 files an epoch; on a busy real disk that makes run times swing 4x, and what is
    tested (a killed process, not a power cut) does not depend on the file system."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        import tempfile

        path = Path(tempfile.mkdtemp(prefix="nncli-faults-", dir=shm))
        yield path
        shutil.rmtree(path, ignore_errors=True)
    else:
        yield tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def proc_setup(workdir: Path) -> dict[str, Any]:
    """A small float64 MLP config with momentum, minibatches, L2 and a validation split;
    its epoch count chosen (from a timed probe) so that training lasts ~TRAIN_SECONDS here;
    and one uninterrupted run of it (the reference), timed."""
    root = workdir
    X, y = blobs(n_per_class=12, n_features=4, spread=1.5)
    data = root / "train.csv"
    data.write_text(table_text(X, np.array(["ant", "bee", "cow"])[y]), encoding="utf-8")
    doc: dict[str, Any] = {
        "data": {"train": str(data), "val_split": 0.25},
        "model": {"hidden": [8]},
        "reg": {"lambda": 0.001},
        # cosine: the schedule's position must survive a kill too, and the loss levels
        # off at the end, so no run warns that it has not converged (stderr stays empty)
        "train": {"epochs": 100, "batch_size": 8, "lr": 0.01, "optimizer": "momentum",
                  "lr_schedule": "cosine", "dtype": "float64", "checkpoint_every": 1},
    }
    cfg = write_yaml(root / "cfg.yaml", doc)
    timings = []
    for epochs in (100, 1):  # the difference is the time of 99 epochs
        began = time.perf_counter()
        proc = run_process("train", cfg, "--out", root / f"probe-{epochs}", "--quiet",
                           "--set", f"train.epochs={epochs}")
        assert proc.returncode == 0, proc.stderr
        timings.append(time.perf_counter() - began)
    per_epoch = max(timings[0] - timings[1], 0.05) / 99
    epochs = int(np.clip(TRAIN_SECONDS / per_epoch, 100, 3000))
    doc["train"]["epochs"] = epochs
    write_yaml(cfg, doc)
    began = time.perf_counter()
    proc = run_process("train", cfg, "--out", root / "reference", "--quiet")
    seconds = time.perf_counter() - began
    assert proc.returncode == 0, proc.stderr
    assert len(jsonl_rows(root / "reference")) == epochs
    return {"root": root, "cfg": cfg, "reference": root / "reference", "seconds": seconds,
            "epochs": epochs}


def test_sigkill_at_random_moments_leaves_a_resumable_run(proc_setup: dict[str, Any]) -> None:
    root, cfg, reference = proc_setup["root"], proc_setup["cfg"], proc_setup["reference"]
    epochs = proc_setup["epochs"]
    rng = np.random.default_rng(20240611)
    # (epoch to wait for in the log, or 0 for none; then seconds to wait)
    epoch_seconds = proc_setup["seconds"] / (epochs + 30)  # start-up ~ 30 epochs
    moments = [(0, float(t)) for t in rng.uniform(0.0, proc_setup["seconds"], size=4)]
    moments += [(int(k), float(t)) for k, t in zip(
        rng.integers(1, int(0.8 * epochs), size=6), rng.uniform(0, 3 * epoch_seconds, size=6))]
    delays = [t for _, t in moments]
    interrupted_training = 0

    def finish(i: int, run: Path, resume: subprocess.Popen[str] | None) -> None:
        if resume is not None:
            out, err = resume.communicate(timeout=120)
            assert resume.returncode == 0, (i, delays[i], err)
            assert err == ""
        assert run_files(run) == RUN_FILES  # the temp files of the killed writes are gone
        assert [r["epoch"] for r in jsonl_rows(run)] == list(range(1, epochs + 1))
        assert_same_run(run, reference)
        shutil.rmtree(run)

    pending: tuple[int, Path, subprocess.Popen[str] | None] | None = None
    for i, (wait_for_epoch, delay) in enumerate(moments):
        run = root / f"killed-{i}"
        proc = start("train", cfg, "--out", run, "--quiet")
        if wait_for_epoch:
            wait_for_rows(run / "metrics.csv", wait_for_epoch, proc)
        time.sleep(delay)
        proc.kill()  # SIGKILL: no handler runs, nothing is cleaned up
        proc.communicate(timeout=60)
        assert proc.returncode in (-signal.SIGKILL, 0), (i, proc.returncode)

        epoch = check_left_behind(run)
        interrupted_training += epoch is not None and 0 < epoch < epochs
        if pending:  # the previous resume ran alongside this kill; check it now
            finish(*pending)
        resume: subprocess.Popen[str] | None
        if epoch is None:  # killed before the first checkpoint: start again
            shutil.rmtree(run, ignore_errors=True)  # --out refuses a folder holding a run
            resume = start("train", cfg, "--out", run, "--quiet")
        elif RunDir(run).finished_epochs() == epochs:  # killed after the run had ended
            resume = None
        else:
            resume = start("train", cfg, "--resume", run, "--quiet")
        pending = (i, run, resume)
    assert pending
    finish(*pending)
    # The kills did interrupt training (not only start-up or a finished run) several times.
    assert interrupted_training >= 6, interrupted_training


def wait_for_rows(path: Path, rows: int, proc: subprocess.Popen[str]) -> None:
    """Return once the metrics log ``path`` has ``rows`` data rows (the process is alive)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            if path.read_bytes().count(b"\n") > rows:  # header + rows, each \n-terminated
                return
        except OSError:  # not there yet, or being replaced
            pass
        assert proc.poll() is None, ("the run ended before epoch", rows, proc.communicate())
        assert time.monotonic() < deadline
        time.sleep(0.001)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_and_sigterm_save_last_and_exit_130(proc_setup: dict[str, Any],
                                                   signum: int) -> None:
    root, cfg = proc_setup["root"], proc_setup["cfg"]
    run = root / f"interrupted-{signum}"
    proc = start("train", cfg, "--out", run, "--quiet")
    deadline = time.monotonic() + 60
    while not ((run / "metrics.csv").exists()
               and len((run / "metrics.csv").read_text().splitlines()) >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.002)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err)
    assert out == "" and "Traceback" not in err
    lines = err.splitlines()
    # "after epoch E" when the signal came while epoch E's checkpoints were written
    assert len(lines) == 1 and re.match(r"Error: interrupted (during|after) epoch \d+; ",
                                        lines[0]), err
    last = run / "checkpoints" / "last.npz"
    assert lines[0].endswith(f"resume with --resume {last}"), lines[0]

    epoch = check_left_behind(run)
    assert epoch is not None and 1 <= epoch < proc_setup["epochs"]
    done = run_process("train", cfg, "--resume", last, "--quiet")
    assert done.returncode == 0, done.stderr
    assert_same_run(run, proc_setup["reference"])


# ---------------------------------------------------------------- in-process: small runs


@pytest.fixture
def table(tmp_path: Path) -> Path:
    X, y = blobs(n_per_class=8, n_features=4, spread=2.0)
    path = tmp_path / "train.csv"
    path.write_text(table_text(X, np.array(["cat", "dog", "frog"])[y]), encoding="utf-8")
    return path


def config(tmp_path: Path, table: Path, name: str = "cfg.yaml", **train: Any) -> Path:
    doc = {"data": {"train": str(table), "val_split": 0.25}, "model": {"hidden": [6]},
           "reg": {"lambda": 0.01},
           "train": {"epochs": 4, "batch_size": 5, "lr": 0.05, "optimizer": "momentum",
                     "dtype": "float64", **train}}
    return write_yaml(tmp_path / name, doc)


def train_ok(*args: Any) -> None:
    result = invoke("train", *args, "--quiet")
    assert result.exit_code == 0, result.stderr


def summary_of(run: Path) -> dict[str, Any]:
    summary = json.loads((run / "summary.json").read_text())
    for volatile in ("wall_seconds", "samples_per_sec", "run_dir", "peak_rss_mb"):
        summary.pop(volatile, None)
    for key in ("final", "best"):
        summary[key].pop("seconds")
    return summary


# ---------------------------------------------------------------- resume equivalence


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
@pytest.mark.parametrize("resume_from", ["run-dir", "last.npz"])
def test_two_epochs_then_resume_to_four_is_four_straight(
        tmp_path: Path, table: Path, optimizer: str, resume_from: str) -> None:
    # N = 18 after the split, batches of 5: shuffled minibatches with a short last one.
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    two = config(tmp_path, table, epochs=2, optimizer=optimizer)
    train_ok(two, "--out", straight, "--set", "train.epochs=4")
    train_ok(two, "--out", halves)
    assert len(jsonl_rows(halves)) == 2
    target = halves if resume_from == "run-dir" else halves / "checkpoints" / "last.npz"
    # --set train.epochs=4 extends the finished 2-epoch run; the run dir comes from --resume.
    train_ok(two, "--resume", target, "--set", "train.epochs=4")
    assert_same_run(halves, straight)  # weights, optimizer state, RNG state, every row
    assert summary_of(halves) == summary_of(straight)
    assert "opt_v_W1" in npz_arrays(halves / "checkpoints" / "last.npz")[0] or optimizer == "adam"


def test_resume_of_a_finished_run_is_refused_and_changes_nothing(tmp_path: Path,
                                                                 table: Path) -> None:
    cfg = config(tmp_path, table)
    run = tmp_path / "run"
    train_ok(cfg, "--out", run)
    before = {name: (run / name).read_bytes() for name in RUN_FILES}
    for extra in ((), ("--set", "train.epochs=2")):  # as many epochs, or fewer
        result = invoke("train", cfg, "--resume", run, "--quiet", *extra)
        assert result.exit_code == 2, result.stderr
        assert result.stderr.startswith(f"Error: {run}: the run has already reached "
                                        f"train.epochs (4 of ")
        assert "--set train.epochs=N (N > 4)" in result.stderr
        assert {name: (run / name).read_bytes() for name in RUN_FILES} == before
    train_ok(cfg, "--resume", run, "--set", "train.epochs=5")  # the way the error shows
    assert [r["epoch"] for r in jsonl_rows(run)] == [1, 2, 3, 4, 5]


def test_a_run_interrupted_after_its_last_checkpoint_is_finished_by_resume(
        tmp_path: Path, table: Path) -> None:
    """Killed after the last epoch's checkpoint but before summary.json: resume has no
    epoch left to train, and writes the summary the uninterrupted run would have."""
    cfg = config(tmp_path, table)
    straight, run = tmp_path / "straight", tmp_path / "run"
    train_ok(cfg, "--out", straight)
    train_ok(cfg, "--out", run)
    (run / "summary.json").unlink()
    train_ok(cfg, "--resume", run)
    assert summary_of(run) == summary_of(straight)
    assert_same_run(run, straight)


def straight_and_two_epochs(tmp_path: Path, table: Path) -> tuple[Path, Path]:
    """The config, its full run in tmp_path/straight, and a 2-epoch run (returned) to
    resume and compare against it."""
    cfg = config(tmp_path, table)
    train_ok(cfg, "--out", tmp_path / "straight")
    run = tmp_path / "run"
    train_ok(cfg, "--out", run, "--set", "train.epochs=2")
    return cfg, run


def test_resume_from_an_earlier_checkpoint_drops_the_later_rows(tmp_path: Path,
                                                              table: Path) -> None:
    cfg, run = straight_and_two_epochs(tmp_path, table)
    shutil.copy(run / "checkpoints" / "last.npz", run / "checkpoints" / "epoch2.npz")
    train_ok(cfg, "--resume", run)  # to epoch 4
    assert len(jsonl_rows(run)) == 4
    # Back to epoch 2: rows 3 and 4 are dropped and computed again, not duplicated.
    train_ok(cfg, "--resume", run / "checkpoints" / "epoch2.npz")
    assert [r["epoch"] for r in jsonl_rows(run)] == [1, 2, 3, 4]
    assert_same_run(run, tmp_path / "straight")


def test_resume_drops_rows_past_the_checkpoint_and_garbage_lines(tmp_path: Path,
                                                                 table: Path) -> None:
    cfg, run = straight_and_two_epochs(tmp_path, table)
    fake = {**jsonl_rows(run)[-1], "epoch": 3, "loss": 123.0}
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(fake) + "\n" + '{"epoch": "x"}\n[1, 2]\n{"torn": ')
    with open(run / "metrics.csv", "a", encoding="utf-8") as handle:
        handle.write("3,99,0.05,123.0,123.0,0.0,0.5,1.0,0.5,0.1\n")
    train_ok(cfg, "--resume", run)
    assert_same_run(run, tmp_path / "straight")


def test_ctrl_c_while_best_npz_is_written_keeps_best_consistent(
        tmp_path: Path, table: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(tmp_path, table, epochs=3)
    run = tmp_path / "run"
    real_savez = checkpoint_module.np.savez
    fired: list[bool] = []

    def savez(file: Any, *args: Any, **arrays: Any) -> None:
        meta = json.loads(str(arrays["meta"]))
        # An improving epoch writes best.npz first: the first write of an epoch-3 snapshot
        # that is its own best epoch is best.npz's.
        if (meta["epoch"], meta["best_epoch"]) == (3, 3) and not fired:
            fired.append(True)
            raise KeyboardInterrupt  # Ctrl-C in the middle of the write
        real_savez(file, *args, **arrays)

    monkeypatch.setattr(checkpoint_module.np, "savez", savez)
    result = invoke("train", cfg, "--out", run, "--quiet")
    monkeypatch.undo()
    assert result.exit_code == 130, result.stderr
    assert fired
    train_ok(cfg, "--resume", run)
    best_epoch = json.loads((run / "summary.json").read_text())["best_epoch"]
    assert npz_arrays(run / "checkpoints" / "best.npz")[1]["epoch"] == best_epoch


def test_sigterm_inside_the_zip_bookkeeping_of_a_checkpoint_write_is_exit_130(
        tmp_path: Path, table: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A signal whose KeyboardInterrupt lands inside zipfile's bookkeeping (here as np.savez
    opens an archive entry, just after ZipFile marked a write handle open) came out of
    np.savez as "ValueError: Can't close the ZIP file ..." (an internal error, exit 2)
    plus an "Exception ignored in ZipFile.__del__" traceback: about one interrupted run in
    fifty of test_ctrl_c_and_sigterm_save_last_and_exit_130 on a loaded machine. The
    signal now waits for the end of np.savez and stops the run like any other."""
    cfg = config(tmp_path, table, epochs=3)
    run = tmp_path / "run"
    real_init = zipfile._ZipWriteFile.__init__  # type: ignore[attr-defined]
    fired: list[bool] = []

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        if not fired:  # the first entry of the first checkpoint (epoch 1's best.npz)
            fired.append(True)
            signal.raise_signal(signal.SIGTERM)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(zipfile._ZipWriteFile, "__init__", init)  # type: ignore[attr-defined]
    result = invoke("train", cfg, "--out", run, "--quiet")
    monkeypatch.undo()
    assert fired
    assert result.exit_code == 130, result.stderr
    lines = result.stderr.splitlines()
    assert lines == [f"Error: interrupted after epoch 1; resume with --resume "
                     f"{run / 'checkpoints' / 'last.npz'}"], lines
    assert check_left_behind(run) == 1
    train_ok(cfg, "--resume", run)
    assert npz_arrays(run / "checkpoints" / "best.npz")[1]["epoch"] == \
        json.loads((run / "summary.json").read_text())["best_epoch"]


def test_a_new_start_removes_temp_files_a_killed_run_left(tmp_path: Path, table: Path) -> None:
    cfg = config(tmp_path, table, epochs=2)
    run = tmp_path / "run"
    train_ok(cfg, "--out", run)
    leftovers = [run / "checkpoints" / ".last.npz.k1ll3d.tmp", run / ".metrics.csv.x_9.tmp",
                 run / ".summary.json.abc.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a file")
    mine = [run / ".keep", run / "checkpoints" / "notes.tmp"]  # not ours: left alone
    for path in mine:
        path.write_text("user data")
    train_ok(cfg, "--resume", run, "--set", "train.epochs=3")
    assert not any(path.exists() for path in leftovers)
    assert all(path.read_text() == "user data" for path in mine)


def test_run_files_get_the_usual_permissions(tmp_path: Path, table: Path) -> None:
    """Atomic writes go through mkstemp (mode 0600); the files must still get 0666 & ~umask,
    like any file the user creates, so that others can read a shared run."""
    old = os.umask(0o022)
    try:
        train_ok(config(tmp_path, table, epochs=1), "--out", tmp_path / "run")
    finally:
        os.umask(old)
    for name in RUN_FILES:
        assert (tmp_path / "run" / name).stat().st_mode & 0o777 == 0o644, name


# ---------------------------------------------------------------- full disk


def _savez_filling_the_disk(real_savez: Any, fail_on_call: int) -> Any:
    """``np.savez`` whose ``fail_on_call``-th call (from 1) writes half of the archive and
    then fails as a full disk does; the other calls work."""
    calls = []

    def savez(file: Any, *args: Any, **arrays: Any) -> None:
        calls.append(file)
        if len(calls) != fail_on_call:
            return real_savez(file, *args, **arrays)
        buffer = io.BytesIO()
        real_savez(buffer, *args, **arrays)
        file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        file.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    return savez


@pytest.mark.parametrize("victim", ["last.npz", "best.npz"])
def test_full_disk_while_writing_a_checkpoint_keeps_the_previous_one(
        tmp_path: Path, table: Path, monkeypatch: pytest.MonkeyPatch, victim: str) -> None:
    cfg = config(tmp_path, table, epochs=2)
    run = tmp_path / "run"
    train_ok(cfg, "--out", run)
    checkpoints = run / "checkpoints"
    before = {name: (checkpoints / name).read_bytes() for name in ("last.npz", "best.npz")}
    # The run still improves at epoch 3 (checked below): best.npz is written, then last.npz.
    fail_on_call = {"best.npz": 1, "last.npz": 2}[victim]
    monkeypatch.setattr(checkpoint_module.np, "savez",
                        _savez_filling_the_disk(checkpoint_module.np.savez, fail_on_call))
    result = invoke("train", cfg, "--resume", run, "--set", "train.epochs=3", "--quiet")
    monkeypatch.undo()

    assert result.exit_code == 2, (result.exit_code, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {checkpoints / victim}: "), lines
    assert "No space left on device" in lines[0] and "Traceback" not in result.output
    assert (checkpoints / victim).read_bytes() == before[victim]  # byte-identical
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best.npz", "last.npz"]
    # The run goes on from the checkpoint that survived.
    train_ok(cfg, "--resume", run, "--set", "train.epochs=3")
    rows = jsonl_rows(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[2]["val_loss"] < rows[1]["val_loss"]
    assert assert_finite_checkpoint(checkpoints / "last.npz")["epoch"] == 3


def test_full_disk_while_appending_metrics_names_the_file_and_resume_repairs_it(
        tmp_path: Path, table: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(tmp_path, table, epochs=2)
    run = tmp_path / "run"
    train_ok(cfg, "--out", run)

    class FullDisk(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    real_open = open

    def fake_open(path: Any, mode: str = "r", *args: Any, **kw: Any) -> Any:
        if "a" in mode and os.path.basename(path) == "metrics.csv":
            handle = real_open(path, mode, *args, **kw)
            handle.write("3,9,0.0")  # a torn row: the disk filled up mid-line
            handle.close()
            return FullDisk()
        return real_open(path, mode, *args, **kw)

    monkeypatch.setattr(rundir_module, "open", fake_open, raising=False)
    result = invoke("train", cfg, "--resume", run, "--set", "train.epochs=3", "--quiet")
    monkeypatch.undo()
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {run / 'metrics.csv'}: "), lines
    assert "No space left on device" in lines[0]
    train_ok(cfg, "--resume", run, "--set", "train.epochs=3")
    assert [int(r[0]) for r in csv_rows(run)] == [1, 2, 3]
    assert [r["epoch"] for r in jsonl_rows(run)] == [1, 2, 3]


# ---------------------------------------------------------------- divergence

DIVERGED = re.compile(r"Error: loss became (nan|inf) at epoch (\d+), step (\d+) — try a "
                      r"smaller train\.lr \(now (\S+)\)")


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_divergence_exits_1_and_keeps_the_last_good_checkpoint(
        tmp_path: Path, table: Path, optimizer: str) -> None:
    # Full-batch mse with a step far too large: the loss grows each epoch until it overflows.
    lr = 3.0 if optimizer == "sgd" else 1e30
    doc = {"data": {"train": str(table)}, "loss": {"type": "mse"},
           "train": {"epochs": 200, "batch_size": "full", "lr": lr, "optimizer": optimizer,
                     "dtype": "float32"}}
    cfg = write_yaml(tmp_path / "cfg.yaml", doc)
    result = invoke("train", cfg, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    match = DIVERGED.fullmatch(lines[0])
    assert match, lines[0]
    epoch, step, shown_lr = int(match[2]), int(match[3]), float(match[4])
    assert step == epoch and math.isclose(shown_lr, lr, rel_tol=1e-5)  # one update an epoch
    assert epoch >= 2, "diverged in the first epoch: no good checkpoint to keep"
    checkpoints = tmp_path / "run" / "checkpoints"
    for path in checkpoints.glob("*.npz"):
        assert_finite_checkpoint(path)
    assert assert_finite_checkpoint(checkpoints / "last.npz")["epoch"] == epoch - 1
    assert len(jsonl_rows(tmp_path / "run")) == epoch - 1
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best.npz", "last.npz"]


# ---------------------------------------------------------------- early stopping


def expected_stop(values: list[float], metric: str, patience: int,
                  min_delta: float) -> tuple[int, int]:
    """(last epoch, best epoch) of early stopping over per-epoch ``values``: an epoch
    improves when it beats the best by more than ``min_delta``; stop after ``patience``
    epochs in a row without improvement."""
    best, best_epoch, wait = None, 0, 0
    for epoch, value in enumerate(values, start=1):
        if best is None or (value > best + min_delta if metric == "val_acc"
                            else value < best - min_delta):
            best, best_epoch, wait = value, epoch, 0
        else:
            wait += 1
            if wait >= patience:
                return epoch, best_epoch
    return len(values), best_epoch


@pytest.fixture(scope="module")
def es_setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A noisy 3-class table and 40 epochs of an MLP on it without early stopping."""
    root = tmp_path_factory.mktemp("early")
    X, y = blobs(n_per_class=20, n_features=5, spread=1.0, seed=3)
    (root / "t.csv").write_text(table_text(X, np.array(["a", "b", "c"])[y]), encoding="utf-8")
    doc = {"seed": 1, "data": {"train": str(root / "t.csv"), "val_split": 0.3},
           "model": {"hidden": [16]},
           "train": {"epochs": 40, "batch_size": 8, "lr": 0.2, "optimizer": "sgd",
                     "dtype": "float64"}}
    cfg = write_yaml(root / "cfg.yaml", doc)
    train_ok(cfg, "--out", root / "full")
    return {"root": root, "cfg": cfg, "rows": jsonl_rows(root / "full")}


ES_CASES = [  # metric, patience, min_delta
    ("val_loss", 2, 0.0), ("val_loss", 2, 0.02), ("val_acc", 3, 0.0), ("val_acc", 3, 0.1),
    ("loss", 1, 0.0), ("loss", 1, 0.01),
]


@pytest.mark.parametrize(("metric", "patience", "min_delta"), ES_CASES,
                         ids=[f"{m}-p{p}-d{d:g}" for m, p, d in ES_CASES])
def test_early_stopping_stops_and_keeps_best_and_last(
        es_setup: dict[str, Any], tmp_path: Path, metric: str, patience: int,
        min_delta: float) -> None:
    rows = es_setup["rows"]
    values = [row[metric] for row in rows]
    stop, best = expected_stop(values, metric, patience, min_delta)
    if min_delta:  # the case is chosen so that min_delta changes the outcome
        assert (stop, best) != expected_stop(values, metric, patience, 0.0)
    run = tmp_path / "run"
    es = {"patience": patience, "metric": metric, "min_delta": min_delta}
    train_ok(es_setup["cfg"], "--out", run, "--set", f"train.early_stopping={json.dumps(es)}")

    assert without_seconds(jsonl_rows(run)) == without_seconds(rows[:stop])
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["epochs"], summary["best_epoch"]) == (stop, best)
    assert summary["stopped_early"] == (stop < len(rows))
    assert npz_arrays(run / "checkpoints" / "best.npz")[1]["epoch"] == best
    assert npz_arrays(run / "checkpoints" / "last.npz")[1]["epoch"] == stop
    # best.npz holds the weights after epoch `best`: those of a run that ends there.
    short = tmp_path / "short"
    train_ok(es_setup["cfg"], "--out", short, "--set", f"train.epochs={best}")
    best_arrays = npz_arrays(run / "checkpoints" / "best.npz")[0]
    short_arrays = npz_arrays(short / "checkpoints" / "last.npz")[0]
    for name in ("W1", "b1", "W2", "b2"):
        assert np.array_equal(best_arrays[name], short_arrays[name]), name


def test_early_stopping_state_survives_a_resume(es_setup: dict[str, Any],
                                                tmp_path: Path) -> None:
    es = json.dumps({"patience": 2, "metric": "val_loss"})
    train_ok(es_setup["cfg"], "--out", tmp_path / "straight", "--set",
             f"train.early_stopping={es}")
    run = tmp_path / "run"
    train_ok(es_setup["cfg"], "--out", run, "--set", f"train.early_stopping={es}",
             "--set", "train.epochs=11")  # epoch 11 is one epoch without improvement
    train_ok(es_setup["cfg"], "--resume", run, "--set", f"train.early_stopping={es}")
    assert without_seconds(jsonl_rows(run)) == without_seconds(jsonl_rows(tmp_path / "straight"))
    assert summary_of(run)["best_epoch"] == summary_of(tmp_path / "straight")["best_epoch"]
