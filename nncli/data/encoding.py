"""A table's encoding: how its raw columns become the network's input, learned on the
training rows and stored in the checkpoint (:class:`Encoding`).

A ``number`` column is one input, its missing values the training mean of the column
(scikit-learn's ``SimpleImputer(strategy="mean")``). A ``category`` column is one input per
category seen in training, sorted as classes are, one-hot (``OneHotEncoder``); a missing
value is a level of its own (the last one) when training had missing values in that
column, and a category training never saw (or a missing value where training had none) is
all zeros (``handle_unknown="ignore"``). Columns stay in the file's order; a category
column's inputs take its place.

The raw columns come as the readers give them: ``X: (N, C)`` float64 with a number
column's values and a category column's codes into ``levels[j]`` (the texts of that
source, in its own order), NaN where missing. Encoding is vectorized per column: one
dictionary look-up per distinct text, never one per row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nncli.data.labels import sort_classes
from nncli.data.types import Normalization
from nncli.errors import NncliError

IDENTIFIER_MIN = 20  # a category column with more distinct values than this ...
IDENTIFIER_SHARE = 0.5  # ... in more than this share of its rows names rows: a warning
MISSING_NAME = "<missing>"  # the missing level's name among the input names

log = logging.getLogger("nncli")


@dataclass
class Column:
    """One raw column: ``name``, ``type`` (number | category), and what it learned: a
    number column's ``fill`` (training mean), a category column's sorted ``categories``
    and whether missing values are a level (``missing_level``, the last input)."""

    name: str
    type: str
    fill: float = 0.0
    categories: list[str] = field(default_factory=list)
    missing_level: bool = False

    @property
    def width(self) -> int:
        """How many inputs the column becomes."""
        return 1 if self.type == "number" else len(self.categories) + self.missing_level


@dataclass
class Counts:
    """What encoding a source did besides plain copying: per column name, the missing
    values imputed and the categories not seen in training (with one example)."""

    imputed: dict[str, int] = field(default_factory=dict)
    unseen: dict[str, int] = field(default_factory=dict)
    example: dict[str, str] = field(default_factory=dict)

    def add(self, other: Counts) -> None:
        """Add ``other``'s counts to these (predict's batches of one source)."""
        for mine, theirs in ((self.imputed, other.imputed), (self.unseen, other.unseen)):
            for name, n in theirs.items():
                mine[name] = mine.get(name, 0) + n
        for name, text in other.example.items():
            self.example.setdefault(name, text)


@dataclass
class Encoding:
    """The encoding of a table's feature columns (``columns``, in file order), the names
    of the columns ignored (``ignored``), and ``data.missing`` (impute | error)."""

    columns: list[Column]
    ignored: list[str] = field(default_factory=list)
    missing: str = "impute"

    @property
    def names(self) -> list[str]:
        """The raw feature columns' names, in order."""
        return [c.name for c in self.columns]

    @property
    def width(self) -> int:
        """D, the number of inputs of the network."""
        return sum(c.width for c in self.columns)

    def input_names(self) -> list[str]:
        """The D inputs' names: a number column's name, ``column=category`` for one-hot."""
        names: list[str] = []
        for c in self.columns:
            if c.type == "number":
                names.append(c.name)
            else:
                names += [f"{c.name}={v}" for v in c.categories]
                names += [f"{c.name}={MISSING_NAME}"] if c.missing_level else []
        return names

    def number_inputs(self) -> np.ndarray:
        """Which of the D inputs are number columns (the others are one-hot), (D,) bool."""
        return np.array([c.type == "number" for c in self.columns for _ in range(c.width)],
                        dtype=bool)

    def declared(self) -> dict[str, str]:
        """The ``data.columns`` that reads another table as the training table was read."""
        return {**{name: "ignore" for name in self.ignored},
                **{c.name: c.type for c in self.columns}}

    def one_hot_unscaled(self, norm: Normalization) -> Normalization:
        """``norm`` with shift 0 and scale 1 on the one-hot inputs, which stay 0/1."""
        if norm.shift is None:
            return norm
        numbers = self.number_inputs()
        return Normalization(norm.kind, np.where(numbers, norm.shift, 0.0),
                             np.where(numbers, norm.scale, 1.0))

    @classmethod
    def fit(cls, X: np.ndarray, levels: Sequence[list[str] | None], names: Sequence[str],
            ignored: Sequence[str], missing: str, source: str) -> Encoding:
        """Learn the encoding on the training rows X: (N, C) (see the module docstring);
        warns about identifier-like category columns and columns without any value."""
        columns = []
        for j, name in enumerate(names):
            values = X[:, j]
            present = ~np.isnan(values)
            if levels[j] is None:
                fill = float(values[present].mean(dtype=np.float64)) if present.any() else 0.0
                if not present.any():
                    log.warning("%s: column '%s' has no values in the training rows; its "
                                "missing values become 0 — set data.columns: {%s: ignore}",
                                source, name, name)
                columns.append(Column(name, "number", fill=fill))
                continue
            codes = np.unique(values[present]).astype(np.int64)
            categories = sort_classes([levels[j][c] for c in codes.tolist()])
            columns.append(Column(name, "category", categories=categories,
                                  missing_level=bool((~present).any())))
            _warn_identifier(source, name, len(categories), int(present.sum()))
        return cls(columns, list(ignored), missing)

    def transform(self, X: np.ndarray, levels: Sequence[list[str] | None],
                  where: Callable[[int], str], in_place: bool = False
                  ) -> tuple[np.ndarray, Counts]:
        """Encode raw rows X: (N, C) -> (N, D) float64, and what was imputed or unseen.

        With ``missing: error`` the first missing value is an error naming ``where(row)``
        and the column. With ``in_place`` and only number columns, X itself is filled.
        """
        missing = np.isnan(X)
        counts = Counts()
        if missing.any():
            if self.missing == "error":
                row, j = (int(i) for i in np.argwhere(missing)[0])
                raise NncliError(f"{where(row)}: column '{self.columns[j].name}': missing "
                                 f"value (data.missing is error; impute sets it to the "
                                 f"training mean, or its own category)")
            for j, n in enumerate(missing.sum(axis=0).tolist()):
                if n:
                    counts.imputed[self.columns[j].name] = n
        if all(c.type == "number" for c in self.columns):
            out = X if in_place else X.copy()
            for j in np.flatnonzero(missing.any(axis=0)):
                out[missing[:, j], j] = self.columns[j].fill
            return out, counts
        out = np.zeros((X.shape[0], self.width), dtype=np.float64)
        at = 0
        for j, column in enumerate(self.columns):
            if column.type == "number":
                out[:, at] = np.where(missing[:, j], column.fill, X[:, j])
            else:
                self._one_hot(column, X[:, j], levels[j] or [], out[:, at:at + column.width],
                              counts)
            at += column.width
        return out, counts

    @staticmethod
    def _one_hot(column: Column, codes: np.ndarray, texts: list[str], out: np.ndarray,
                 counts: Counts) -> None:
        """Set ``out: (N, width)``'s ones for a category column's ``codes: (N,)`` into the
        source's ``texts`` (NaN: missing); counts the categories training never saw."""
        index = {name: k for k, name in enumerate(column.categories)}
        # lookup[code] -> the input of that text (-1: none); the last slot is "missing"
        lookup = np.array([index.get(t, -1) for t in texts]
                          + [len(column.categories) if column.missing_level else -1])
        missing = np.isnan(codes)
        at = lookup[np.where(missing, len(texts), codes).astype(np.int64)]
        rows = np.flatnonzero(at >= 0)
        out[rows, at[rows]] = 1.0
        unseen = (at < 0) & ~missing
        if unseen.any():
            counts.unseen[column.name] = int(unseen.sum())
            counts.example[column.name] = texts[int(codes[np.argmax(unseen)])]

    def to_json(self) -> dict[str, Any]:
        """The encoding as the checkpoint's ``encoding`` meta key."""
        return {"columns": [_column_json(c) for c in self.columns], "ignored": self.ignored,
                "missing": self.missing}

    @classmethod
    def from_json(cls, meta: Any) -> Encoding:
        """The encoding in a checkpoint's meta; ValueError naming what is wrong."""
        if not (isinstance(meta, dict) and isinstance(meta.get("columns"), list)
                and meta["columns"] and _names(meta.get("ignored", []))
                and meta.get("missing", "impute") in ("impute", "error")):
            raise ValueError("encoding: expected {columns: [...], ignored, missing}")
        return cls([_column_of(c) for c in meta["columns"]], list(meta.get("ignored", [])),
                   meta.get("missing", "impute"))


def _names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _column_json(c: Column) -> dict[str, Any]:
    if c.type == "number":
        return {"name": c.name, "type": "number", "fill": c.fill}
    return {"name": c.name, "type": "category", "categories": c.categories,
            "missing_level": c.missing_level}


def _column_of(meta: Any) -> Column:
    """One column of :meth:`Encoding.from_json`."""
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        raise ValueError("encoding: a column without a name")
    name, kind = meta["name"], meta.get("type")
    if kind == "number":
        fill = meta.get("fill")
        if type(fill) not in (int, float) or not np.isfinite(fill):
            raise ValueError(f"encoding: column '{name}': fill must be a finite number")
        return Column(name, "number", fill=float(fill))
    categories = meta.get("categories")
    if kind != "category" or not _names(categories) or len(set(categories)) != len(
            categories) or not isinstance(meta.get("missing_level", False), bool):
        raise ValueError(f"encoding: column '{name}': expected a number column {{fill}} or "
                         f"a category column {{categories, missing_level}}")
    return Column(name, "category", categories=list(categories),
                  missing_level=meta.get("missing_level", False))


def looks_like_identifier(distinct: int, rows: int) -> bool:
    """True for a category column of ``distinct`` values in ``rows`` rows that nearly all
    differ (a name, an id, a date string): as one-hot inputs it names rows instead of
    describing them."""
    return distinct > IDENTIFIER_MIN and distinct > IDENTIFIER_SHARE * rows


def _warn_identifier(source: str, name: str, distinct: int, rows: int) -> None:
    """One warning for an identifier-like category column (:func:`looks_like_identifier`)."""
    if looks_like_identifier(distinct, rows):
        log.warning("%s: column '%s' looks like an identifier (%d distinct values in %d "
                    "rows, %d one-hot inputs); if it names rows rather than describing "
                    "them, set data.columns: {%s: ignore}", source, name, distinct, rows,
                    distinct, name)


def warn_counts(source: str, counts: Counts, encoding: Encoding) -> None:
    """The ``warning:`` lines of one data source: the missing values imputed (per column,
    with what they became), and the categories not seen in training."""
    if counts.imputed:
        parts = [f"{c.name} {counts.imputed[c.name]} ({_filled(c)})" for c in encoding.columns
                 if c.name in counts.imputed]
        log.warning("%s: imputed %d missing value(s): %s", source,
                    sum(counts.imputed.values()), ", ".join(parts))
    if counts.unseen:
        parts = [f"{name} {counts.unseen[name]} (e.g. {counts.example[name][:40]!r})"
                 for name in encoding.names if name in counts.unseen]
        log.warning("%s: %d value(s) of categories not seen in training, encoded as all "
                    "zeros: %s", source, sum(counts.unseen.values()), ", ".join(parts))


def _filled(column: Column) -> str:
    if column.type == "number":
        return f"the training mean {column.fill:.6g}"
    return ("a category of its own" if column.missing_level
            else "all zeros: none was missing in training")
