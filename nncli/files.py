"""File plumbing with one owner: atomic writes (every writer of nncli uses them) and the
check that a path given by the user is a file a reader can read.

Standard library only: every layer may import this, it imports nothing of nncli but the
error type.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Any

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


def _default_permissions(fd: int) -> None:
    """mkstemp creates files 0600; give ours the mode ``open()`` would: 0666 & ~umask."""
    if not hasattr(os, "fchmod"):
        return
    mask = os.umask(0o022)  # the only way to read the umask is to set it; put it right back
    os.umask(mask)
    try:
        os.fchmod(fd, 0o666 & ~mask)
    except OSError:  # a file system without modes: keep what mkstemp gave
        pass


def atomic_write_bytes(path: Path, write: Any, durable: bool = True) -> None:
    """Call ``write(file_object)`` on a temp file next to ``path``, fsync, then rename it over
    ``path``. On any failure the temp file is removed and ``path`` is untouched.
    ``durable=False`` skips the fsyncs (for caches, which are rebuilt if lost)."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        _default_permissions(fd)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise
    if not durable:
        return
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
