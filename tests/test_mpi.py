"""Data-parallel training under ``mpirun -n 2``: the same weights as one process (float64,
1e-10), rank 0 alone writing and printing, errors and Ctrl-C on one rank ending all.

Each MPI run is launched in MPMD form, ``mpirun -n 1 --wdir A nncli train ... : -n 1 --wdir
B nncli train ...``: rank 0 works in folder A and rank 1 in folder B with the same relative
``--out``, so anything rank 1 wrote (or read: a resumed checkpoint) would be in B, which
must stay empty.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers_data import blobs, cli, config_doc, hide_package, write_table, write_yaml

from nncli.checkpoint import load_checkpoint
from nncli.parallel import MpiWorld, QuietRunDir, launcher_environment, slice_bounds


def _mpirun() -> str | None:
    beside = Path(sys.executable).parent / "mpirun"
    return str(beside) if beside.exists() else shutil.which("mpirun")


MPIRUN = _mpirun()
needs_mpi = pytest.mark.skipif(
    MPIRUN is None or importlib.util.find_spec("mpi4py") is None,
    reason='needs mpi4py and mpirun: pip install "nncli[mpi]"')
ROOT_FLAGS = ["--allow-run-as-root"] if os.geteuid() == 0 else []
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
FILES = {"config.yaml", "metrics.csv", "metrics.jsonl", "summary.json",
         "checkpoints/best.npz", "checkpoints/last.npz"}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NNCLI_", "OMPI_", "PMI", "PRTE_", "MPI_LOCAL"))}
    return {**env, **ONE_THREAD, **extra}


def _train_command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "nncli.cli", "train", str(config), *args]


def mpirun_train(tmp: Path, config: Path, *args: str, env: dict[str, str] | None = None,
                 wait: bool = True) -> Any:
    """``nncli train config args`` under ``mpirun``: rank 0 in ``tmp/rank0``, rank 1 in
    ``tmp/rank1``. Returns the finished process (or, with ``wait=False``, the Popen)."""
    rank0, rank1 = tmp / "rank0", tmp / "rank1"
    rank0.mkdir(exist_ok=True)
    rank1.mkdir(exist_ok=True)
    command = [MPIRUN, "--oversubscribe", *ROOT_FLAGS,
               "-n", "1", "--wdir", str(rank0), *_train_command(config, *args), ":",
               "-n", "1", "--wdir", str(rank1), *_train_command(config, *args)]
    if not wait:
        return subprocess.Popen(command, env=env or _env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=env or _env(), capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """51 training rows (val_split 0.2 of 63), 3 classes weighted 1, 3 and 0.5, a hidden
    layer and L2; batches of 5, odd, leave a last batch of 1 row: rank 1's slice of it is
    empty."""
    X, y = blobs(n_per_class=21, n_features=6)
    table = write_table(tmp_path / "train.csv", X, np.array(["a", "b", "c"])[y])
    doc = config_doc(table.resolve(), data={"val_split": 0.2}, model={"hidden": [7]},
                     loss={"class_weight": {"a": 1.0, "b": 3.0, "c": 0.5}}, reg={"lambda": 0.01},
                     train={"epochs": 3, "batch_size": 5, "lr": 0.05, "dtype": "float64"})
    return write_yaml(tmp_path / "cfg.yaml", doc)


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def assert_same_run(mine: Path, ref: Path) -> None:
    """Checkpoints (weights and optimizer state) and metric rows equal to 1e-10."""
    for name in ("best.npz", "last.npz"):
        a, b = load_checkpoint(mine / "checkpoints" / name), load_checkpoint(
            ref / "checkpoints" / name)
        assert (a.epoch, a.step) == (b.epoch, b.step)
        for group_a, group_b in ((a.model.params, b.model.params),
                                 (a.optimizer_state, b.optimizer_state)):
            assert group_a.keys() == group_b.keys()
            for k in group_b:
                np.testing.assert_allclose(group_a[k], group_b[k], rtol=0, atol=1e-10)
    rows = [[json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            for run in (mine, ref)]
    assert len(rows[0]) == len(rows[1])
    for row, expected in zip(*rows):
        assert row.keys() == expected.keys()
        for key in ("loss", "data_loss", "reg_loss", "train_acc", "val_loss", "val_acc"):
            assert row[key] == pytest.approx(expected[key], abs=1e-10, rel=0)
        assert row["step"] == expected["step"]


@needs_mpi
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "momentum"])
def test_two_ranks_train_the_weights_of_one_process(tmp_path: Path, config: Path,
                                                    optimizer: str) -> None:
    ref = cli("train", str(config), "--out", str(tmp_path / "ref"), "--json",
              "--set", f"train.optimizer={optimizer}")
    assert ref.exit_code == 0, ref.stderr
    assert "mpi4py" not in sys.modules  # a plain train never imports it
    done = mpirun_train(tmp_path, config, "--out", "run", "--json",
                        "--set", f"train.optimizer={optimizer}")
    assert done.returncode == 0, done.stderr
    assert_same_run(tmp_path / "rank0" / "run", tmp_path / "ref")
    # rank 0 wrote the run and nothing else; rank 1 wrote nothing at all
    assert files_under(tmp_path / "rank0") == {f"run/{f}" for f in FILES}
    assert files_under(tmp_path / "rank1") == set()
    # one JSON object on stdout (rank 1 printed nothing), the single run's keys + world_size
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    summary, single = json.loads(lines[0]), json.loads(ref.stdout)
    assert set(summary) == set(single) | {"world_size"} and summary["world_size"] == 2
    assert sum(line.startswith("training:") for line in done.stderr.splitlines()) == 1


@needs_mpi
def test_a_run_resumed_under_mpirun_ends_as_an_uninterrupted_single_run(
        tmp_path: Path, config: Path) -> None:
    ref = cli("train", str(config), "--out", str(tmp_path / "ref"), "--set", "train.epochs=4",
              "--set", "train.optimizer=adam")
    assert ref.exit_code == 0, ref.stderr
    first = mpirun_train(tmp_path, config, "--out", "run", "--set", "train.optimizer=adam",
                         "--set", "train.epochs=2")
    assert first.returncode == 0, first.stderr
    # rank 0 reads the checkpoint and sends it: rank 1's folder has no run to read
    again = mpirun_train(tmp_path, config, "--resume", "run", "--set", "train.optimizer=adam",
                         "--set", "train.epochs=4")
    assert again.returncode == 0, again.stderr
    assert "resuming at epoch 3" in again.stderr
    assert_same_run(tmp_path / "rank0" / "run", tmp_path / "ref")
    assert files_under(tmp_path / "rank1") == set()


@needs_mpi
def test_a_failure_on_rank_0_alone_ends_every_rank(tmp_path: Path, config: Path) -> None:
    """--out names a finished run in rank 0's folder only: rank 0 refuses, rank 1 (whose
    folder is empty) must not train on alone, and nothing hangs."""
    taken = mpirun_train(tmp_path, config, "--out", "run")
    assert taken.returncode == 0, taken.stderr
    before = (tmp_path / "rank0" / "run" / "summary.json").read_text()
    again = mpirun_train(tmp_path, config, "--out", "run")
    assert again.returncode == 2
    errors = [line for line in again.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "run" in errors[0]
    assert (tmp_path / "rank0" / "run" / "summary.json").read_text() == before
    assert files_under(tmp_path / "rank1") == set()


@needs_mpi
def test_a_signal_to_one_rank_stops_both_at_the_same_step(tmp_path: Path,
                                                          config: Path) -> None:
    """SIGINT to rank 0 while both hold after epoch 1 (NNCLI_TEST_PAUSE): the signal is
    delivered at the next step's Allreduce on both ranks, rank 0 keeps last.npz, says how
    to resume and exits 130; the job ends with 130, nothing hangs."""
    pause_file = tmp_path / "paused.txt"
    env = _env(NNCLI_TEST_PAUSE="train", NNCLI_TEST_PAUSE_FILE=str(pause_file))
    proc = mpirun_train(tmp_path, config, "--out", "run", "--set", "train.epochs=5",
                        env=env, wait=False)
    pids: list[int] = []
    deadline = time.monotonic() + 60
    while len(pids) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        if pause_file.exists():
            pids = [int(line.split()[2]) for line in pause_file.read_text().splitlines()]
    assert len(pids) == 2, "the ranks never paused"
    for pid in pids:  # as Slurm's scancel --signal or a kill of each rank does
        os.kill(pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "interrupted" in errors[0] and "--resume" in errors[0]
    assert load_checkpoint(tmp_path / "rank0" / "run" / "checkpoints" / "last.npz").epoch == 1
    assert out == "" and files_under(tmp_path / "rank1") == set()


@pytest.mark.parametrize("variable", ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"])
def test_a_launcher_world_of_one_process_is_refused(tmp_path: Path, config: Path,
                                                    variable: str) -> None:
    """What K singletons would each see (a wrong PMI): refused before anything is read."""
    done = subprocess.run(_train_command(config, "--out", str(tmp_path / "run")),
                          env=_env(**{variable: "1"}), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("Error: MPI launcher")
    assert f"{variable}=1" in done.stderr and not (tmp_path / "run").exists()


def test_a_launcher_without_mpi4py_names_the_extra(tmp_path: Path, config: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    hide_package(monkeypatch, "mpi4py")
    result = cli("train", str(config), "--out", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        'Error: MPI launcher environment (OMPI_COMM_WORLD_SIZE) but mpi4py is not '
        'installed: pip install "nncli[mpi]"']


def test_launcher_variables_are_read_in_order() -> None:
    assert launcher_environment({}) is None
    assert launcher_environment({"PMIX_RANK": "0"}) == ("PMIX_RANK", None)
    assert launcher_environment({"PMIX_RANK": "0", "OMPI_COMM_WORLD_SIZE": "4"}) == (
        "OMPI_COMM_WORLD_SIZE", 4)
    assert launcher_environment({"PMI_SIZE": "3", "PMI_RANK": "1"}) == ("PMI_SIZE", 3)


def test_the_slices_are_those_of_array_split() -> None:
    for batch in range(0, 23):
        for size in range(1, 6):
            parts = np.array_split(np.arange(batch), size)
            for rank, part in enumerate(parts):
                lo, hi = slice_bounds(batch, size, rank)
                assert np.array_equal(np.arange(batch)[lo:hi], part)


class _FakeComm:
    """One rank's view of a world whose other ranks report ``others`` (status, signal)."""

    def __init__(self, rank: int, others: list[Any]) -> None:
        self.rank, self.others = rank, others

    def Get_rank(self) -> int:
        return self.rank

    def Get_size(self) -> int:
        return 1 + len(self.others)

    def allgather(self, mine: Any) -> list[Any]:
        return [mine, *self.others] if self.rank == 0 else [*self.others, mine]


class _FakeMPI:
    def __init__(self, comm: _FakeComm) -> None:
        self.COMM_WORLD = comm


def test_a_failure_on_another_rank_is_raised_on_this_one_with_its_message() -> None:
    world = MpiWorld(_FakeMPI(_FakeComm(0, [((2, "data.train: no such file"), None)])))
    with pytest.raises(Exception, match="rank 1: data.train: no such file") as caught:
        world.together(lambda: 42)
    assert getattr(caught.value, "exit_code", None) == 2
    quiet = MpiWorld(_FakeMPI(_FakeComm(0, [(None, None)])))
    assert quiet.together(lambda: 42) == 42
    with pytest.raises(ValueError):  # this rank's own error first, as it was raised
        quiet.together(lambda: int("x"))


def test_the_other_ranks_run_dir_writes_nothing(tmp_path: Path) -> None:
    run = QuietRunDir(tmp_path / "run", rank=1)
    run.lock()
    run.claim(fresh=True)
    run.write_config("a: 1\n")
    run.start_metrics(rows=[])
    run.append_metrics({"epoch": 1})
    run.write_summary({"epochs": 1})
    run.abandon_if_new()
    assert list(tmp_path.iterdir()) == []


@needs_mpi
def test_two_ranks_on_an_array_folder_train_the_weights_of_one_process_on_its_npz(
        tmp_path: Path) -> None:
    """The three rooms together: an array folder (X.npy memory-mapped, uint8, normalized
    per batch) trained by 2 ranks equals one process trained on the same data in an .npz."""
    X, y = blobs(n_per_class=20, n_features=5)
    X8 = np.clip(X * 20 + 128, 0, 255).astype(np.uint8)
    folder = tmp_path / "arrays"
    folder.mkdir()
    np.save(folder / "X.npy", X8)
    np.save(folder / "y.npy", y)
    np.savez(tmp_path / "same.npz", X=X8, y=y)
    train = {"epochs": 3, "batch_size": 7, "lr": 0.05, "dtype": "float64",
             "optimizer": "adam"}
    configs = {}
    for name, source in (("folder", folder), ("npz", tmp_path / "same.npz")):
        doc = config_doc(source.resolve(), data={"val_split": 0.25, "normalize": "standard"},
                         model={"hidden": [6]}, reg={"lambda": 0.01}, train=train)
        configs[name] = write_yaml(tmp_path / f"{name}.yaml", doc)
    ref = cli("train", str(configs["npz"]), "--out", str(tmp_path / "ref"))
    assert ref.exit_code == 0, ref.stderr
    done = mpirun_train(tmp_path, configs["folder"], "--out", "run")
    assert done.returncode == 0, done.stderr
    assert_same_run(tmp_path / "rank0" / "run", tmp_path / "ref")
    assert files_under(tmp_path / "rank1") == set()
