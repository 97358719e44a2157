"""The run directory: resolved config, per-epoch metrics, checkpoints, summary.

```
<run>/config.yaml  metrics.csv  metrics.jsonl  summary.json  checkpoints/{last,best}.npz
```
Metric rows are appended and flushed as each epoch ends; config and summary are written
atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

from nncli.checkpoint import atomic_write_bytes as _atomic_write_bytes
from nncli.errors import NncliError

RUN_FILES = ("config.yaml", "metrics.csv", "metrics.jsonl", "summary.json")
CHECKPOINT_FILES = ("last.npz", "best.npz")
METRIC_COLUMNS = ("epoch", "step", "lr", "loss", "data_loss", "reg_loss", "train_acc",
                  "val_loss", "val_acc", "seconds")


def atomic_write_bytes(path: Path, write: Any) -> None:
    """:func:`nncli.checkpoint.atomic_write_bytes`, with a failure (a full disk, a read-only
    file system) reported as an error naming the file; the old file stays as it was."""
    try:
        _atomic_write_bytes(path, write)
    except OSError as exc:
        raise NncliError(f"{path}: cannot write ({exc.strerror or exc}); the previous "
                         f"file, if any, is unchanged") from None


def fresh_run_dir(base: Path) -> Path:
    """``base`` if it does not exist, else the first free ``base-2``, ``base-3``, ..."""
    if not base.exists():
        return base
    n = 2
    while True:
        candidate = base.with_name(f"{base.name}-{n}")
        if not candidate.exists():
            return candidate
        n += 1


def holds_run(path: Path) -> bool:
    """True when ``path`` already holds a run: a ``config.yaml`` or a ``checkpoints/``."""
    return (path / "config.yaml").exists() or (path / "checkpoints").exists()


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
    """Writes the files of one run directory."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"

    def create(self) -> None:
        """Make the folders; an unwritable location is an error naming it."""
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".nncli-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise NncliError(f"{self.path}: cannot write the run directory "
                             f"({exc.strerror or exc})") from None
        self._remove_leftover_temp_files()

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

    def write_config(self, yaml_text: str) -> None:
        atomic_write_bytes(self.path / "config.yaml",
                           lambda h: h.write(yaml_text.encode("utf-8")))

    def write_summary(self, summary: dict[str, Any]) -> None:
        text = _json(summary, indent=2) + "\n"
        atomic_write_bytes(self.path / "summary.json", lambda h: h.write(text.encode("utf-8")))

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
        writer.writerow(METRIC_COLUMNS)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in METRIC_COLUMNS])
        jsonl_text = "".join(_json(r) + "\n" for r in rows)
        atomic_write_bytes(self.path / "metrics.csv",
                           lambda h: h.write(csv_text.getvalue().encode("utf-8")))
        atomic_write_bytes(self.path / "metrics.jsonl",
                           lambda h: h.write(jsonl_text.encode("utf-8")))

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
        line = ",".join(_cell(row.get(c)) for c in METRIC_COLUMNS) + "\n"
        for name, text in (("metrics.csv", line), ("metrics.jsonl", _json(row) + "\n")):
            try:
                with open(self.path / name, "a", encoding="utf-8") as handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as exc:
                raise NncliError(f"{self.path / name}: cannot append the metrics of epoch "
                                 f"{row.get('epoch')} ({exc.strerror or exc})") from None
