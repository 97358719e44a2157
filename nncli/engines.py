"""Running sweep trials: one ``nncli train`` subprocess per trial, on local worker threads
or on a Dask distributed cluster.

:func:`run_trial` is the one runner both engines use (on a Dask worker it runs there): it
starts ``python -m nncli train`` for the trial — resumed from ``checkpoints/last.npz`` when
the trial has one, else fresh — with ``NNCLI_THREADS`` (BLAS threads, set before NumPy loads
in the child) = cores // trials running at once, its output appended to the trial's
``train.log``; it writes the trial's ``trial.json`` and returns the same record. Stopping is
cooperative: the runner polls ``should_stop`` (a thread event locally, the sweep's ``.stop``
file on Dask workers) and then sends the child one SIGINT, so ``train`` saves ``last.npz``
and exits 130; a trial not yet started when the stop comes returns ``skipped`` at once.
Children run in their own session: a terminal's Ctrl-C reaches the sweep only, which
forwards exactly one SIGINT to each child (two could land inside its checkpoint save).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nncli.errors import NncliError
from nncli.rundir import CHECKPOINT_FILES, RUN_FILES, atomic_write_bytes

POLL_SECONDS = 0.1  # how often a runner looks for a stop request
STOP_WAIT_SECONDS = 120.0  # how long a stopped child may take to save last.npz
EXIT_STATUS = {0: "done", 1: "diverged", 130: "interrupted"}  # train's exit codes (SPEC)
DASK_INSTALL = 'pip install "nncli[dask]"'


def trial_spec(name: str, run_dir: Path, config: Path, sets: list[str], threads: int | None,
               stop_file: Path) -> dict[str, Any]:
    """What a runner needs, as plain data (it travels to Dask workers): absolute paths, the
    client's working directory (relative data paths in the config are relative to it), the
    ``--set`` items and the BLAS threads (None: worker cores // worker threads)."""
    return {"trial": name, "run_dir": str(run_dir.absolute()),
            "config": str(config.absolute()), "set": list(sets), "cwd": os.getcwd(),
            "threads": threads, "stop_file": str(stop_file.absolute())}


def _clear_unstarted(run: Path) -> None:
    """A trial folder without last.npz has nothing to resume: remove the run files a
    killed attempt left (config.yaml, logs, a best.npz) so ``train --out`` starts afresh.
    The folder is the sweep's own; train.log and trial.json stay."""
    for name in RUN_FILES:
        (run / name).unlink(missing_ok=True)
    checkpoints = run / "checkpoints"
    for name in CHECKPOINT_FILES:
        (checkpoints / name).unlink(missing_ok=True)
    if checkpoints.is_dir() and not any(checkpoints.iterdir()):
        checkpoints.rmdir()


def trial_command(spec: dict[str, Any]) -> tuple[list[str], bool]:
    """The ``nncli train`` command line of the trial, and whether it resumes."""
    run = Path(spec["run_dir"])
    last = run / "checkpoints" / "last.npz"
    command = [sys.executable, "-m", "nncli", "train", spec["config"]]
    for item in spec["set"]:
        command += ["--set", item]
    if last.exists():
        return [*command, "--resume", str(last)], True
    _clear_unstarted(run)
    return [*command, "--out", str(run)], False


def _threads_here(spec: dict[str, Any]) -> int:
    """The spec's BLAS threads, or on a Dask worker its cores // its task threads."""
    if spec["threads"]:
        return int(spec["threads"])
    from nncli.sweep import usable_cores

    try:
        return max(1, usable_cores() // _dask_host_threads())
    except Exception:  # noqa: BLE001 - not on a worker (or an older distributed)
        return 1


def _dask_host_threads() -> int:
    """The task threads of all the Dask workers on this worker's machine, which share its
    cores: ``dask worker --nworkers K --nthreads 1`` starts K processes of one thread."""
    from distributed import get_client, get_worker

    worker = get_worker()
    host = worker.address.rsplit(":", 1)[0]
    workers = get_client().scheduler_info(n_workers=-1)["workers"]
    threads = sum(int(info.get("nthreads", 1)) for address, info in workers.items()
                  if address.rsplit(":", 1)[0] == host)
    return max(1, threads or int(worker.state.nthreads))


def _last_error(log: Path) -> str:
    """The last ``Error: ...`` line of the trial's log (without ``Error: ``), or ''."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line for line in lines if line.startswith("Error: ")]
    return errors[-1][len("Error: "):] if errors else ""


def _wait(proc: subprocess.Popen[bytes], should_stop: Callable[[], bool]) -> tuple[int, bool]:
    """Wait for the child; on a stop request send it one SIGINT and keep waiting (SIGKILL
    after STOP_WAIT_SECONDS). Returns its exit code (128 + n for a signal n) and whether
    it was stopped."""
    stopped_at = None
    while True:
        try:
            code = proc.wait(timeout=POLL_SECONDS)
            return (code if code >= 0 else 128 - code), stopped_at is not None
        except subprocess.TimeoutExpired:
            pass
        if stopped_at is None and should_stop():
            proc.send_signal(signal.SIGINT)
            stopped_at = time.monotonic()
        elif stopped_at is not None and time.monotonic() - stopped_at > STOP_WAIT_SECONDS:
            proc.kill()


def _record(spec: dict[str, Any], status: str, **extra: Any) -> dict[str, Any]:
    record = {"trial": spec["trial"], "status": status, "host": socket.gethostname(), **extra}
    run = Path(spec["run_dir"])
    if status != "skipped" and run.is_dir():
        import json

        data = (json.dumps(record, indent=2) + "\n").encode("utf-8")
        atomic_write_bytes(run / "trial.json", lambda h: h.write(data))
    return record


def run_trial(spec: dict[str, Any], should_stop: Callable[[], bool] | None = None
              ) -> dict[str, Any]:
    """Run one trial to its end (see the module docstring); returns its record
    ``{"trial", "status", "exit_code", "error", "seconds", "resumed", "threads", "host"}`` with
    status done | diverged | failed | interrupted | skipped (stopped before it started)."""
    stop_file = Path(spec["stop_file"])
    should_stop = should_stop or stop_file.exists
    folder, run = stop_file.parent, Path(spec["run_dir"])
    if not folder.is_dir():
        return _record(spec, "failed", exit_code=None, seconds=0.0, resumed=False,
                       error=f"{folder}: the sweep folder is not on this worker "
                             f"({socket.gethostname()}); it must be on a file system every "
                             f"Dask worker shares, at the same path")
    if should_stop():
        return _record(spec, "skipped")
    start = time.monotonic()
    run.mkdir(exist_ok=True)
    command, resumed = trial_command(spec)
    threads = _threads_here(spec)
    env = {**os.environ, "NNCLI_THREADS": str(threads)}
    log = run / "train.log"
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(command)}\n".encode())
        out.flush()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=spec["cwd"], env=env,
                                start_new_session=True)
        code, stopped = _wait(proc, should_stop)
    status = EXIT_STATUS.get(code, "interrupted" if stopped else "failed")
    if status == "done" and not (run / "summary.json").exists():
        status = "failed"
    error = _last_error(log) if status != "done" else ""
    return _record(spec, status, exit_code=code, seconds=round(time.monotonic() - start, 3),
                   resumed=resumed, threads=threads, error=error)


def local_engine(specs: list[dict[str, Any]], workers: int,
                 on_record: Callable[[dict[str, Any]], None]) -> None:
    """Run ``specs`` on ``workers`` threads (each waits on its trial's subprocess), calling
    ``on_record`` in this thread as each ends. Ctrl-C (KeyboardInterrupt here): stop every
    runner, wait for their children to save, report them, then raise it again."""
    import threading
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from nncli.interrupts import held

    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nncli-trial")
    futures = [pool.submit(run_trial, spec, stop.is_set) for spec in specs]
    try:
        for future in as_completed(futures):
            on_record(future.result())
    except KeyboardInterrupt:
        with held():  # a second Ctrl-C must not cut the children's checkpoint saves short
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            for future in futures:
                if future.done() and not future.cancelled() and future.exception() is None:
                    on_record(future.result())
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def require_dask() -> Any:
    """The ``distributed`` module, or exit 2 naming the install line."""
    try:
        import distributed
    except ImportError:
        raise NncliError(f"--engine dask needs dask[distributed]: {DASK_INSTALL}") from None
    return distributed


def _connect(address: str) -> Any:
    distributed = require_dask()
    try:
        return distributed.Client(address, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise NncliError(f"--address {address}: cannot reach the Dask scheduler ({exc}); "
                         f"start one with 'dask scheduler'") from None


def dask_engine(specs: list[dict[str, Any]], address: str, stop_file: Path,
                on_record: Callable[[dict[str, Any]], None]) -> None:
    """Run ``specs`` as tasks on the Dask cluster at ``address`` (each task is
    :func:`run_trial` on a worker), calling ``on_record`` here as each ends. Ctrl-C: write
    the sweep's ``.stop`` file, which every runner polls (a running trial stops its child,
    a pending one returns at once), wait for the tasks, then raise it again."""
    import uuid

    from nncli.interrupts import held

    distributed = require_dask()
    client = _connect(address)
    tag = uuid.uuid4().hex[:8]
    try:
        futures = {client.submit(run_trial, spec, key=f"nncli-{spec['trial']}-{tag}",
                                 pure=False): spec for spec in specs}
        try:
            for future in distributed.as_completed(list(futures)):
                on_record(_result(future, futures[future]))
        except KeyboardInterrupt:
            with held():
                stop_file.touch()
                done = distributed.wait(list(futures), timeout=STOP_WAIT_SECONDS)
                for future in done.done:
                    on_record(_result(future, futures[future]))
                client.cancel(list(done.not_done))
            raise
    finally:
        client.close()


def _result(future: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """A task's record; a task that raised (a worker lost, nncli missing there) as a failed
    trial whose error is the exception, recorded in its trial.json from here."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - any worker-side failure is one failed trial
        Path(spec["run_dir"]).mkdir(exist_ok=True)
        return _record(spec, "failed", exit_code=None, seconds=None, resumed=False,
                       error=f"the Dask task failed: {type(exc).__name__}: {exc}")
