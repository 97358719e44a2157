"""The on-disk cache of decoded image folders (see :mod:`nncli.data.images` for the design).

``<cache_dir>/images-<key>.npy`` holds the pixels and ``.json`` the index (listing
fingerprint, classes and counts, input shape, array shape/dtype/CRC-32). Anything that
does not check out means: rebuild. Writes go to a temporary name and are renamed in place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nncli.files import atomic_write_bytes

log = logging.getLogger("nncli")

CACHE_FORMAT = 2  # 2: only nncli.data.images.FORMATS are images


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def default_cache_dir() -> Path:
    """``$NNCLI_CACHE_DIR``, else ``$XDG_CACHE_HOME/nncli/images``, else
    ``~/.cache/nncli/images``."""
    explicit = os.environ.get("NNCLI_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "nncli" / "images"


def pillow_version() -> str:
    """Pillow's version: part of the key, as decoding may change between versions."""
    import PIL  # the package only: cheap, unlike PIL.Image

    return str(PIL.__version__)


def cache_stem(folder: Path, size: tuple[int, int] | None, mode: str) -> str:
    """File stem of the cache entry for a folder read with these image settings."""
    key = json.dumps([CACHE_FORMAT, str(folder), list(size) if size else None, mode,
                      pillow_version()])
    return "images-" + hashlib.blake2b(key.encode("utf-8", "surrogateescape"),
                                       digest_size=16).hexdigest()


@dataclass
class CacheEntry:
    """A decoded folder: X (N, H*W*C) uint8 in class order, per-class counts, and the
    count and an example of the files skipped as non-images."""

    X: np.ndarray
    classes: list[str]
    counts: list[int]
    input_shape: tuple[int, int, int]
    skipped: int
    skipped_example: str | None


def checksum(X: np.ndarray) -> str:
    """CRC-32 of the array's bytes, as 8 hex digits."""
    return f"{zlib.crc32(np.ascontiguousarray(X).data) & 0xFFFFFFFF:08x}"


def load_cache(stem: Path, fingerprint: str) -> CacheEntry | None:
    """The cached entry for ``stem`` if it matches ``fingerprint`` and checks out; else None."""
    try:
        index = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.debug("image cache index %s unreadable (%s); rebuilding", stem, _why(exc))
        return None
    try:
        if index.get("format") != CACHE_FORMAT or index.get("fingerprint") != fingerprint:
            return None
        shape = tuple(int(v) for v in index["shape"])
        input_shape = tuple(int(v) for v in index["input_shape"])
        classes = [str(c) for c in index["classes"]]
        counts = [int(c) for c in index["counts"]]
        if (len(shape) != 2 or len(input_shape) != 3 or len(classes) != len(counts)
                or sum(counts) != shape[0] or math.prod(input_shape) != shape[1]
                or index["dtype"] != "uint8"):
            raise ValueError("inconsistent index")
        X = np.load(stem.with_suffix(".npy"), allow_pickle=False)
        if X.shape != shape or X.dtype != np.uint8 or checksum(X) != index["crc32"]:
            raise ValueError("cached array does not match its index")
        return CacheEntry(X, classes, counts, input_shape,  # type: ignore[arg-type]
                      int(index.get("skipped", 0)), index.get("skipped_example"))
    except Exception as exc:  # anything wrong with the cache means: rebuild it
        log.debug("image cache %s damaged (%s); rebuilding", stem, _why(exc))
        return None


def save_cache(stem: Path, entry: CacheEntry, index: dict[str, object]) -> None:
    """Store ``entry`` as ``stem.npy`` + ``stem.json``; on any OSError just don't cache."""
    try:
        stem.parent.mkdir(parents=True, exist_ok=True)
        _clean_stale(stem.parent)
        # A cache needs no fsync: a lost or torn entry fails its checks and is rebuilt.
        atomic_write_bytes(stem.with_suffix(".npy"),
                           lambda f: np.lib.format.write_array(f, entry.X, allow_pickle=False),
                           durable=False)
        atomic_write_bytes(stem.with_suffix(".json"),
                           lambda f: f.write(json.dumps(index).encode()), durable=False)
    except OSError as exc:
        log.debug("image cache %s not written (%s); not caching", stem, _why(exc))


def _clean_stale(cache_dir: Path, max_age: float = 86400.0) -> None:
    """Remove temporary files a killed run left behind (older than ``max_age`` seconds)."""
    now = time.time()
    for leftover in cache_dir.glob(".images-*.tmp"):
        try:
            if now - leftover.stat().st_mtime > max_age:
                leftover.unlink()
        except OSError:
            pass
