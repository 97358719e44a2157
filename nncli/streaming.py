"""Reading a line stream in small batches without waiting for the stream to end."""

from __future__ import annotations

import os
import select
from collections.abc import Iterator
from typing import IO

MAX_BATCH = 256


def batched_lines(stream: IO[str], max_batch: int = MAX_BATCH) -> Iterator[list[str]]:
    """Yield lists of lines: as many as are already available (up to ``max_batch``), so a
    consumer answers each line as soon as it arrives yet batches when input is plentiful."""
    try:
        fd = stream.fileno()
        pollable = os.name == "posix"
    except (AttributeError, OSError, ValueError):
        fd, pollable = -1, False
    batch: list[str] = []
    while True:
        line = stream.readline()
        if not line:
            break
        batch.append(line)
        if len(batch) >= max_batch:
            yield batch
            batch = []
            continue
        # Hand over what we have as soon as the writer has nothing more for us right now
        # (a file or a closed pipe always reads as ready, so those fill whole batches).
        if not _readable_now(fd, pollable):
            yield batch
            batch = []
    if batch:
        yield batch


def _readable_now(fd: int, pollable: bool) -> bool:
    if not pollable:
        return False
    try:
        ready, _, _ = select.select([fd], [], [], 0)
    except (OSError, ValueError):
        return False
    return bool(ready)
