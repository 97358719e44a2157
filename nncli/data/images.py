"""Image folders: decoding (on all cores) and an on-disk cache of the pixels (the listing
lives in :mod:`nncli.data.folders`, the cache itself in :mod:`nncli.data.imagecache`).

An image folder holds one subfolder per class; the class name is the subfolder name.
Images may sit in nested folders inside a class folder (as with torchvision's
``ImageFolder``). Files directly inside the folder, and hidden files and folders (names
starting with ``.``), are ignored. Files whose extension Pillow does not register as an
image format are skipped with one warning.

Every image becomes one row of ``X``, flattened row-major over (height, width, channel),
so ``X: (N, H*W*C)`` uint8 and ``X[i].reshape(H, W, C)`` is the image. Rows are ordered by
class name, then by file path within the class.

Decoding (:func:`load_image`), the same for training and prediction:

- ``Image.open``; the EXIF orientation is applied, so images are used the way viewers
  show them.
- Transparency (an alpha channel, or a palette or grey image with a transparent colour)
  is composited over black, i.e. colours are premultiplied by alpha, so invisible pixels
  never leak whatever colour happens to be stored under them.
- 16-bit greyscale (``I;16``) is scaled to 8 bits (``round(v * 255 / 65535)``) rather than
  clipped; every other mode goes through Pillow's ``convert`` to ``L`` (ITU-R 601-2 luma)
  or ``RGB``.
- With ``size = (width, height)`` the image is resized with ``Image.BILINEAR``, which in
  Pillow is antialiased when shrinking (the filter widens with the scale factor), as the
  default resize of torchvision and Keras; ``reducing_gap=3.0`` first shrinks big images
  by an integer factor (for JPEG in the DCT domain, via ``draft``) down to at least 3x the
  target, which is much faster and visually the same. The aspect ratio is not kept.

Speed: :func:`decode_images` decodes the first image in-process (for the shape and a
time estimate), then the rest in chunks on all available cores, each chunk returning its
rows to be copied into one preallocated (N, D) uint8 array. Measured with
``bench/image_decode.py`` (2-core VM), processes beat threads on small images (28x28 PNG:
serial 17k/s, threads 7-17k/s, processes 24-30k/s): Pillow releases the GIL while
decompressing, but for a small file most of the time is Python in ``Image.open``, which
threads serialize on. Threads win when an image is slow to decode (the GIL is then
mostly free) or its row is large (256x256 RGB JPEG: threads 3.2k/s, processes 1.5k/s,
serial 2.4k/s, as rows must be pickled between processes). So the pool is processes,
except threads for images over ``THREAD_MIN_SECONDS`` or ``THREAD_MIN_BYTES``; and no
pool at all when the whole folder would take under ``PARALLEL_MIN_SECONDS``. If a process
pool cannot start, threads are used.

Cache: ``<cache_dir>/images-<key>.npy`` (the pixels) and ``.json`` (the index), with
``key`` a hash of the folder's absolute path, the image settings (size, mode), the
Pillow version and :data:`CACHE_FORMAT`; one entry per folder and settings, replaced
when the folder changes. The index holds a fingerprint of the listing (every class and
file: relative path, size and mtime_ns), the classes and their counts (the labels), the
input shape and the array's shape, dtype and CRC-32. Any mismatch, or a file that fails
to parse, means the entry is rebuilt: never trusted, never an error. Both files are
written to a temporary name and renamed into place. The array is read into memory
(``allow_pickle=False``), not memory-mapped: the checksum reads every byte anyway, and a
map would crash the process (SIGBUS) if the file were truncated while in use. A cache
hit costs one ``stat`` per file (the listing) plus reading the array, and does not
import ``PIL.Image``. The default cache dir is ``$NNCLI_CACHE_DIR``, else
``$XDG_CACHE_HOME/nncli/images``, else ``~/.cache/nncli/images``; when it cannot be
written, nothing is cached.
"""

from __future__ import annotations

import functools
import logging
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nncli.data.folders import Listing, list_folder
from nncli.data.imagecache import (
    CACHE_FORMAT,
    CacheEntry,
    cache_stem,
    checksum,
    default_cache_dir,
    load_cache,
    pillow_version,
    save_cache,
)
from nncli.data.types import RawData
from nncli.errors import NncliError

if TYPE_CHECKING:
    from PIL import Image as PILImage

log = logging.getLogger("nncli")

MODES = {"L": 1, "RGB": 3}  # mode -> channels
REDUCING_GAP = 3.0
PARALLEL_MIN_SECONDS = 0.25  # estimated serial decode time below which a pool isn't worth it
SPAWN_MIN_SECONDS = 1.5  # the same for processes that are spawned rather than forked
THREAD_MIN_SECONDS = 0.002  # images slower than this to decode go to threads ...
THREAD_MIN_BYTES = 1 << 16  # ... as do images with more bytes than this; else processes
# The formats nncli decodes (Pillow format names), passed to Image.open(formats=...): plain
# raster formats Pillow decodes itself. Never EPS/PDF (Pillow hands them to Ghostscript) or
# the rarer plugins; a file with another extension is skipped as a non-image.
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "TGA")
PARENT_POLL_SECONDS = 0.5  # how often a decode worker checks that its parent still lives
MAX_CHUNK = 1024  # images per task; large chunks amortize the per-task overhead
CHUNK_BYTES = 32 << 20  # ... but a task's result stays below this many bytes

ProgressFn = Callable[[int, int], None]  # (images done, total)


# ---------------------------------------------------------------- decoding one image


# EXIF orientation tag value -> the Image.Transpose that shows the image upright.
_ORIENTATION = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
                6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}


def _composite_over_black(im: PILImage.Image) -> PILImage.Image:
    """An image with transparency as opaque RGB, composited over black."""
    from PIL import Image

    rgba = im.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_mode(im: PILImage.Image, mode: str) -> PILImage.Image:
    """``im`` converted to ``mode`` (L or RGB): alpha over black, 16-bit scaled to 8."""
    from PIL import Image

    if im.mode.startswith("I;16"):
        wide = np.asarray(im).astype(np.uint32)
        im = Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8))
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        im = _composite_over_black(im)
    return im if im.mode == mode else im.convert(mode)


@functools.lru_cache(maxsize=1)
def image_extensions() -> frozenset[str]:
    """File extensions (lower case, with the dot) of the :data:`FORMATS` this Pillow has
    (Pillow's plugins do not change while nncli runs: computed once)."""
    from PIL import Image

    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items()
                     if fmt in FORMATS)


# Pillow's own DecompressionBombWarning, which nncli replaces by one `warning:` line.
_BOMB_WARNING = r"Image size \(\d+ pixels\) exceeds limit of \d+ pixels"


def ignore_pillow_bomb_warnings() -> None:
    """Silence Pillow's raw DecompressionBombWarning (that message only) in this process:
    nncli reports large images itself (one logged warning for all of them), and images
    over twice Pillow's limit still fail with its DecompressionBombError. Called before
    each decode (re-adding a filter replaces it) and in each decode worker."""
    import warnings

    warnings.filterwarnings("ignore", message=_BOMB_WARNING, module=r"PIL\.")


def _decode(path: str | Path, size: tuple[int, int] | None, mode: str,
            large: list[tuple[str, int]] | None = None) -> np.ndarray:
    """Decode one image to (H, W, C) uint8. Raises Pillow's errors (OSError, ...).

    Only :data:`FORMATS` are recognized. An image over Pillow's ``MAX_IMAGE_PIXELS``
    (a possible decompression bomb, decoded all the same) is appended to ``large`` as
    (path, pixels)."""
    from PIL import Image

    with Image.open(path, formats=FORMATS) as im:
        limit = Image.MAX_IMAGE_PIXELS
        if large is not None and limit and im.size[0] * im.size[1] > limit:
            large.append((str(path), im.size[0] * im.size[1]))
        if size is not None or mode == "L":
            # JPEG only: decode the luma plane alone for L, and scale by 1/2, 1/4 or 1/8 in
            # the DCT while both sides stay >= REDUCING_GAP x the target (EXIF may rotate).
            side = math.ceil(max(size) * REDUCING_GAP) if size is not None else None
            im.draft("L" if mode == "L" else None, (side, side) if side else None)
        try:
            orientation = im.getexif().get(0x0112, 1)
        except Exception:  # malformed EXIF in an otherwise fine image: ignore it
            orientation = 1
        im.load()  # decode now, while the file is open (raises on truncated data)
        out = _to_mode(im, mode)
    if isinstance(orientation, int) and orientation in _ORIENTATION:
        out = out.transpose(Image.Transpose[_ORIENTATION[orientation]])
    if size is not None and out.size != size:
        out = out.resize(size, Image.Resampling.BILINEAR, reducing_gap=REDUCING_GAP)
    pixels = np.asarray(out, dtype=np.uint8)
    return pixels.reshape(pixels.shape[0], pixels.shape[1], MODES[mode])


def _check_settings(size: Sequence[int] | None, mode: str) -> tuple[int, int] | None:
    if mode not in MODES:
        raise NncliError(f"unknown image mode '{mode}' (known: {', '.join(MODES)})")
    if size is None:
        return None
    width, height = (int(v) for v in size)
    if width < 1 or height < 1:
        raise NncliError(f"image size must be positive, got {width}x{height}")
    return (width, height)


def load_image(path: str | Path, size: Sequence[int] | None, mode: str) -> np.ndarray:
    """One image as pixels: (H, W, C) uint8, C = 1 for ``L`` and 3 for ``RGB``.

    Decoded exactly as for training (see the module docstring); ``size`` is
    (width, height) or None for the image's own size. Errors name the file.
    """
    from nncli.files import refuse_special_file

    refuse_special_file(path, "an image")
    large: list[tuple[str, int]] = []
    pixels = _load_image(path, _check_settings(size, mode), mode, large)
    _warn_large([], large)
    return pixels


def _load_image(path: str | Path, size: tuple[int, int] | None, mode: str,
                large: list[tuple[str, int]]) -> np.ndarray:
    """:func:`load_image` with checked settings, collecting a too-large image in ``large``."""
    ignore_pillow_bomb_warnings()
    try:
        return _decode(path, size, mode, large)
    except FileNotFoundError:
        raise NncliError(f"{path}: no such file") from None
    except Exception as exc:  # Pillow raises many types for bad data
        raise NncliError(f"{path}: cannot decode image ({_reason(exc, path)})") from None


def _reason(exc: BaseException, path: str | Path | None = None) -> str:
    """``Type: message`` of an exception, without a repeat of ``path`` (already named)."""
    text = str(exc)
    if path is not None:
        text = text.replace(repr(str(path)), "").replace(str(path), "")
    text = text.strip(" :")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---------------------------------------------------------------- decoding many images


@dataclass
class _Failure:
    index: int
    message: str


_Chunk = tuple[np.ndarray, _Failure | None, list[tuple[str, int]]]


def _decode_chunk(paths: Sequence[str], start: int, size: tuple[int, int] | None, mode: str,
                  reference: tuple[str, tuple[int, ...]]) -> _Chunk:
    """Decode ``paths`` (rows ``start:start+len(paths)``) into rows (len(paths), D) uint8.

    Stops at the first bad file and returns it as a :class:`_Failure` with the rows so far;
    ``reference`` (path, (H, W, C)) is the shape every image must have. Also returns the
    (path, pixels) of images over Pillow's decompression-bomb limit.
    """
    ref_path, ref_shape = reference
    rows = np.empty((len(paths), math.prod(ref_shape)), dtype=np.uint8)
    large: list[tuple[str, int]] = []
    for offset, path in enumerate(paths):
        try:
            pixels = _decode(path, size, mode, large)
        except Exception as exc:  # Pillow raises many types for bad data
            failure = _Failure(start + offset,
                               f"{path}: cannot decode image ({_reason(exc, path)})")
            return rows[:offset], failure, large
        if pixels.shape != ref_shape:
            failure = _Failure(start + offset,
                               f"{ref_path} is {ref_shape[1]}x{ref_shape[0]} but {path} is "
                               f"{pixels.shape[1]}x{pixels.shape[0]} — set data.image.size: "
                               f"[width, height] to resize all images to one size")
            return rows[:offset], failure, large
        rows[offset] = pixels.reshape(-1)
    return rows, None, large


# ---------------------------------------------------------------- worker processes


def _start_method() -> str:
    """How a process pool here would start its workers (fork, spawn, forkserver), read
    without fixing it for the rest of the process."""
    return (multiprocessing.get_start_method(allow_none=True)
            or multiprocessing.get_all_start_methods()[0])


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else (pid reused): not our parent
        return False
    return True


def _set_parent_death_signal() -> None:
    """Linux: have the kernel SIGKILL this process when its parent dies
    (``prctl(PR_SET_PDEATHSIG, SIGKILL)``); elsewhere, or if libc will not, nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _watch_parent(parent: int, ppid: int) -> None:
    """Worker thread, the portable fallback: exit at once when the parent is gone (our
    parent pid changes when we are re-parented, or ``parent`` no longer exists)."""
    while True:
        time.sleep(PARENT_POLL_SECONDS)
        if os.getppid() != ppid or not _alive(parent):
            os._exit(1)


def _worker_init(parent: int, direct: bool) -> None:
    """Decode worker initializer: die with the parent, leave Ctrl-C to it.

    A worker whose parent is SIGKILLed (or OOM-killed) would otherwise wait on its task
    pipe forever. ``parent`` is the pid of the process that made the pool; ``direct``:
    the worker is its child (fork, spawn), not a forkserver's (which exits with the
    parent). Ctrl-C is ignored: the parent handles it and stops the pool.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ignore_pillow_bomb_warnings()
    _set_parent_death_signal()
    ppid = os.getppid()
    # The parent may have died before prctl took effect: then it never will fire.
    if (direct and ppid != parent) or not _alive(parent):
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent, ppid), daemon=True,
                     name="nncli-watch-parent").start()


def available_cpus() -> int:
    """Cores this process may run on (affinity-aware where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _decode_into(X: np.ndarray, paths: Sequence[str], size: tuple[int, int] | None, mode: str,
                 reference: tuple[str, tuple[int, ...]], workers: int, pool: str,
                 progress: ProgressFn | None,
                 large: list[tuple[str, int]]) -> _Failure | None:
    """Fill X (N, D) from ``paths`` in chunks, in-process (workers=1) or on a pool of
    ``pool`` ("process" or "thread"); returns the first failure (by file order) or None.
    Images over Pillow's decompression-bomb limit are added to ``large``."""
    n = len(paths)
    chunk = max(1, min(MAX_CHUNK, CHUNK_BYTES // max(1, X.shape[1]), -(-n // (workers * 4))))
    if workers == 1:
        for lo in range(0, n, chunk):
            rows, failure, big = _decode_chunk(paths[lo:lo + chunk], lo, size, mode,
                                               reference)
            large.extend(big)
            X[lo:lo + len(rows)] = rows
            if failure is not None:
                return failure
            if progress is not None:
                progress(lo + len(rows), n)
        return None
    executor: Executor
    if pool == "process":
        direct = _start_method() != "forkserver"
        executor = ProcessPoolExecutor(workers, initializer=_worker_init,
                                       initargs=(os.getpid(), direct))
    else:
        executor = ThreadPoolExecutor(workers, thread_name_prefix="nncli-decode")
    try:
        return _decode_on(executor, X, paths, chunk, size, mode, reference, progress, large)
    finally:
        # On Ctrl-C/SIGTERM too: the chunks not started are cancelled, the running ones
        # (a fraction of a second each) finish, and the workers exit. Killing them instead
        # is unsafe: one killed while sending its rows leaves the pool's reader waiting
        # forever for the rest of the message.
        executor.shutdown(wait=True, cancel_futures=True)


def _decode_on(executor: Executor, X: np.ndarray, paths: Sequence[str], chunk: int,
               size: tuple[int, int] | None, mode: str, reference: tuple[str, tuple[int, ...]],
               progress: ProgressFn | None, large: list[tuple[str, int]]) -> _Failure | None:
    """:func:`_decode_into` on a pool: chunks of ``chunk`` images submitted to
    ``executor``, their rows copied into X (N, D) as they come back; the first failure by
    file order, or None."""
    from nncli.testhooks import pause_here

    n = len(paths)
    first: _Failure | None = None  # the earliest bad file (by index) seen so far
    futures = {executor.submit(_decode_chunk, paths[lo:lo + chunk], lo, size, mode,
                               reference): lo for lo in range(0, n, chunk)}
    pending, done_count = set(futures), 0
    pause_here("decode")  # tests send signals here, the pool's workers running
    while pending:
        done, pending = wait_futures(pending, return_when=FIRST_COMPLETED)
        for future in done:
            rows, failure, big = future.result()  # re-raises a crashed worker's error
            large.extend(big)
            lo = futures[future]
            X[lo:lo + len(rows)] = rows
            done_count += len(rows)
            if failure is not None and (first is None or failure.index < first.index):
                first = failure
        if first is not None:
            # Only a chunk starting before the earliest failure can hold an earlier one:
            # keep waiting for those (whatever order the pool runs chunks in) and drop
            # the rest from `pending` (cancelled if not started, else left unread), so
            # no cancelled future is ever waited on or asked for its result.
            later = {f for f in pending if futures[f] > first.index}
            for future in later:
                future.cancel()
            pending -= later
        elif progress is not None:
            progress(done_count, n)
    return first


def decode_images(paths: Sequence[str], size: Sequence[int] | None, mode: str, *,
                  workers: int | None = None, pool: str | None = None,
                  progress: ProgressFn | None = None) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Decode images into one array: X (N, H*W*C) uint8 and the image shape (H, W, C).

    All images must come out the same shape (give ``size`` to resize them); a file that
    fails to decode, or the first whose shape differs from the first image's, is a
    :class:`NncliError` naming the file(s). ``workers`` defaults to the available cores,
    or 1 (in-process) when decoding everything would take less than
    ``PARALLEL_MIN_SECONDS`` judging by the first image. ``pool`` is ``process`` (falls
    back to threads if processes cannot start), ``thread`` or None: threads for images
    that are slow to decode or large (the GIL is then mostly released, and large rows
    are costly to send between processes), else processes. With ``pool`` None, the
    environment variable ``NNCLI_DECODE_POOL=process`` (or ``thread``) forces that pool on
    all cores (``workers`` still limits it).
    """
    size = _check_settings(size, mode)
    if pool not in (None, "process", "thread"):
        raise ValueError(f"pool must be 'process', 'thread' or None, got {pool!r}")
    if not paths:
        raise ValueError("no images to decode")
    started = time.perf_counter()
    first_large: list[tuple[str, int]] = []
    first = _load_image(paths[0], size, mode, first_large)
    first_pixels = first_large[0][1] if first_large else 0
    seconds = time.perf_counter() - started
    shape = (first.shape[0], first.shape[1], first.shape[2])
    n = len(paths)
    forced = os.environ.get("NNCLI_DECODE_POOL", "").strip().lower()
    if pool is None and forced in ("process", "thread"):
        pool = forced  # the override: this pool, on all cores, whatever the estimate
        workers = available_cpus() if workers is None else workers
    if pool is None:
        slow = seconds > THREAD_MIN_SECONDS or first.size > THREAD_MIN_BYTES
        pool = "thread" if slow else "process"
    if workers is None:
        # Worker processes that are not forked import NumPy and Pillow first (~0.3 s).
        forked = _start_method() == "fork"
        least = PARALLEL_MIN_SECONDS if pool == "thread" or forked else SPAWN_MIN_SECONDS
        workers = available_cpus() if n * seconds >= least else 1
    workers = max(1, min(workers, n))
    X = np.empty((n, first.size), dtype=np.uint8)
    reference = (paths[0], shape)
    large: list[tuple[str, int]] = []
    try:
        failure = _decode_into(X, paths, size, mode, reference, workers, pool, progress, large)
    except (OSError, ImportError, NotImplementedError, BrokenProcessPool) as exc:
        if pool != "process" or workers == 1:
            raise
        log.debug("process pool failed (%s); decoding with threads", _reason(exc))
        large.clear()
        failure = _decode_into(X, paths, size, mode, reference, workers, "thread", progress,
                               large)
    if failure is not None:
        raise NncliError(failure.message)
    _warn_large([(str(paths[0]), first_pixels)] if first_pixels else [], large)
    return X, shape


def _warn_large(first: list[tuple[str, int]], large: list[tuple[str, int]]) -> None:
    """One warning for all images over Pillow's decompression-bomb limit (decoded anyway;
    over twice the limit Pillow refuses, and the file is an error)."""
    from PIL import Image

    found = sorted(set(first + large))
    if found:
        path, pixels = max(found, key=lambda item: item[1])
        log.warning("%d image(s) exceed Pillow's decompression-bomb limit of %s pixels, "
                    "e.g. %s with %s pixels; decoded anyway (over twice the limit is an "
                    "error)", len(found), f"{Image.MAX_IMAGE_PIXELS:,}", path, f"{pixels:,}")


# ---------------------------------------------------------------- the reader


def _image_files(path: Path, listing: Listing) -> tuple[list[list[str]], int, str | None]:
    """Per class, the image files (relative paths); plus the count and an example of the
    files skipped for a non-image extension. Errors name an empty folder."""
    extensions = image_extensions()
    if not listing.classes:
        if listing.loose:
            raise NncliError(f"{path}: no class subfolders (found {len(listing.loose)} files "
                             f"directly in the folder; put each class's images in a subfolder "
                             f"named after the class)")
        raise NncliError(f"{path}: empty folder (expected one subfolder of images per class)")
    per_class, skipped, example = [], 0, None
    for name, entries in zip(listing.classes, listing.files):
        images = []
        for rel, _, _ in entries:
            if os.path.splitext(rel)[1].lower() in extensions:
                images.append(rel)
            else:
                skipped += 1
                example = example or rel
        if not images:
            what = f"only {len(entries)} non-image file(s)" if entries else "no files"
            raise NncliError(f"{path / name}: class folder has no images ({what})")
        per_class.append(images)
    return per_class, skipped, example


def _warn_skipped(path: Path, skipped: int, example: str | None) -> None:
    if skipped:
        log.warning("%s: skipped %d file(s) without an image extension, e.g. %s", path, skipped,
                    path / example if example else "?")


def read_image_folder(path: Path, size: tuple[int, int] | None, mode: str,
                      cache_dir: Path | None = None, *, workers: int | None = None,
                      progress: ProgressFn | None = None) -> RawData:
    """Read an image folder (one subfolder per class) into a :class:`~nncli.data.types.RawData`.

    Returns ``X: (N, H*W*C)`` uint8, rows flattened row-major over (height, width,
    channel); ``labels: (N,)`` class names; ``input_shape = (H, W, C)`` with C = 1 for
    ``mode`` ``L`` and 3 for ``RGB``. ``size`` is (width, height) to resize to (bilinear,
    antialiased, ``reducing_gap=3``; see the module docstring); without it all images must
    have the same size. Rows are sorted by class name, then file path.

    The decoded pixels are cached in ``cache_dir`` (default :func:`default_cache_dir`),
    keyed on the folder, the image settings and every file's path, size and mtime.
    ``workers`` limits decoding parallelism (default: all cores); ``progress(done,
    total)`` is called as images are decoded. Raises :class:`NncliError` naming the
    folder or file on an empty folder, an undecodable image or mixed sizes.
    """
    size = _check_settings(size, mode)
    path = Path(path)
    listing = list_folder(path)
    fingerprint = listing.fingerprint()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    stem = cache_dir / cache_stem(Path(os.path.abspath(path)), size, mode)
    entry = load_cache(stem, fingerprint)
    if entry is not None:
        log.debug("%s: %d images from the cache %s", path, entry.X.shape[0], stem)
        _warn_skipped(path, entry.skipped, entry.skipped_example)
        return _raw_data(path, entry)

    per_class, skipped, example = _image_files(path, listing)
    _warn_skipped(path, skipped, example)
    paths = [os.path.join(path, rel) for images in per_class for rel in images]
    started = time.perf_counter()
    X, shape = decode_images(paths, size, mode, workers=workers, progress=progress)
    seconds = time.perf_counter() - started
    log.info("%s: decoded %d images in %.2fs (%.0f/s)", path, len(paths), seconds,
             len(paths) / max(seconds, 1e-9))
    entry = CacheEntry(X, listing.classes, [len(images) for images in per_class], shape,
                   skipped, example)
    save_cache(stem, entry, _index(entry, path, size, mode, fingerprint))
    return _raw_data(path, entry)


def _index(entry: CacheEntry, path: Path, size: tuple[int, int] | None, mode: str,
           fingerprint: str) -> dict[str, object]:
    """The JSON index stored next to a cached array."""
    return {
        "format": CACHE_FORMAT, "source": os.path.abspath(path),
        "size": list(size) if size else None, "mode": mode, "pillow": pillow_version(),
        "fingerprint": fingerprint, "classes": entry.classes, "counts": entry.counts,
        "input_shape": list(entry.input_shape), "shape": list(entry.X.shape),
        "dtype": "uint8", "crc32": checksum(entry.X), "skipped": entry.skipped,
        "skipped_example": entry.skipped_example,
    }


def _raw_data(path: Path, entry: CacheEntry) -> RawData:
    labels = np.repeat(np.array(entry.classes, dtype=str), entry.counts)
    return RawData(X=entry.X, labels=labels, input_shape=tuple(entry.input_shape),
                   source=str(path), kind="images")
