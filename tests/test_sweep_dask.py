"""``nncli sweep --engine dask``: the same 2x2 grid on a Dask LocalCluster bound to
127.0.0.1 (two worker processes, one thread each, no dashboard) makes the same four runs
and the same ranking as the local engine; a missing ``distributed`` is one Error line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from helpers_data import ROOT, cli, hide_package, write_yaml

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
    # each trial ran as a task on a worker: BLAS threads = the worker's cores // its one
    # task thread (a local run of 4 trials on 2 workers would give cores // 2)
    for row in rows:
        record = json.loads((folder / row["trial"] / "trial.json").read_text())
        assert record["status"] == "done" and record["exit_code"] == 0
        assert record["threads"] == usable_cores()


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
