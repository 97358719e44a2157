"""``nncli sweep --engine dask``: the same 2x2 grid on a Dask LocalCluster bound to
127.0.0.1 (two worker processes, one thread each, no dashboard) makes the same four runs
and the same ranking as the local engine; a missing ``distributed`` is one Error line."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers_data import ROOT, cli, hide_package, write_yaml
from test_sweep import _mid_way

from nncli.sweep import usable_cores

GRID = ("--grid", "train.lr=0.001,0.01", "--grid", "reg.lambda=0,1e-4")


def digits_config(tmp: Path) -> Path:
    doc = {"data": {"train": str(ROOT / "datasets/digits/train"), "val_split": 0.2},
           "model": {"hidden": [16]}, "train": {"epochs": 2}}
    return write_yaml(tmp / "digits.yaml", doc)


def test_a_2x2_grid_on_a_local_dask_cluster(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed", reason="dask[distributed] is not "
                                      "installed (pip install 'nncli[dask]')")
    config = digits_config(tmp_path)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        result = cli("sweep", config, *GRID, "--engine", "dask", "--address", address,
                     "--out", tmp_path / "sw", "--json")
    assert result.exit_code == 0, result.stderr
    folder = tmp_path / "sw"
    with (folder / "sweep.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["trial"] for r in rows) == [f"trial-00{i}" for i in range(1, 5)]
    truth = {r["trial"]: json.loads((folder / r["trial"] / "summary.json").read_text())
             ["best"]["val_loss"] for r in rows}
    assert [r["trial"] for r in rows] == sorted(truth, key=truth.get)
    assert all(r["status"] == "done" for r in rows)
    best = json.loads(result.stdout)["best"]
    assert (folder / "best.yaml").read_text() == \
        (folder / best["trial"] / "config.yaml").read_text()
    # each trial ran as a task on a worker: BLAS threads = the machine's cores // the task
    # threads of all the workers on it (2 worker processes of 1 thread share these cores)
    for row in rows:
        record = json.loads((folder / row["trial"] / "trial.json").read_text())
        assert record["status"] == "done" and record["exit_code"] == 0
        assert record["threads"] == max(1, usable_cores() // 2)


def test_without_distributed_the_dask_engine_is_one_error(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    hide_package(monkeypatch, "distributed")
    result = cli("sweep", digits_config(tmp_path), *GRID, "--engine", "dask", "--address",
                 "tcp://127.0.0.1:8786", "--out", tmp_path / "sw")
    assert result.exit_code == 2
    assert result.stderr == 'Error: --engine dask needs dask[distributed]: pip install ' \
                            '"nncli[dask]"\n'
    assert not (tmp_path / "sw").exists()


def test_ctrl_c_on_dask_stops_the_trials_and_a_rerun_resumes_them(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed", reason="dask[distributed] is not "
                                      "installed (pip install 'nncli[dask]')")
    doc = {"data": {"train": str(ROOT / "datasets/digits/train"), "val_split": 0.2},
           "model": {"hidden": [16]}, "train": {"epochs": 20, "batch_size": 8}}
    config, folder = write_yaml(tmp_path / "digits.yaml", doc), tmp_path / "sw"
    env = {k: v for k, v in os.environ.items() if k not in ("NNCLI_DEBUG", "NNCLI_TEST_PAUSE")}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        command = [sys.executable, "-m", "nncli", "sweep", str(config), *GRID, "--engine",
                   "dask", "--address", cluster.scheduler_address, "--out", str(folder)]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, env=env, start_new_session=True)
        deadline = time.monotonic() + 120
        while not _mid_way(folder):  # a trial has saved a checkpoint, far from its end
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no trial ever reached a checkpoint"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGINT)
        err = proc.communicate(timeout=120)[1]
        assert proc.returncode == 130, err
        stopped = [r["trial"] for r in read_csv(folder) if r["status"] == "interrupted"]
        assert stopped and (folder / ".stop").exists()  # the stop request the runners saw
        again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0, again.stderr
    for run in sorted(folder.glob("trial-*")):
        epochs = [json.loads(line)["epoch"] for line in
                  (run / "metrics.jsonl").read_text().splitlines()]
        assert epochs == list(range(1, 21)), run.name
        record = json.loads((run / "trial.json").read_text())
        assert record["status"] == "done"
        assert record["resumed"] == (run.name in stopped and "--resume" in
                                     (run / "train.log").read_text())
    assert any(json.loads((folder / t / "trial.json").read_text())["resumed"]
               for t in stopped)
    # the rerun removed the old stop request before it started: only the sweep's files
    assert sorted(p.name for p in folder.iterdir()) == [
        "best.yaml", "sweep.csv", "sweep.json", *(f"trial-00{i}" for i in range(1, 5))]


def read_csv(folder: Path) -> list[dict[str, str]]:
    with (folder / "sweep.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))
