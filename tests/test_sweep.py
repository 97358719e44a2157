"""``nncli sweep`` on local workers: the trials are ordinary runs, sweep.csv ranks them by
their summaries, best.yaml is the best run's config, a diverged trial is a row, a changed
space is refused, and a sweep interrupted mid-way and run again trains every trial once.
The space parser is checked by properties (values round-trip, draws stay in their range).
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers_data import ROOT, cli, write_yaml
from hypothesis import given
from hypothesis import strategies as st

from nncli.config import parse_yaml
from nncli.errors import NncliError
from nncli.sweep import Space, build_space, draw, make_trials, parse_grid, split_values

GRID = ("--grid", "train.lr=0.001,0.01", "--grid", "reg.lambda=0,1e-4")
WAIT = 120.0


def digits_config(tmp: Path, epochs: int = 2, **train: object) -> Path:
    """A tiny digits MLP with a validation split (val_loss is the default metric)."""
    doc = {"data": {"train": str(ROOT / "datasets/digits/train"), "val_split": 0.2},
           "model": {"hidden": [16]}, "train": {"epochs": epochs, **train}}
    return write_yaml(tmp / "digits.yaml", doc)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """One 2x2 grid sweep on 2 workers, shared by the tests that read its files."""
    tmp = tmp_path_factory.mktemp("grid")
    result = cli("sweep", digits_config(tmp), *GRID, "--workers", "2", "--out", tmp / "sw")
    assert result.exit_code == 0, result.stderr
    return tmp / "sw", result


def test_a_2x2_grid_makes_four_runs_ranked_by_their_summaries(grid_sweep) -> None:
    folder, _ = grid_sweep
    rows = read_csv(folder / "sweep.csv")
    assert list(rows[0])[:8] == ["rank", "trial", "train.lr", "reg.lambda", "status",
                                 "best_epoch", "val_loss", "run_dir"]
    assert sorted(r["trial"] for r in rows) == [f"trial-00{i}" for i in range(1, 5)]
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == \
        [f"trial-00{i}" for i in range(1, 5)]
    # each row's metric is its run's best epoch's val_loss; the rows go best first
    truth = {r["trial"]: summary(folder / r["trial"])["best"]["val_loss"] for r in rows}
    assert [r["trial"] for r in rows] == sorted(truth, key=truth.get)
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4"]
    for row in rows:
        assert float(row["val_loss"]) == truth[row["trial"]]
        assert row["status"] == "done"
        config = yaml.safe_load((folder / row["trial"] / "config.yaml").read_text())
        assert config["train"]["lr"] == float(row["train.lr"])
        assert config["reg"]["lambda"] == float(row["reg.lambda"])
    best = (folder / rows[0]["trial"] / "config.yaml").read_text()
    assert (folder / "best.yaml").read_text() == best


def test_progress_lines_and_table(grid_sweep) -> None:
    _, result = grid_sweep
    lines = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert sorted(line.split()[0] for line in lines) == [f"[{i}/4]" for i in range(1, 5)]
    assert any("trial-003 train.lr=0.01 reg.lambda=0: done val_loss " in line for line in lines)
    table = result.stdout.splitlines()
    assert table[0].split() == ["rank", "trial", "train.lr", "reg.lambda", "status",
                                "best_epoch", "val_loss"]
    assert len(table) == 5


def test_the_same_command_again_trains_nothing_and_json_gives_the_rows(grid_sweep) -> None:
    folder, _ = grid_sweep
    before = {p: p.stat().st_mtime_ns for p in folder.glob("trial-*/metrics.jsonl")}
    config = folder.parent / "digits.yaml"
    result = cli("sweep", config, *GRID, "--workers", "2", "--out", folder, "--json")
    assert result.exit_code == 0, result.stderr
    assert {p: p.stat().st_mtime_ns for p in folder.glob("trial-*/metrics.jsonl")} == before
    assert result.stderr.count("kept from an earlier sweep") == 4
    out = json.loads(result.stdout)
    assert out["metric"] == "val_loss" and len(out["rows"]) == 4
    assert out["best"] == out["rows"][0] and out["best"]["rank"] == 1
    assert [r["trial"] for r in out["rows"]] == [r["trial"] for r in
                                                 read_csv(folder / "sweep.csv")]


def test_another_search_space_on_the_same_folder_is_refused(grid_sweep) -> None:
    folder, _ = grid_sweep
    plan = (folder / "sweep.json").read_bytes()
    result = cli("sweep", folder.parent / "digits.yaml", "--grid", "train.lr=0.5,0.05",
                 "--out", folder)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "another search space" in result.stderr
    assert (folder / "sweep.json").read_bytes() == plan


@pytest.mark.parametrize("args, words", [
    (("--grid", "train.lr="), "expected KEY=V1,V2"),
    (("--grid", "train.lrr=0.1,0.2"), "did you mean 'train.lr'"),
    (("--grid", "train.lr=0.1,,0.2"), "empty value"),
    (("--random", "2", "--uniform", "reg.lambda=1:0"), "above HI"),
    (("--random", "2", "--log-uniform", "train.lr=0:0.1"), "LO > 0"),
    (("--log-uniform", "train.lr=1e-4:1e-1",), "--random N"),
    (("--grid", "train.lr=-1"), "trial-001 (train.lr=-1)"),
    (("--grid", "train.lr=0.1", "--metric", "val_rmse"), "classification"),
    (("--grid", "train.lr=0.1", "--engine", "dask"), "--address"),
    (("--grid", "train.lr=0.1", "--address", "tcp://127.0.0.1:8786"), "--engine dask"),
])
def test_bad_specs_are_one_error_line_and_nothing_written(tmp_path: Path, args: tuple,
                                                          words: str) -> None:
    result = cli("sweep", digits_config(tmp_path), *args, "--out", tmp_path / "sw")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert words in result.stderr
    assert not (tmp_path / "sw").exists()


def test_a_val_metric_without_validation_data_is_an_error(tmp_path: Path) -> None:
    doc = {"data": {"train": str(ROOT / "datasets/digits/train")}, "train": {"epochs": 1}}
    result = cli("sweep", write_yaml(tmp_path / "c.yaml", doc), "--grid", "train.lr=0.1",
                 "--metric", "val_acc", "--out", tmp_path / "sw")
    assert result.exit_code == 2 and "no validation data" in result.stderr


def test_a_missing_data_path_is_one_error_before_any_trial(tmp_path: Path) -> None:
    doc = {"data": {"train": "no/such/folder"}, "train": {"epochs": 1}}
    result = cli("sweep", write_yaml(tmp_path / "c.yaml", doc), "--grid", "train.lr=0.1,0.2",
                 "--out", tmp_path / "sw")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "data.train: no/such/folder: no such file or folder" in result.stderr
    assert not (tmp_path / "sw").exists()


def test_a_diverging_trial_is_a_row_and_the_sweep_exits_0(tmp_path: Path) -> None:
    config = digits_config(tmp_path, epochs=2, optimizer="sgd")
    result = cli("sweep", config, "--grid", "train.lr=0.01,1e6", "--workers", "2",
                 "--metric", "val_acc", "--out", tmp_path / "sw")
    assert result.exit_code == 0, result.stderr
    rows = read_csv(tmp_path / "sw" / "sweep.csv")
    assert [(r["trial"], r["rank"], r["status"]) for r in rows] == [
        ("trial-001", "1", "done"), ("trial-002", "", "diverged")]
    assert "smaller train.lr" in rows[1]["error"]
    record = json.loads((tmp_path / "sw" / "trial-002" / "trial.json").read_text())
    assert record["exit_code"] == 1
    assert "Error: " in (tmp_path / "sw" / "trial-002" / "train.log").read_text()
    # a rerun keeps the diverged trial as it is (it would diverge again)
    again = cli("sweep", config, "--grid", "train.lr=0.01,1e6", "--metric", "val_acc",
                "--out", tmp_path / "sw")
    assert again.exit_code == 0 and again.stderr.count("kept from an earlier sweep") == 2


def test_random_search_is_reproducible_and_inside_its_ranges() -> None:
    space = build_space([], ["train.lr=1e-4:1e-1"], ["reg.lambda=0:0.01"], 5)
    first, second = make_trials(space, seed=3), make_trials(space, seed=3)
    assert first == second and len(first) == 5
    assert make_trials(space, seed=4) != first
    for trial in first:
        values = {k: float(v) for k, v in trial.sets}
        assert 1e-4 <= values["train.lr"] <= 1e-1 and 0 <= values["reg.lambda"] <= 0.01


def test_grid_and_random_cross() -> None:
    space = build_space(["model.hidden=[8],[16,8]"], ["train.lr=1e-3:1e-1"], [], 3)
    trials = make_trials(space, seed=0)
    assert len(trials) == 6
    assert [dict(t.sets)["model.hidden"] for t in trials] == ["[8]"] * 3 + ["[16,8]"] * 3
    assert len({dict(t.sets)["train.lr"] for t in trials}) == 3  # the same 3 draws twice


yaml_scalars = st.one_of(st.integers(-10**6, 10**6),
                         st.floats(allow_nan=False, allow_infinity=False, width=32),
                         st.lists(st.integers(1, 512), min_size=1, max_size=3))


@given(st.lists(yaml_scalars, min_size=1, max_size=4, unique_by=str))
def test_grid_values_round_trip(values: list) -> None:
    texts = [yaml.safe_dump(v, default_flow_style=True).split("\n...")[0].strip()
             for v in values]
    if len(set(texts)) < len(texts):
        return
    key, parsed = parse_grid("train.lr=" + ",".join(texts))
    assert key == "train.lr" and list(parsed) == texts
    assert [parse_yaml(t, "t") for t in parsed] == values
    assert split_values(",".join(texts)) == texts


@given(st.floats(1e-8, 1e3), st.floats(1.0, 1e6), st.integers(0, 2**31))
def test_log_uniform_draws_stay_in_range(low: float, factor: float, seed: int) -> None:
    high = low * factor
    space = Space(ranges=(("train.lr", "log-uniform", low, high),), random=4)
    for (point,) in draw(space, seed):
        assert low <= point[1] <= high and math.isfinite(point[1])


def test_an_empty_space_is_an_error() -> None:
    with pytest.raises(NncliError, match="nothing to sweep"):
        build_space([], [], [], 0)


def _sweep_process(tmp: Path, config: Path, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NNCLI_DEBUG", "NNCLI_TEST_PAUSE")}
    env.update(NNCLI_TEST_PAUSE="sweep", NNCLI_TEST_PAUSE_FILE=str(tmp / "paused.txt"))
    return subprocess.Popen(
        [sys.executable, "-m", "nncli", "sweep", str(config), *GRID, "--workers", "2",
         "--out", str(tmp / "sw"), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True, env=env, start_new_session=True)


def _mid_way(folder: Path) -> bool:
    """A trial has saved a checkpoint and is at most half-way (not about to finish before
    the signal reaches it): Ctrl-C now must resume it later."""
    for run in folder.glob("trial-*"):
        log = run / "metrics.jsonl"
        epochs = len(log.read_text().splitlines()) if log.exists() else 0
        if (run / "checkpoints" / "last.npz").exists() and 1 <= epochs <= 10:
            return True
    return False


def _wait_until_paused_mid_way(tmp: Path, proc: subprocess.Popen[str]) -> None:
    """The sweep pauses once its first trial has ended (its workers go on): wait for that
    and for another trial to be mid-way, the moment to stop the sweep."""
    deadline = time.monotonic() + WAIT
    while not ((tmp / "paused.txt").exists() and _mid_way(tmp / "sw")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the sweep never paused with a trial mid-way"
        time.sleep(0.01)


def test_a_sweep_interrupted_mid_way_and_run_again_trains_every_trial_once(
        tmp_path: Path) -> None:
    config = digits_config(tmp_path, epochs=20, batch_size=8)
    proc = _sweep_process(tmp_path, config)
    _wait_until_paused_mid_way(tmp_path, proc)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 130, err
    assert "Error: interrupted" in err
    first = {r["trial"]: r["status"] for r in read_csv(tmp_path / "sw" / "sweep.csv")}
    assert "done" in first.values() and "interrupted" in first.values()
    assert len(first) == 4  # one row per trial: those not started are interrupted too

    env = {k: v for k, v in os.environ.items() if k != "NNCLI_TEST_PAUSE"}
    again = subprocess.run([sys.executable, "-m", "nncli", "sweep", str(config), *GRID,
                            "--workers", "2", "--out", str(tmp_path / "sw")],
                           capture_output=True, text=True, env=env, timeout=WAIT)
    assert again.returncode == 0, again.stderr
    rows = read_csv(tmp_path / "sw" / "sweep.csv")
    assert len(rows) == 4 and {r["status"] for r in rows} == {"done"}
    for row in rows:
        run = tmp_path / "sw" / row["trial"]
        epochs = [json.loads(line)["epoch"] for line in
                  (run / "metrics.jsonl").read_text().splitlines()]
        assert epochs == list(range(1, 21)), row["trial"]
        record = json.loads((run / "trial.json").read_text())
        # interrupted with a checkpoint: resumed from it; finished: not run again
        assert record["resumed"] == (first.get(row["trial"]) == "interrupted" and
                                     "--resume" in (run / "train.log").read_text())
    assert any(json.loads((tmp_path / "sw" / t / "trial.json").read_text())["resumed"]
               for t in first)
    assert sorted(p.name for p in (tmp_path / "sw").iterdir() if p.is_dir()) == \
        [f"trial-00{i}" for i in range(1, 5)]  # never a second run folder (trial-001-2)
    assert again.stderr.count("kept from an earlier sweep") == \
        list(first.values()).count("done")


def test_report_of_a_sweep_folder_plots_the_metric_against_each_key(grid_sweep,
                                                                    tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="nncli[plot] (matplotlib) is not installed")
    from test_report import parsed

    folder, _ = grid_sweep
    out = tmp_path / "sweep.html"
    result = cli("report", folder, "-o", out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{out}\n"
    page = parsed(out)  # well formed, self-contained, every picture a PNG that is not blank
    assert len(page.images) == 2  # one per swept key
    text = "".join(page.text)
    assert "val_loss against train.lr" in out.read_text() and "Trials" in text
    for row in read_csv(folder / "sweep.csv"):
        assert row["trial"] in text


def test_log_axis_for_log_uniform_keys_and_wide_positive_grids() -> None:
    from nncli.sweepreport import log_axis

    plan = {"space": {"ranges": {"train.lr": {"kind": "log-uniform"}}}}
    assert log_axis("train.lr", [0.01, 0.02], plan)
    assert log_axis("reg.lambda", [1e-5, 1e-3], plan)
    assert not log_axis("reg.lambda", [0.0, 1e-3], plan)  # 0 has no place on a log axis
    assert not log_axis("train.momentum", [0.5, 0.9], plan)


def test_a_few_swept_values_are_the_ticks_labelled_as_the_csv_writes_them() -> None:
    from nncli.plots import pyplot
    from nncli.sweepreport import MAX_LABELLED_VALUES, _number_ticks

    plt = pyplot()
    figure, ax = plt.subplots()
    ax.scatter([1e-3, 5e-3, 1e-3], [1.0, 2.0, 3.0])
    _number_ticks(ax, [1e-3, 5e-3, 1e-3], ["1e-3", "5e-3", "1e-3"], log=False)
    figure.canvas.draw()
    assert list(ax.get_xticks()) == [1e-3, 5e-3]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1e-3", "5e-3"]
    plt.close(figure)

    many = [i / 1000 for i in range(1, 3 * MAX_LABELLED_VALUES)]
    figure, ax = plt.subplots()
    ax.scatter(many, many)
    _number_ticks(ax, many, [str(x) for x in many], log=False)
    figure.canvas.draw()
    inside = [t for t in ax.get_xticks() if min(many) <= t <= max(many)]
    assert 2 <= len(inside) <= 6  # the default locator puts ~9 overlapping labels here
    plt.close(figure)


def test_sigterm_to_the_sweep_alone_stops_its_trials_and_leaves_no_child(
        tmp_path: Path) -> None:
    """A service manager's SIGTERM reaches the sweep process only (the trials run in their
    own sessions): the sweep must pass the stop on, wait for the trials' checkpoints and
    leave no trial process behind."""
    config = digits_config(tmp_path, epochs=20, batch_size=8)
    proc = _sweep_process(tmp_path, config)
    _wait_until_paused_mid_way(tmp_path, proc)
    proc.send_signal(signal.SIGTERM)  # the sweep's pid only, not its process group
    out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 130, err
    rows = read_csv(tmp_path / "sw" / "sweep.csv")
    assert len(rows) == 4 and "interrupted" in {r["status"] for r in rows}
    for row in rows:  # each stopped trial kept its checkpoint, or had no epoch to keep
        run = tmp_path / "sw" / row["trial"]
        if row["status"] == "interrupted" and not (run / "checkpoints" / "last.npz").exists():
            log = run / "metrics.jsonl"
            assert not log.exists() or log.read_text().strip() == "", row
    assert any((tmp_path / "sw" / r["trial"] / "checkpoints" / "last.npz").exists()
               for r in rows if r["status"] == "interrupted")  # the mid-way one at least
    left = subprocess.run(["pgrep", "-f", str(tmp_path / "sw")], capture_output=True,
                          text=True)
    assert left.stdout.strip() == "", "a trial outlived the sweep"
