"""The data sources: one table from a source's kind to the files it takes and its reader.

A source is read into :class:`~nncli.data.types.RawData` (features as an (N, D) matrix, one
example per row, and the raw labels as strings) by the reader registered for its kind in
:data:`SOURCES`: an image folder (one subfolder per class; its images are the files of
:data:`nncli.data.images.FORMATS`), a ``.csv``/``.tsv``/``.tab`` table or an ``.npz`` with
``X`` and ``y``, or an array folder (``X.npy`` and ``y.npy``, memory-mapped: see
:mod:`nncli.data.arrayfolder`). To add a source: its reader in a module of its own, and
one entry here.

Each reader module is imported when a source of its kind is first read, so that a command
pays only for what it reads (an image folder loads Pillow and the decode pools). The reader
modules import nothing from here: the table sits above them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nncli.data.types import RawData
from nncli.errors import NncliError
from nncli.files import refuse_special_file

if TYPE_CHECKING:
    from nncli.config import DataConfig

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}  # a table's suffix -> delimiter
NPZ_SUFFIXES = (".npz",)

Reader = Callable[[Path, "DataConfig"], RawData]


def read_folder(path: Path, data_cfg: DataConfig) -> RawData:
    """An image folder with one subfolder per class (see :mod:`nncli.data.images`)."""
    from nncli.data.images import read_image_folder

    return read_image_folder(path, data_cfg.image.size, data_cfg.image.mode)


def read_table(path: Path, data_cfg: DataConfig) -> RawData:
    """A delimited text table with a header (:func:`nncli.data.tables.load_table`), split
    on its suffix's delimiter; ``data_cfg.label_column`` holds the labels, ``columns`` and
    ``na_values`` say how the other columns are read."""
    from nncli.data.tables import load_table

    return load_table(path, TABLE_SUFFIXES[path.suffix.lower()], data_cfg.label_column,
                      data_cfg.columns, data_cfg.na_values)


def read_npz(path: Path, data_cfg: DataConfig) -> RawData:
    """An ``.npz`` with ``X`` and ``y`` (:func:`nncli.data.arrays.load_npz`)."""
    from nncli.data.arrays import load_npz

    return load_npz(path)


def read_arrays(path: Path, data_cfg: DataConfig) -> RawData:
    """A folder with ``X.npy`` and ``y.npy``, X memory-mapped
    (:func:`nncli.data.arrayfolder.read_array_folder`)."""
    from nncli.data.arrayfolder import read_array_folder

    return read_array_folder(path)


@dataclass(frozen=True)
class Source:
    """One kind of source: the file suffixes it takes (a folder: none, it is a folder),
    what it is called in an error, and its reader ``read(path, data_cfg) -> RawData``."""

    suffixes: tuple[str, ...]
    described: str
    read: Reader

    def __call__(self, path: Path, data_cfg: DataConfig) -> RawData:
        """The source at ``path`` read with ``read`` (X: (N, D), labels: (N,))."""
        return self.read(path, data_cfg)


SOURCES: dict[str, Source] = {
    "folder": Source((), "an image folder", read_folder),
    "table": Source(tuple(TABLE_SUFFIXES), "a .csv/.tsv table", read_table),
    "npz": Source(NPZ_SUFFIXES, "an .npz with X and y", read_npz),
    "arrays": Source((), "a folder with X.npy and y.npy", read_arrays),
}
# Taken once from SOURCES, so a reader swapped in later (the tests do) keeps its suffixes.
_KIND_OF_SUFFIX = {suffix: kind for kind, source in SOURCES.items()
                   for suffix in source.suffixes}
_EXPECTED = [source.described for source in SOURCES.values()]


def source_kind(path: Path) -> str:
    """Which reader handles ``path``: arrays (a folder holding X.npy or y.npy), folder (any
    other folder: images in class subfolders), table (.csv/.tsv/.tab) or npz."""
    if path.is_dir():
        from nncli.data.arrayfolder import is_array_folder

        return "arrays" if is_array_folder(path) else "folder"
    suffix = path.suffix.lower()
    if suffix in _KIND_OF_SUFFIX:
        return _KIND_OF_SUFFIX[suffix]
    raise NncliError(f"{path}: unknown data kind '{suffix or path.name}' (expected "
                     f"{', '.join(_EXPECTED[:-1])} or {_EXPECTED[-1]})")


def read_source(path: str | Path, data_cfg: DataConfig) -> RawData:
    """Read any supported source; errors name the path."""
    from nncli.interrupts import raise_if_interrupted
    from nncli.testhooks import pause_here

    pause_here("load")  # tests send signals at this phase
    path = Path(path)
    if not path.exists():
        hint = ""
        beside = Path(data_cfg.config_dir or ".") / path
        if not path.is_absolute() and data_cfg.config_dir and beside.exists():
            hint = (f" (relative paths are taken from the current directory; it exists next "
                    f"to the config file, as {beside}: run nncli from there or give that "
                    f"path)")
        raise NncliError(f"{path}: no such file or folder{hint}")
    refuse_special_file(path, "a data source")
    raw = SOURCES[source_kind(path)](path, data_cfg)
    raise_if_interrupted()  # a SIGINT/SIGTERM whose exception C code swallowed meanwhile
    if raw.X.shape[0] == 0:
        raise NncliError(f"{path}: contains no examples")
    return raw
