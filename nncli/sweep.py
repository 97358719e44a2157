"""Hyperparameter sweeps (``nncli sweep``): the search space, its trials, and their ranking.

A sweep directory ``DIR`` holds one ordinary run directory per trial and the sweep's files::

    DIR/sweep.json          the search space, the base config and every trial's overrides,
                            fixed before the first trial runs (a rerun must match it)
    DIR/sweep.csv           one row per trial that ran, best first (see :func:`ranked`)
    DIR/best.yaml           the best trial's resolved config (its config.yaml)
    DIR/trial-001/          a run directory (config.yaml, metrics, checkpoints, summary),
        train.log           plus the trial's stdout+stderr, and
        trial.json          the trial's status, exit code, last Error line, seconds

The space: ``--grid KEY=V1,V2`` (values YAML-typed, as ``--set`` reads them) and, with
``--random N``, N draws of ``--log-uniform KEY=LO:HI`` / ``--uniform KEY=LO:HI`` seeded
from the config's ``seed``. Grid and random combine as a product: every grid point with
every one of the N draws (N x |grid| trials). Running the trials is :mod:`nncli.engines`'s.
The library never prints: progress goes to a :class:`SweepProgress` callback.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import math
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nncli.config import SCHEMA, Config, apply_overrides, load_config, parse_yaml
from nncli.errors import NncliError
from nncli.rundir import atomic_write_bytes, holds_run

log = logging.getLogger("nncli")

PLAN_FILE = "sweep.json"
CSV_FILE = "sweep.csv"
BEST_FILE = "best.yaml"
TRIAL_FILE = "trial.json"
LOG_FILE = "train.log"
STOP_FILE = ".stop"  # its presence asks every trial runner to stop (see nncli.engines)
METRICS = ("val_loss", "val_acc", "val_rmse", "loss")
HIGHER_IS_BETTER = ("val_acc",)
RANGE_KINDS = ("log-uniform", "uniform")
DRAW_DIGITS = 6  # random draws keep 6 significant digits: readable in names and tables


@dataclass(frozen=True)
class Space:
    """The search space: ``grid`` as ``(key, (value text, ...))`` in the order given,
    ``ranges`` as ``(key, kind, lo, hi)``, ``random`` the number of draws (0: none)."""

    grid: tuple[tuple[str, tuple[str, ...]], ...] = ()
    ranges: tuple[tuple[str, str, float, float], ...] = ()
    random: int = 0

    def keys(self) -> list[str]:
        """The swept keys, grid keys first: sweep.csv's key columns."""
        return [k for k, _ in self.grid] + [k for k, *_ in self.ranges]

    def log_keys(self) -> list[str]:
        """Keys whose values are best drawn on a log axis (log-uniform ranges)."""
        return [k for k, kind, *_ in self.ranges if kind == "log-uniform"]

    def to_dict(self) -> dict[str, Any]:
        """The space as plain JSON data (sweep.json's ``space``)."""
        return {"grid": {k: list(v) for k, v in self.grid},
                "ranges": {k: {"kind": kind, "low": lo, "high": hi}
                           for k, kind, lo, hi in self.ranges},
                "random": self.random}


@dataclass(frozen=True)
class Trial:
    """One trial: its name (``trial-001``) and its overrides as ``(key, value text)``."""

    name: str
    sets: tuple[tuple[str, str], ...]

    def overrides(self) -> list[str]:
        """``KEY=VALUE`` items for ``--set``."""
        return [f"{k}={v}" for k, v in self.sets]

    def label(self) -> str:
        """``train.lr=0.1 reg.lambda=0.0001``, for progress lines."""
        return " ".join(self.overrides())


def split_values(text: str) -> list[str]:
    """``"0.1,[64,32],'a,b'"`` -> ``["0.1", "[64,32]", "'a,b'"]``: commas inside brackets,
    braces or quotes do not split (a grid value may be a YAML list)."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def check_key(key: str, option: str) -> str:
    """``key`` if it names one config key (a leaf of SCHEMA, or inside a mapping-valued
    option); else the usual unknown-key error, prefixed with the option."""
    node: Any = SCHEMA
    try:
        apply_overrides({}, [f"{key}=null"])  # unknown keys: the error with a suggestion
    except NncliError as exc:
        raise NncliError(f"{option} {key}: {exc}") from None
    for part in key.split("."):
        if not isinstance(node, Mapping):
            break
        node = node[part]
    if isinstance(node, Mapping):
        raise NncliError(f"{option} {key}: '{key}' is a section, not a key (known here: "
                         f"{', '.join(f'{key}.{k}' for k in node)})")
    return key


def _key_and_text(spec: str, option: str, example: str) -> tuple[str, str]:
    key, sep, text = spec.partition("=")
    key = key.strip()
    if not sep or not key or not text.strip():
        raise NncliError(f"{option} {spec!r}: expected {example}")
    return check_key(key, option), text.strip()


def parse_grid(spec: str) -> tuple[str, tuple[str, ...]]:
    """``"train.lr=0.1,0.01"`` -> ``("train.lr", ("0.1", "0.01"))``; each value must parse
    as YAML (as ``--set`` values do) and none may be empty or repeated."""
    key, text = _key_and_text(spec, "--grid", "KEY=V1,V2,..., e.g. --grid train.lr=0.1,0.01")
    values = split_values(text)
    for value in values:
        if not value:
            raise NncliError(f"--grid {spec!r}: an empty value (two commas, or one at an end)")
        parse_yaml(value, f"--grid {key}")
    if len(set(values)) < len(values):
        raise NncliError(f"--grid {spec!r}: a value is given twice")
    return key, tuple(values)


def parse_range(spec: str, kind: str) -> tuple[str, str, float, float]:
    """``"train.lr=1e-4:1e-1"`` -> ``("train.lr", kind, 1e-4, 0.1)``: finite LO <= HI, and
    LO > 0 for ``log-uniform``."""
    option = f"--{kind}"
    key, text = _key_and_text(spec, option, f"KEY=LO:HI, e.g. {option} train.lr=1e-4:1e-1")
    low_text, sep, high_text = text.partition(":")
    try:
        low, high = float(low_text), float(high_text)
    except ValueError:
        low = high = math.nan
    if not sep or not (math.isfinite(low) and math.isfinite(high)):
        raise NncliError(f"{option} {spec!r}: expected two finite numbers LO:HI")
    if low > high:
        raise NncliError(f"{option} {spec!r}: LO ({low:g}) is above HI ({high:g})")
    if kind == "log-uniform" and low <= 0:
        raise NncliError(f"{option} {spec!r}: a log-uniform range needs LO > 0 "
                         f"(got {low:g}); use --uniform for ranges that include 0")
    return key, kind, low, high


def build_space(grids: list[str], log_uniform: list[str], uniform: list[str],
                random_n: int) -> Space:
    """The :class:`Space` of the command's options; a key swept twice, ranges without
    ``--random`` (or the reverse) and an empty space are errors."""
    grid = tuple(parse_grid(g) for g in grids)
    ranges = tuple([parse_range(s, "log-uniform") for s in log_uniform]
                   + [parse_range(s, "uniform") for s in uniform])
    keys = [k for k, _ in grid] + [k for k, *_ in ranges]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise NncliError(f"{twice[0]}: swept twice (one --grid, --log-uniform or --uniform "
                         f"per key)")
    if ranges and random_n < 1:
        raise NncliError("--log-uniform/--uniform need --random N (the number of draws)")
    if random_n and not ranges:
        raise NncliError("--random N needs at least one --log-uniform or --uniform range")
    if not keys:
        raise NncliError("nothing to sweep: give --grid KEY=V1,V2 or --random N with "
                         "--log-uniform/--uniform KEY=LO:HI")
    return Space(grid, ranges, random_n)


def _rounded(value: float, low: float, high: float) -> float:
    """``value`` to DRAW_DIGITS significant digits, kept inside ``[low, high]``."""
    if value == 0:
        return 0.0
    digits = DRAW_DIGITS - 1 - math.floor(math.log10(abs(value)))
    return min(max(round(value, digits), low), high)


def draw(space: Space, seed: int) -> list[tuple[tuple[str, float], ...]]:
    """The ``space.random`` draws of the ranges, reproducible from ``seed``: log-uniform as
    ``exp(U(log lo, log hi))``, uniform as ``U(lo, hi)``."""
    rng = random.Random(f"nncli sweep {seed}")
    draws = []
    for _ in range(space.random):
        point = []
        for key, kind, low, high in space.ranges:
            if kind == "log-uniform":
                value = math.exp(rng.uniform(math.log(low), math.log(high)))
            else:
                value = rng.uniform(low, high)
            point.append((key, _rounded(value, low, high)))
        draws.append(tuple(point))
    return draws


def yaml_text(value: Any) -> str:
    """A value as the YAML text that reads back as it (``1e-05`` -> ``1.0e-05``, a float)."""
    return yaml.safe_dump(value, default_flow_style=True).split("\n...")[0].strip()


def make_trials(space: Space, seed: int) -> list[Trial]:
    """Every grid point crossed with every random draw, grid-major, named ``trial-001``..."""
    points = list(itertools.product(*[[(k, v) for v in values] for k, values in space.grid]))
    draws = [tuple((k, yaml_text(v)) for k, v in d) for d in draw(space, seed)] or [()]
    combos = [tuple(p) + d for p in points for d in draws]
    width = max(3, len(str(len(combos))))
    return [Trial(f"trial-{i:0{width}d}", combo) for i, combo in enumerate(combos, 1)]


def has_validation(cfg: Config) -> bool:
    """The config holds out validation data (``data.val`` or ``data.val_split > 0``)."""
    return bool(cfg.data.val) or cfg.data.val_split > 0


def check_metric(metric: str | None, cfg: Config, where: str) -> str:
    """The metric to rank by: ``metric``, or by default val_loss with validation data, else
    loss; a val_* metric without validation data, val_acc on a regression and val_rmse on
    a classification are errors naming ``where`` (the base config or a trial)."""
    regression = cfg.task == "regression"
    if metric is None:
        return "val_loss" if has_validation(cfg) else "loss"
    if metric.startswith("val_") and not has_validation(cfg):
        raise NncliError(f"--metric {metric}: {where} has no validation data (set data.val "
                         f"or data.val_split, or rank by --metric loss)")
    if metric == "val_acc" and regression:
        raise NncliError(f"--metric val_acc: {where} is a regression (task: regression); "
                         f"rank by val_rmse or val_loss")
    if metric == "val_rmse" and not regression:
        raise NncliError(f"--metric val_rmse: {where} is a classification; rank by val_acc "
                         f"or val_loss")
    return metric


def trial_configs(config: str | Path, base_sets: list[str], trials: list[Trial]
                  ) -> list[Config]:
    """Every trial's resolved config, validated before anything runs (an error names the
    trial and its overrides)."""
    configs = []
    for trial in trials:
        try:
            configs.append(load_config(config, [*base_sets, *trial.overrides()]))
        except NncliError as exc:
            raise NncliError(f"{trial.name} ({trial.label()}): {exc}") from None
    return configs


def check_data_paths(configs: list[Config]) -> None:
    """Every data path of every trial exists (a typo fails once, up front, not once per
    trial); relative paths are taken from the current directory, where trials run too."""
    seen: set[str] = set()
    for cfg in configs:
        for key in ("train", "val", "test"):
            path = getattr(cfg.data, key)
            if path and path not in seen:
                seen.add(path)
                if not os.path.exists(path):
                    raise NncliError(f"data.{key}: {path}: no such file or folder (relative "
                                     f"paths are taken from the current directory, "
                                     f"{os.getcwd()}, where the trials run)")


def plan(space: Space, base: Config, trials: list[Trial]) -> dict[str, Any]:
    """What sweep.json holds: the space, the base config and every trial's overrides."""
    return {"format": 1, "space": space.to_dict(), "base_config": base.to_dict(),
            "trials": [{"trial": t.name, "set": dict(t.sets)} for t in trials]}


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, allow_nan=False) + "\n").encode("utf-8")


def write_or_check_plan(folder: Path, wanted: dict[str, Any]) -> None:
    """Write ``folder/sweep.json``, or check that the one there is the same sweep (the same
    command again): another space, base config or trial list is an error, nothing touched."""
    path = folder / PLAN_FILE
    if not path.exists():
        if holds_run(folder):
            raise NncliError(f"{folder}: holds a run, not a sweep; choose another --out")
        atomic_write_bytes(path, lambda h: h.write(_json_bytes(wanted)))
        return
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NncliError(f"{path}: unreadable sweep plan ({exc})") from None
    # a JSON round trip of ours, so tuples compare as the lists they were written as
    wanted = json.loads(_json_bytes(wanted))
    for part, what in (("space", "search space"), ("base_config", "base config"),
                       ("trials", "trial list")):
        if not isinstance(found, dict) or found.get(part) != wanted[part]:
            raise NncliError(f"{folder}: holds a sweep with another {what} ({path}); rerun "
                             f"the same command to resume it, or choose another --out")


@dataclass
class Row:
    """One trial's line of sweep.csv: its overrides, status and ranked metric."""

    trial: str
    values: dict[str, str]
    status: str
    best_epoch: int | None = None
    value: float | None = None
    run_dir: str = ""
    seconds: float | None = None
    error: str = ""
    rank: int | None = None

    def fields(self, metric: str) -> dict[str, Any]:
        """The row as sweep.csv / --json name its columns."""
        return {"rank": self.rank, "trial": self.trial, **self.values, "status": self.status,
                "best_epoch": self.best_epoch, metric: self.value, "run_dir": self.run_dir,
                "seconds": self.seconds, "error": self.error}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


NOT_STARTED = "not started: the sweep was interrupted first"


def read_row(folder: Path, trial: Trial, metric: str, unstarted: bool = False
             ) -> Row | None:
    """The trial's row from its files: ``done`` with a summary.json (the metric of its
    ``best`` epoch), else the status its trial.json records; if it never ran, None, or
    with ``unstarted`` (a sweep that ended interrupted) an ``interrupted`` row that says
    so."""
    run = folder / trial.name
    record = _read_json(run / TRIAL_FILE) or {}
    if unstarted and not record and not (run / "summary.json").exists():
        record = {"status": "interrupted", "error": NOT_STARTED}
    summary = _read_json(run / "summary.json")
    row = Row(trial.name, dict(trial.sets), str(record.get("status", "")), run_dir=str(run),
              seconds=record.get("seconds"), error=str(record.get("error") or ""))
    if summary is not None:
        best = summary.get("best") or {}
        value = best.get(metric)
        row.status, row.best_epoch, row.error = "done", summary.get("best_epoch"), ""
        row.value = float(value) if isinstance(value, (int, float)) else None
    elif not row.status:
        return None
    return row


def ranked(rows: list[Row], metric: str) -> list[Row]:
    """Rows best first: done trials with a finite metric by it (val_acc high first, the
    rest low first; a tie keeps trial order), ranked 1, 2, ...; then every other row
    (diverged, failed, interrupted, or done without the metric) in trial order, no rank."""
    sign = -1.0 if metric in HIGHER_IS_BETTER else 1.0
    scored = [r for r in rows if r.status == "done" and r.value is not None
              and math.isfinite(r.value)]
    scored.sort(key=lambda r: sign * r.value)  # type: ignore[operator]
    rest = [r for r in rows if r not in scored]
    for i, row in enumerate(scored, 1):
        row.rank = i
    for row in rest:
        row.rank = None
    return scored + rest


def csv_text(rows: list[Row], keys: list[str], metric: str) -> str:
    """sweep.csv: ``rank, trial, <keys>, status, best_epoch, <metric>, run_dir, seconds,
    error``; empty cells for missing values, floats as repr (exact)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = ["rank", "trial", *keys, "status", "best_epoch", metric, "run_dir", "seconds",
              "error"]
    writer.writerow(header)
    for row in rows:
        cells = row.fields(metric)
        writer.writerow(["" if cells.get(c) is None else cells[c] for c in header])
    return out.getvalue()


@dataclass
class SweepResult:
    """What a sweep leaves: its folder, the metric, rows best first, the best row."""

    folder: Path
    metric: str
    keys: list[str]
    rows: list[Row] = field(default_factory=list)
    interrupted: bool = False

    @property
    def best(self) -> Row | None:
        return self.rows[0] if self.rows and self.rows[0].rank == 1 else None

    def fields(self) -> dict[str, Any]:
        """``--json``: ``{"dir", "metric", "keys", "rows": [...], "best": row | null}``."""
        best = self.best
        return {"dir": str(self.folder), "metric": self.metric, "keys": self.keys,
                "rows": [r.fields(self.metric) for r in self.rows],
                "best": best.fields(self.metric) if best else None,
                "best_config": str(self.folder / BEST_FILE) if best else None}


def write_results(folder: Path, trials: list[Trial], keys: list[str], metric: str,
                  interrupted: bool = False) -> list[Row]:
    """Read every trial's row, rank them, write sweep.csv and best.yaml (atomically);
    returns the ranked rows. While the sweep runs, trials not yet run have no row; once
    it has ended ``interrupted``, they are ``interrupted`` rows (one row per trial)."""
    rows = [r for r in (read_row(folder, t, metric, interrupted) for t in trials)
            if r is not None]
    rows = ranked(rows, metric)
    text = csv_text(rows, keys, metric).encode("utf-8")
    atomic_write_bytes(folder / CSV_FILE, lambda h: h.write(text))
    if rows and rows[0].rank == 1:
        config = (Path(rows[0].run_dir) / "config.yaml").read_bytes()
        atomic_write_bytes(folder / BEST_FILE, lambda h: h.write(config))
    return rows


def default_folder(cfg: Config) -> Path:
    """``runs/<name>-sweep``."""
    return Path("runs") / f"{cfg.name}-sweep"


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class SweepProgress:
    """Callback interface: ``on_start(folder, metric, total, to_run)`` once everything is
    checked; ``on_trial_end(done, total, trial, row, kept)`` after each trial (``kept``:
    finished by an earlier sweep, not run again)."""

    def on_start(self, folder: Path, metric: str, total: int, to_run: int) -> None: ...

    def on_trial_end(self, done: int, total: int, trial: Trial, row: Row | None,
                     kept: bool) -> None: ...


class SweepInterrupted(NncliError):
    """Ctrl-C (SIGINT/SIGTERM) during a sweep: the running trials saved last.npz, sweep.csv
    has a row per trial. Exit 130."""

    exit_code = 130


@dataclass
class SweepRequest:
    """One ``nncli sweep`` command: the base config (and ``--set`` items), the space, where
    and how to run."""

    config: str
    space: Space
    sets: list[str] = field(default_factory=list)
    workers: int | None = None
    engine: str = "local"
    address: str | None = None
    metric: str | None = None
    out: str | None = None


def _check_engine(request: SweepRequest) -> None:
    if request.engine == "dask":
        if not request.address:
            raise NncliError("--engine dask needs --address tcp://HOST:PORT (the scheduler's)")
        if request.workers is not None:
            raise NncliError("--workers is for --engine local; a Dask cluster runs as many "
                             "trials at once as its workers have threads (dask worker "
                             "--nworkers K --nthreads 1)")
        from nncli.engines import require_dask

        require_dask()
    elif request.address:
        raise NncliError("--address is for --engine dask")


def prepare(request: SweepRequest) -> tuple[Path, list[Trial], str]:
    """Check everything (engine, base config, every trial's config, the metric) before
    anything runs; write or check sweep.json. Returns the folder, trials and metric."""
    _check_engine(request)
    base = load_config(request.config, request.sets)
    trials = make_trials(request.space, base.seed)
    configs = trial_configs(request.config, request.sets, trials)
    check_data_paths([base, *configs])
    metric = check_metric(request.metric, base, f"the config {request.config}")
    if request.metric is None and metric == "loss":
        log.warning("%s has no validation data: the trials are ranked by their training "
                    "loss, which favours the least regularized; set data.val_split (e.g. "
                    "0.2) to rank by val_loss", request.config)
    for trial, cfg in zip(trials, configs):
        check_metric(metric, cfg, trial.name)
    folder = Path(request.out) if request.out else default_folder(base)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NncliError(f"{folder}: cannot create the sweep folder ({exc.strerror or exc})"
                         ) from None
    write_or_check_plan(folder, plan(request.space, base, trials))
    return folder, trials, metric


def _finished(folder: Path, trial: Trial) -> bool:
    """Done (a summary) or diverged (rerunning would diverge again): not run again.
    Failed and interrupted trials run again (a failure may have been the machine's)."""
    record = _read_json(folder / trial.name / TRIAL_FILE) or {}
    return (folder / trial.name / "summary.json").exists() or \
        record.get("status") == "diverged"


def run_sweep(request: SweepRequest, progress: SweepProgress | None = None) -> SweepResult:
    """Run the sweep of ``request`` (see the module docstring) and return its ranked rows;
    raises :class:`SweepInterrupted` after Ctrl-C, with sweep.csv written."""
    from nncli import engines
    from nncli.rundir import RunDir
    from nncli.testhooks import pause_here

    progress = progress or SweepProgress()
    folder, trials, metric = prepare(request)
    keys = request.space.keys()
    lock = RunDir(folder)
    lock.lock()  # a second sweep on this folder is refused while this one runs
    try:
        stop_file = folder / STOP_FILE
        stop_file.unlink(missing_ok=True)  # a stop request of an earlier, interrupted sweep
        todo = [t for t in trials if not _finished(folder, t)]
        by_name = {t.name: t for t in trials}
        progress.on_start(folder, metric, len(trials), len(todo))
        count = [0]

        def report(trial: Trial, kept: bool) -> None:
            count[0] += 1
            progress.on_trial_end(count[0], len(trials), trial,
                                  read_row(folder, trial, metric), kept)

        for trial in trials:
            if trial not in todo:
                report(trial, True)

        def on_record(record: dict[str, Any]) -> None:
            if record.get("status") == "skipped" or record.get("trial") not in by_name:
                return
            report(by_name[record["trial"]], False)
            write_results(folder, trials, keys, metric)
            if count[0] == len(trials) - len(todo) + 1:
                pause_here("sweep")  # tests: interrupt it with one trial done, others running

        workers = request.workers or max(1, min(usable_cores(), len(todo) or 1))
        threads = max(1, usable_cores() // workers) if request.engine == "local" else None
        specs = [engines.trial_spec(t.name, folder / t.name, Path(request.config),
                                    [*request.sets, *t.overrides()], threads, stop_file)
                 for t in todo]
        interrupted = _run(request, specs, workers, stop_file, on_record)
        rows = write_results(folder, trials, keys, metric, interrupted)
    finally:
        lock.release()
    if interrupted:
        raise SweepInterrupted(f"interrupted; {sum(r.status == 'done' for r in rows)} of "
                               f"{len(trials)} trials done, the running ones saved last.npz; "
                               f"run the same command again to finish the sweep")
    return SweepResult(folder, metric, keys, rows)


def _run(request: SweepRequest, specs: list[dict[str, Any]], workers: int, stop_file: Path,
         on_record: Any) -> bool:
    """Run ``specs`` on the request's engine; True when Ctrl-C stopped it."""
    from nncli import engines

    if not specs:
        return False
    try:
        if request.engine == "dask":
            engines.dask_engine(specs, str(request.address), stop_file, on_record)
        else:
            engines.local_engine(specs, workers, on_record)
    except KeyboardInterrupt:
        return True
    return False
