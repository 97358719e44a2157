"""Listing an image folder: its class subfolders and their files (names and ``stat`` results
only; no file is opened), for the reader, the image cache's fingerprint, ``nncli init`` and
predict's folders.

Hidden files and folders (names starting with ``.``) are ignored. Files may sit in nested
folders inside a class folder; a symlink to a folder is followed only when it leads outside
the image folder (see :func:`_walk_class`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from nncli.errors import NncliError

log = logging.getLogger("nncli")


@dataclass
class Listing:
    """The files of an image folder, sorted: ``files[k]`` are class ``classes[k]``'s
    ``(relative path, size, mtime_ns)``; ``loose`` are files directly in the folder."""

    classes: list[str]
    files: list[list[tuple[str, int, int]]]
    loose: list[str] = field(default_factory=list)  # files directly in the folder

    def fingerprint(self) -> str:
        """A hash of every class name and file (relative path, size, mtime_ns)."""
        lines = []
        for name, entries in zip(self.classes, self.files):
            lines.append(f"{name}/")
            lines.extend(f"{rel}\0{nbytes}\0{mtime}" for rel, nbytes, mtime in entries)
        return hashlib.blake2b("\n".join(lines).encode("utf-8", "surrogateescape"),
                               digest_size=16).hexdigest()


def _inside(path: str, folder: str) -> bool:
    """Whether the real path ``path`` is ``folder`` or under it (both real paths)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _walk_class(root: str, rel_dir: str, root_real: str, seen: set[tuple[int, int]],
                out: list[tuple[str, int, int]], links_skipped: list[str]) -> None:
    """Append (relative path, size, mtime_ns) of every non-hidden file under rel_dir.

    Iterative (any depth, no recursion limit). A symlink to a folder is followed only when
    it leads outside the image folder ``root_real`` (its real path): one leading back
    inside — to an ancestor, to another class, to a folder of this class — would count
    images twice or under the wrong class; it is appended to ``links_skipped``. Each real
    folder is listed once (``seen`` holds (st_dev, st_ino)), so links cannot loop.
    """
    stack = [rel_dir]
    while stack:
        current = stack.pop()
        with os.scandir(os.path.join(root, current)) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith("."):
                    continue
                try:
                    st = entry.stat()
                except OSError:  # a dangling symlink or a file that just vanished
                    continue
                rel = f"{current}/{name}"
                if entry.is_dir():
                    if entry.is_symlink() and _inside(os.path.realpath(entry.path), root_real):
                        links_skipped.append(rel)
                    elif (st.st_dev, st.st_ino) not in seen:
                        seen.add((st.st_dev, st.st_ino))
                        stack.append(rel)
                elif entry.is_file():
                    out.append((rel, st.st_size, st.st_mtime_ns))


def list_folder(path: Path) -> Listing:
    """Scan an image folder: class subfolders (sorted) and their files (sorted by path).

    Only names and ``stat`` results; no file is opened. Errors name the folder.
    """
    root = os.fspath(path)
    classes, loose = [], []
    try:
        with os.scandir(root) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    classes.append(entry.name)
                elif entry.is_file():
                    loose.append(entry.name)
        classes.sort()
        files = []
        root_real = os.path.realpath(root)
        links_skipped: list[str] = []
        for name in classes:
            found: list[tuple[str, int, int]] = []
            st = os.stat(os.path.join(root, name))
            _walk_class(root, name, root_real, {(st.st_dev, st.st_ino)}, found, links_skipped)
            found.sort()
            files.append(found)
    except NotADirectoryError:
        raise NncliError(f"{path}: not a folder") from None
    except OSError as exc:
        where = exc.filename or path
        raise NncliError(f"{where}: cannot read folder ({exc.strerror or exc})") from None
    if links_skipped:
        log.warning("%s: skipped %d symlinked folder(s) leading back inside the image folder "
                    "(their images would count twice), e.g. %s", path, len(links_skipped),
                    os.path.join(path, sorted(links_skipped)[0]))
    return Listing(classes, files, sorted(loose))
