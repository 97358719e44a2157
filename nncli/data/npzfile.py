"""Reading the arrays of an ``.npz`` archive without trusting what it declares.

``np.load`` allocates an array as large as a member's ``.npy`` header says before it reads a
byte of the data, so a 466-byte archive that declares a terabyte ends in ``MemoryError``,
and a small zip of compressed zeros (a "zip bomb") inflates to whatever it declares. Before
any array is loaded, :func:`check_members` reads each member's header itself (at most
:data:`MAX_HEADER_BYTES`, NumPy's own safety limit) and refuses, each with one error naming
the file and the member:

- a member that is not a ``.npy`` array, is encrypted, or uses a compression method Python
  cannot read;
- a header over the limit (a plain array's header is about 128 bytes), or one that does not
  parse;
- Python objects (``dtype=object``): loading them would mean unpickling;
- a shape whose size overflows, or data the member does not hold (the header declares more
  bytes than the member's uncompressed size);
- data larger than the memory available to this process.

Loading itself never unpickles (``allow_pickle=False``), and the archive's damage (a bad CRC,
a truncated stream) is an error too, not a traceback.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from nncli.errors import NncliError

MAX_HEADER_BYTES = 10_000  # NumPy's default max_header_size for untrusted files
_MAGIC = b"\x93NUMPY"
_LENGTH_FORMATS = {1: "<H", 2: "<I", 3: "<I"}  # header length field per format version


@dataclass(frozen=True)
class ArrayHeader:
    """What a member's ``.npy`` header declares."""

    member: str  # the member's name in the archive, e.g. ``X.npy``
    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int  # prod(shape) * itemsize, as an exact Python int



def read_npy_header(stream: BinaryIO, where: str, pickled: str | None = None
                    ) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran_order, dtype, nbytes) of the ``.npy`` header ``stream`` starts with
    (magic string included), read without trusting it: a header NumPy cannot parse, Python
    objects (which only pickle could load), a negative shape or more bytes than any array
    can hold is an error naming ``where`` (``pickled``: the start of the object error's
    text, default ``"{where}: holds pickled Python objects (dtype"``)."""
    try:
        with warnings.catch_warnings():  # "created on Python 2": nothing the user can act on
            warnings.simplefilter("ignore")
            version = np.lib.format.read_magic(stream)
            reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = reader(stream, max_header_size=MAX_HEADER_BYTES)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NncliError(f"{where}: damaged .npy header ({reason[:200]})") from None
    if dtype.hasobject:
        start = pickled or f"{where}: holds pickled Python objects (dtype"
        raise NncliError(f"{start} {dtype}); refusing to load it (store plain numeric or "
                         f"string arrays)")
    if any(s < 0 for s in shape):
        raise NncliError(f"{where}: damaged .npy header (negative shape {shape})")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes >= 2 ** 63:  # NumPy's sizes are signed 64-bit
        raise NncliError(f"{where}: declares shape {shape} of {dtype}, {nbytes:,} bytes: more "
                         f"than any array can hold")
    return tuple(int(n) for n in shape), bool(fortran), dtype, int(nbytes)

def _gb(n: int) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.1f} MB"


def member_name(archive: zipfile.ZipFile, key: str) -> str | None:
    """The member ``np.load`` reads for ``key``: ``key`` itself, else ``key.npy``."""
    names = set(archive.namelist())
    for name in (key, f"{key}.npy"):
        if name in names:
            return name
    return None


def read_header(path: Path, archive: zipfile.ZipFile, name: str) -> ArrayHeader:
    """Parse the ``.npy`` header of member ``name`` of ``archive`` (at ``path``), reading at
    most :data:`MAX_HEADER_BYTES` of it; errors name the file and the member."""
    where = f"{path}: member {name}"
    info = archive.getinfo(name)
    if info.flag_bits & 0x1:
        raise NncliError(f"{where} is encrypted; nncli reads plain .npz archives")
    try:
        with archive.open(info) as member:
            prefix = member.read(8)
            if len(prefix) < 8 or prefix[:6] != _MAGIC:
                raise NncliError(f"{where} is not a .npy array (no NumPy header)")
            version = prefix[6]
            length_format = _LENGTH_FORMATS.get(version)
            if length_format is None:
                raise NncliError(f"{where}: unknown .npy format version {version}.{prefix[7]}")
            length_field = member.read(struct.calcsize(length_format))
            if len(length_field) < struct.calcsize(length_format):
                raise NncliError(f"{where}: truncated .npy header")
            length = struct.unpack(length_format, length_field)[0]
            if length > MAX_HEADER_BYTES:
                raise NncliError(f"{where}: its .npy header is {length:,} bytes, over the "
                                 f"{MAX_HEADER_BYTES:,} that NumPy reads from a file it does "
                                 f"not trust (a plain array's header is about 128 bytes); "
                                 f"not loading it")
            header = member.read(length)
    except (NotImplementedError, RuntimeError) as exc:  # compression method, password
        raise NncliError(f"{where}: cannot read it ({exc})") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise NncliError(f"{path}: not a readable .npz archive ({name}: {exc})") from None
    if len(header) < length:
        raise NncliError(f"{where}: truncated .npy header")
    stream = io.BytesIO(prefix[:6] + bytes([min(version, 2), 0]) + length_field + header)
    shape, _, dtype, nbytes = read_npy_header(
        stream, where, pickled=f"{path}: holds pickled Python objects ({name}: dtype")
    held = info.file_size - (len(prefix) + len(length_field) + length)
    if nbytes > held:
        raise NncliError(f"{where}: declares shape {shape} of {dtype} ({nbytes:,} bytes) but "
                         f"holds {max(held, 0):,} bytes of data: truncated or damaged")
    return ArrayHeader(name, tuple(int(s) for s in shape), dtype, int(nbytes))


def check_members(path: Path, keys: tuple[str, ...] | None = None
                  ) -> dict[str, ArrayHeader]:
    """The headers of the arrays ``keys`` (default: every array) of the archive at ``path``,
    checked (see the module docstring) before anything is loaded; keys the archive lacks
    are left out."""
    try:
        with zipfile.ZipFile(path) as archive:
            if keys is None:  # the names np.load gives the members
                keys = tuple(dict.fromkeys(name.removesuffix(".npy")
                                           for name in archive.namelist()))
            headers = {}
            for key in keys:
                name = member_name(archive, key)
                if name is not None:
                    headers[key] = read_header(path, archive, name)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise NncliError(f"{path}: not a readable .npz archive ({exc})") from None
    total = sum(h.nbytes for h in headers.values())
    from nncli.memory import available_memory_bytes

    available = available_memory_bytes()
    if available is not None and total > available:
        parts = ", ".join(f"{key} {h.shape} {h.dtype} {_gb(h.nbytes)}"
                          for key, h in headers.items())
        raise NncliError(f"{path}: its arrays need {_gb(total)} ({parts}), more than the "
                         f"{_gb(available)} of memory available")
    return headers


def load_arrays(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Load the arrays ``keys`` (all present, headers checked by :func:`check_members`)
    from the archive at ``path``, never unpickling; damage is an error naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with np.load(path, allow_pickle=False) as archive:
                return {key: archive[key] for key in keys}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise NncliError(f"{path}: holds pickled Python objects; refusing to load it "
                             f"(store plain numeric or string arrays)") from None
        raise NncliError(f"{path}: not a readable .npz archive "
                         f"({str(exc).splitlines()[0][:200]})") from None
    except MemoryError:
        raise NncliError(f"{path}: not enough memory to load {', '.join(keys)}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
            RuntimeError) as exc:
        raise NncliError(f"{path}: not a readable .npz archive ({exc})") from None
