"""Data: sources, labels, splits and normalization — everything before the network.

The rooms, bottom up (each imports only those above it in this list):

- :mod:`~nncli.data.types`: the nouns — :class:`RawData` (what a source holds),
  :class:`Normalization`, :class:`Dataset`, :class:`TrainingData`;
- :mod:`~nncli.data.cells`: what a table cell is (a missing-value marker, a number,
  text), decided per distinct value;
- :mod:`~nncli.data.labels`: class names from label text, their order, class indices and
  class weights; :mod:`~nncli.data.columns`: the one rule that matches a table's columns by
  name;
- the readers: :mod:`~nncli.data.tables`, :mod:`~nncli.data.arrays` (``.npz``, through
  :mod:`~nncli.data.npzfile`), :mod:`~nncli.data.images` (with
  :mod:`~nncli.data.folders`, the listing, and :mod:`~nncli.data.imagecache`);
- :mod:`~nncli.data.sources`: the registry, kind -> suffixes and reader;
- :mod:`~nncli.data.encoding`: a table's columns as the network's inputs (imputation,
  one-hot), learned on the training rows and stored in the checkpoint;
- :mod:`~nncli.data.normalize`, :mod:`~nncli.data.splits` and
  :mod:`~nncli.data.prepare` (:func:`load_training_data`).

The package never imports the model, the checkpoint, ``nncli.nn`` or BLAS
(tests/test_architecture.py). Its public names are importable from ``nncli.data`` itself;
each is loaded from its module on first use, so that importing one room (the image decoder,
say, or the nouns) does not load all the others, and no room depends on this one.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "types": ("Dataset", "Normalization", "RawData", "TrainingData", "row_blocks"),
    "labels": ("canonical_label", "class_weight_vector", "encode_labels", "is_number",
               "sort_classes"),
    "columns": ("align_features", "feature_positions", "label_column_index",
                "label_positions", "refuse_semicolon_header"),
    "tables": ("ROW_INDEX_NAMES", "load_table"),
    "arrays": ("load_npz",),
    "sources": ("NPZ_SUFFIXES", "SOURCES", "TABLE_SUFFIXES", "Source", "read_folder",
                "read_npz", "read_source", "read_table", "source_kind"),
    "normalize": ("fit_normalization",),
    "splits": ("stratified_split",),
    "prepare": ("check_columns_key", "check_shape", "encode_table", "load_training_data",
                "make_dataset", "reader_config"),
    "cells": ("DEFAULT_NA_VALUES", "ColumnCells", "na_set", "raw_columns"),
    "encoding": ("Column", "Counts", "Encoding", "warn_counts"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    """``nncli.data.<name>``: the public name from its module, imported on first use."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'nncli.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"nncli.data.{module}"), name)
    globals()[name] = value  # later look-ups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
