"""The run directory: resolved config, per-epoch metrics, checkpoints, summary.

```
<run>/config.yaml  metrics.csv  metrics.jsonl  summary.json  checkpoints/{last,best}.npz
```
Metric rows are appended and flushed as each epoch ends; config and summary are written
atomically. No write follows a symbolic link to a file: atomic writes rename a fresh
``mkstemp`` file over the name (which replaces a link, never its target) and appends open
with ``O_NOFOLLOW``.

A run holds an exclusive ``flock`` on its folder for its whole life (:meth:`RunDir.claim`),
so a second ``train`` into the same folder, or a ``--resume`` while the run still trains, is
refused with the holder's pid; the kernel releases the lock when the process ends, however
it ends. The lock is taken on the folder itself, so it leaves no file behind.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from nncli.errors import NncliError
from nncli.files import atomic_write_bytes as _atomic_write_bytes
from nncli.text import short_repr

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock, runs are not locked
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("nncli")

RUN_FILES = ("config.yaml", "metrics.csv", "metrics.jsonl", "summary.json")
CHECKPOINT_FILES = ("last.npz", "best.npz")
METRIC_COLUMNS = ("epoch", "step", "lr", "loss", "data_loss", "reg_loss", "train_acc",
                  "val_loss", "val_acc", "seconds")
# task: regression reports the RMSE (in the target's units) where a classifier has accuracy
REGRESSION_METRIC_COLUMNS = ("epoch", "step", "lr", "loss", "data_loss", "reg_loss",
                             "train_rmse", "val_loss", "val_rmse", "seconds")
_SCORE_RANGES = {"train_acc": (0.0, 1.0), "val_acc": (0.0, 1.0),
                 "train_rmse": (0.0, math.inf), "val_rmse": (0.0, math.inf)}


def metric_columns(task: str) -> tuple[str, ...]:
    """The metric columns of a run of ``task`` (classification or regression)."""
    return REGRESSION_METRIC_COLUMNS if task == "regression" else METRIC_COLUMNS


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def check_rows(rows: Any, epoch: int, step: int, complete: bool = True,
               columns: tuple[str, ...] = METRIC_COLUMNS) -> list[dict[str, Any]]:
    """Metric rows to restore on resume, checked; raises ValueError naming the row and key.

    ``rows``: a list of dicts holding exactly ``columns`` (:data:`METRIC_COLUMNS`, or
    :data:`REGRESSION_METRIC_COLUMNS` with train_rmse and val_rmse >= 0), epochs 1, 2, ... in
    order; ``complete`` (the rows a checkpoint carries): one per epoch up to ``epoch``,
    the last one's ``step`` equal to ``step``; else (the rows of a log, which may lack the
    last ones) at most that. ``step`` counts never fall; ``lr``, ``loss``, ``data_loss``,
    ``reg_loss`` and ``seconds`` are finite numbers (lr and seconds >= 0); ``train_acc`` is
    in [0, 1]; ``val_loss`` is a number (it may have overflowed) and ``val_acc`` in [0, 1],
    or both are null.
    """
    if not isinstance(rows, list):
        raise ValueError(f"rows: expected a list of metric rows, got {type(rows).__name__}")
    if len(rows) > epoch or (complete and len(rows) != epoch):
        raise ValueError(f"rows: {len(rows)} rows for a checkpoint of epoch {epoch}")
    previous_step = 0
    for i, row in enumerate(rows):
        where = f"rows[{i}]"
        if not isinstance(row, dict) or set(row) != set(columns):
            raise ValueError(f"{where}: expected an object with the keys "
                             f"{', '.join(columns)}")
        if row["epoch"] != i + 1 or type(row["epoch"]) is not int:
            raise ValueError(f"{where}.epoch: expected {i + 1}, got "
                             f"{short_repr(row['epoch'])}")
        if not _is_count(row["step"]) or row["step"] < previous_step:
            raise ValueError(f"{where}.step: expected an integer >= {previous_step}, got "
                             f"{short_repr(row['step'])}")
        previous_step = row["step"]
        train_score, val_score = columns[6], columns[8]
        for key in ("lr", "loss", "data_loss", "reg_loss", "seconds", train_score):
            value = row[key]
            if not (_is_number(value) and math.isfinite(value)):
                raise ValueError(f"{where}.{key}: expected a finite number, got "
                                 f"{short_repr(value)}")
            low, high = _SCORE_RANGES[key] if key == train_score else (
                (0.0, math.inf) if key in ("lr", "seconds") else (-math.inf, math.inf))
            if not low <= value <= high:
                raise ValueError(f"{where}.{key}: {short_repr(value)} is out of range")
        _check_val_pair(row, val_score, where)
    if complete and rows and rows[-1]["step"] != step:
        raise ValueError(f"rows[{len(rows) - 1}].step: {rows[-1]['step']}, but the checkpoint "
                         f"is at step {step}")
    return [dict(row) for row in rows]


def _check_val_pair(row: dict[str, Any], val_score: str, where: str) -> None:
    """val_loss a number and ``val_score`` (val_acc in [0, 1], val_rmse >= 0) one, or both
    null."""
    val_loss, score = row["val_loss"], row[val_score]
    low, high = _SCORE_RANGES[val_score]
    if (val_loss is None) != (score is None):
        raise ValueError(f"{where}: val_loss and {val_score} must both be numbers or null")
    if val_loss is not None and not (_is_number(val_loss) and _is_number(score)
                                     and low <= score <= high):
        span = "in [0, 1]" if high == 1.0 else ">= 0"
        raise ValueError(f"{where}: val_loss must be a number and {val_score} one {span}, "
                         f"got {short_repr(val_loss)} and {short_repr(score)}")


def atomic_write_bytes(path: Path, write: Any) -> None:
    """:func:`nncli.files.atomic_write_bytes`, with a failure (a full disk, a read-only
    file system) reported as an error naming the file; the old file stays as it was."""
    try:
        _atomic_write_bytes(path, write)
    except OSError as exc:
        raise NncliError(f"{path}: cannot write ({exc.strerror or exc}); the previous "
                         f"file, if any, is unchanged") from None


def holds_run(path: Path) -> bool:
    """True when ``path`` already holds a run (a ``config.yaml`` or a ``checkpoints/``) or
    any file a run would write (``metrics.csv``, ...): a new run there would replace it.
    A symbolic link by any of those names counts, even a dangling one."""
    return any(os.path.lexists(path / name) for name in ("checkpoints", *RUN_FILES))


def refuse_existing_run(path: Path) -> NncliError:
    """The error for a new run aimed at ``path``, which holds a run (:func:`holds_run`)."""
    if not (os.path.lexists(path / "config.yaml") or os.path.lexists(path / "checkpoints")):
        found = ", ".join(name for name in RUN_FILES if os.path.lexists(path / name))
        return NncliError(f"{path}: holds {found}, which a run would replace; choose an "
                          f"empty or new folder for --out")
    has_checkpoint = any((path / "checkpoints").glob("*.npz"))
    how = (f"to continue it use --resume {path} without --out" if has_checkpoint else
           "it has no checkpoint yet: delete it to start over")
    return NncliError(f"{path}: already holds a run (config.yaml or checkpoints/); "
                      f"{how}, or choose another --out")


def enclosing_run(path: Path) -> Path | None:
    """The run that ``path`` would sit inside (its parent holds ``config.yaml`` and
    ``checkpoints/``, e.g. ``--out runs/x/checkpoints``), or None."""
    parent = Path(os.path.abspath(path)).parent
    if (parent / "config.yaml").is_file() and (parent / "checkpoints").is_dir():
        return parent
    return None


def _make_dirs(path: Path) -> list[Path]:
    """``mkdir -p path``; returns the folders it created, outermost first (a folder that
    appears meanwhile, made by another process, is not ours). A symlink to a folder counts
    as a folder."""
    missing: list[Path] = []
    folder = Path(path)
    while not folder.is_dir():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    created = []
    for folder in reversed(missing):
        try:
            os.mkdir(folder)
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue
        created.append(folder)
    return created


def lock_holder(info: os.stat_result) -> int | None:
    """The pid holding a ``flock`` on the file ``info`` describes, from ``/proc/locks``
    (Linux), or None. Lines read ``1: FLOCK  ADVISORY  WRITE 1234 fe:00:2170883 0 EOF``
    (device major:minor in hex, then the inode); waiters (``->``) are skipped."""
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    want = (os.major(info.st_dev), os.minor(info.st_dev), info.st_ino)
    by_inode = []
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        try:
            major, minor, inode = fields[5].split(":")
            key = (int(major, 16), int(minor, 16), int(inode))
            pid = int(fields[4])
        except ValueError:
            continue
        if key == want:
            return pid
        if key[2] == info.st_ino:
            by_inode.append(pid)
    # Some file systems (overlayfs) report another device number than stat() does.
    return by_inode[0] if len(set(by_inode)) == 1 else None


def _lock_folder(path: Path) -> int | None:
    """A descriptor of the folder ``path`` holding an exclusive ``flock`` on it; None when
    the folder is gone or was replaced between open and lock (try again). Held by another
    process: an error naming its pid. Where locking is not supported (a file system
    without flock, a system without fcntl), one warning and no lock."""
    if fcntl is None:  # pragma: no cover
        return -1
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise NncliError(f"{path}: cannot open the run directory ({exc.strerror or exc})") \
            from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = lock_holder(os.fstat(fd))
        os.close(fd)
        who = f"another nncli process (pid {pid})" if pid else "another nncli process"
        raise NncliError(f"{path}: the run directory is in use by {who}, a train or --resume "
                         f"still running; wait for it to end or stop it, then try again") \
            from None
    except OSError as exc:
        log.warning("%s: cannot lock the run directory (%s); make sure no other nncli "
                    "process writes to it", path, exc.strerror or exc)
        return fd
    try:
        same = os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        same = False
    if not same:  # removed (an abandoned run) or replaced after we opened it
        os.close(fd)
        return None
    return fd


def run_dir_of_checkpoint(checkpoint: Path) -> Path:
    """``<run>/checkpoints/x.npz`` -> ``<run>``; a run folder is returned as is."""
    if checkpoint.is_dir():
        return checkpoint
    if checkpoint.parent.name == "checkpoints":
        return checkpoint.parent.parent
    return checkpoint.parent


def _json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as None: JSON has no NaN/Infinity (as JSON.stringify)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _json(value: Any, **kw: Any) -> str:
    return json.dumps(_json_safe(value), allow_nan=False, **kw)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


class RunDir:
    """Writes the files of one run directory.

    It remembers the folders it created and the run files it wrote, so that a run that
    ends before its first checkpoint can be undone without a trace (:meth:`abandon`).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self._lock_fd: int | None = None
        self._created: list[Path] = []  # folders this process made, outermost first
        self._wrote: list[Path] = []  # run files this process wrote
        self._fresh = False  # claimed for a new run
        self.columns = METRIC_COLUMNS  # the metric logs' columns (the run's metric_columns)

    def _make(self, path: Path) -> None:
        try:
            self._created += _make_dirs(path)
        except OSError as exc:
            raise NncliError(f"{self.path}: cannot write the run directory "
                             f"({exc.strerror or exc})") from None

    def create(self) -> None:
        """Make the folders (whether the location is writable shows here: an unwritable one
        is an error naming it) and remove temp files a killed run left."""
        self._make(self.path)
        self._make(self.checkpoints)
        self._remove_leftover_temp_files()

    def lock(self) -> None:
        """Take the run's lock on the existing folder (see :func:`_lock_folder`)."""
        for _ in range(10):
            fd = _lock_folder(self.path)
            if fd is not None:
                self._lock_fd = fd
                return
            if not self.path.is_dir():
                return  # no folder, nothing to protect: whoever reads it reports that

    def claim(self, fresh: bool, pick_free: bool = False) -> None:
        """Make the run directory this process's for the whole run: create it (``pick_free``:
        the first of ``path``, ``path-2``, ... that this process creates itself), lock it,
        and, for a ``fresh`` run, check under the lock that it holds no run (another
        process may have started one since the first check); then make ``checkpoints/``."""
        self._fresh = fresh
        base = self.path
        for _ in range(10):
            if self._lock_fd is not None:
                break
            if pick_free:
                self._make(base.parent)
                self.path = self._claim_free_name(base)
                self.checkpoints = self.path / "checkpoints"
            else:
                self._make(self.path)
            # A folder that is locked by another process stays as it is, even if this
            # process created it: the holder may be writing to it already.
            self._lock_fd = _lock_folder(self.path)
        if self._lock_fd is None:
            raise NncliError(f"{self.path}: the run directory keeps disappearing; is "
                             f"another program deleting it?")
        try:
            if fresh and holds_run(self.path):
                raise refuse_existing_run(self.path)
            self._make(self.checkpoints)
        except BaseException:
            self.abandon()
            raise
        self._remove_leftover_temp_files()

    def _claim_free_name(self, base: Path) -> Path:
        """Create the first free folder of ``base``, ``base-2``, ``base-3``, ...: ``mkdir``
        either creates a folder or fails, so two runs never pick the same one."""
        n = 1
        while True:
            candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
            try:
                os.mkdir(candidate)
            except FileExistsError:
                n += 1
                continue
            except OSError as exc:
                raise NncliError(f"{candidate}: cannot write the run directory "
                                 f"({exc.strerror or exc})") from None
            self._created.append(candidate)
            return candidate

    def release(self) -> None:
        """Release the run's lock (the kernel does it too when the process ends)."""
        if self._lock_fd is not None:
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
            self._lock_fd = None

    def abandon_if_new(self) -> None:
        """:meth:`abandon` a new run (:meth:`claim` ``fresh``) that has no checkpoint yet
        (one that has is resumable: it stays); release the lock in any case."""
        if self._fresh and not any(self.checkpoints.glob("*.npz")):
            self.abandon()
        self.release()

    def abandon(self) -> None:
        """Undo a run that ended before its first checkpoint: remove the run files this
        process wrote and the folders it created (those still empty), then release the
        lock. Nothing else is touched: a file this process did not write stays, and so
        does a folder holding one."""
        for path in self._wrote:
            try:
                path.unlink()
            except OSError:
                pass
        for folder in reversed(self._created):
            try:
                folder.rmdir()
            except OSError:
                pass
        self._wrote, self._created = [], []
        self.release()

    def _remove_leftover_temp_files(self) -> None:
        """Delete the temp files of atomic writes that a killed process (SIGKILL, power
        loss) left behind: ``.<name>.<random>.tmp`` next to the run's own files."""
        for folder, names in ((self.path, RUN_FILES), (self.checkpoints, CHECKPOINT_FILES)):
            for name in names:
                for leftover in folder.glob(f".{name}.*.tmp"):
                    try:
                        leftover.unlink()
                    except OSError:
                        pass

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.npz"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.npz"

    def _write(self, name: str, data: bytes) -> None:
        path = self.path / name
        atomic_write_bytes(path, lambda h: h.write(data))
        if path not in self._wrote:
            self._wrote.append(path)

    def write_config(self, yaml_text: str) -> None:
        self._write("config.yaml", yaml_text.encode("utf-8"))

    def write_summary(self, summary: dict[str, Any]) -> None:
        self._write("summary.json", (_json(summary, indent=2) + "\n").encode("utf-8"))

    def finished_epochs(self) -> int | None:
        """The ``epochs`` of ``summary.json`` — written when a run ends — or None when there
        is no readable summary (the run has not ended, or ended by a crash)."""
        try:
            summary = json.loads((self.path / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        epochs = summary.get("epochs") if isinstance(summary, dict) else None
        return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None

    def start_metrics(self, keep_through_epoch: int = 0,
                      rows: list[dict[str, Any]] | None = None) -> None:
        """Rewrite the metric logs (atomically) to hold ``rows``, or else the rows on disk
        with ``epoch <= keep_through_epoch`` (0 starts them afresh)."""
        if rows is None:
            rows = [] if keep_through_epoch == 0 else [
                r for r in self.read_metrics() if int(r["epoch"]) <= keep_through_epoch]
        csv_text = io.StringIO()
        writer = csv.writer(csv_text, lineterminator="\n")
        writer.writerow(self.columns)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in self.columns])
        jsonl_text = "".join(_json(r) + "\n" for r in rows)
        self._write("metrics.csv", csv_text.getvalue().encode("utf-8"))
        self._write("metrics.jsonl", jsonl_text.encode("utf-8"))

    def read_metrics(self) -> list[dict[str, Any]]:
        """Rows of ``metrics.jsonl`` that parse and have an integer epoch (a torn last line
        is dropped)."""
        path = self.path / "metrics.jsonl"
        rows = []
        if not path.exists():
            return rows
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            epoch = row.get("epoch") if isinstance(row, dict) else None
            if isinstance(epoch, int) and not isinstance(epoch, bool):
                rows.append(row)
        return rows

    def append_metrics(self, row: dict[str, Any]) -> None:
        """Append one epoch row to both logs, flushed to disk."""
        line = ",".join(_cell(row.get(c)) for c in self.columns) + "\n"
        for name, text in (("metrics.csv", line), ("metrics.jsonl", _json(row) + "\n")):
            try:
                with open(self.path / name, "a", encoding="utf-8",
                          opener=_open_no_follow) as handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as exc:
                raise NncliError(f"{self.path / name}: cannot append the metrics of epoch "
                                 f"{row.get('epoch')} ({exc.strerror or exc})") from None


def _open_no_follow(path: str, flags: int) -> int:
    """``open()``'s opener for appends: never write through a symbolic link."""
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), 0o666)
