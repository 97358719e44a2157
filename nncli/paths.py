"""Checks on paths given by the user, shared by every reader."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from nncli.errors import NncliError


def refuse_special_file(path: str | Path, what: str) -> None:
    """Raise when ``path`` is a FIFO, socket or device rather than a file or folder: the
    readers of ``what`` (a table, an .npz, a checkpoint, an image) seek, or read to the end,
    and on a pipe without a writer or on /dev/zero they would block or read for ever.
    A missing path passes: each reader reports it in its own words."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        kind = ("a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device")
        raise NncliError(f"{path}: is {kind}, not a file; {what} must be a regular file")
