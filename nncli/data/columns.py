"""Matching a table's columns by name: the label column in a header, and the feature
columns to the training columns — the one home of that rule, for training and eval tables
(:func:`align_features`) and for predict's rows under a header (:func:`feature_positions`).

Columns are matched by name, in any order (as pandas users expect), never by position. A
name that occurs several times matches its occurrences in order.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

from nncli.data.types import RawData
from nncli.errors import NncliError


def refuse_semicolon_header(header: Sequence[str], source: str, how_read: str) -> None:
    """A header that came out as one cell holding ``;`` (a European CSV) is an error that
    says so; ``how_read`` tells how the reader splits rows."""
    if len(header) == 1 and ";" in header[0]:
        raise NncliError(f"{source}: the header looks ';'-separated ({header[0][:60]!r}); "
                         f"{how_read} — convert it, e.g. with pandas: "
                         f"read_csv(path, sep=';').to_csv(new, index=False), or tr ';' ','")


def label_positions(header: Sequence[str], label_column: str, source: str) -> list[int]:
    """Where ``label_column`` sits in ``header``: ``[]`` when absent, else ``[i]``. A
    header naming it more than once is an error naming ``source``."""
    hits = [i for i, name in enumerate(header) if name == label_column]
    if len(hits) > 1:
        raise NncliError(f"{source}: the label column '{label_column}' appears {len(hits)} "
                         f"times in the header")
    return hits


def label_column_index(header: list[str], label_column: str, path: Path) -> int:
    """The position of the label column in a training table's ``header``; a missing one
    is an error that suggests the closest name (or a ';'-separated header's cause)."""
    hits = label_positions(header, label_column, str(path))
    if not hits:
        if path.suffix.lower() == ".csv":
            refuse_semicolon_header(header, str(path), ".csv tables are read as "
                                    "comma-separated")
        lowered = {name.lower(): name for name in header}
        close = ([lowered[label_column.lower()]] if label_column.lower() in lowered else
                 difflib.get_close_matches(label_column, header, n=1, cutoff=0.6))
        hint = (f" — did you mean data.label_column: {close[0]}?" if close
                else " — set data.label_column")
        raise NncliError(f"{path}: no label column '{label_column}' in the header "
                         f"(columns: {', '.join(header[:12])}{', ...' if len(header) > 12 else ''})"
                         f"{hint}")
    return hits[0]


def _listed(names: Sequence[str], limit: int = 20) -> str:
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def feature_positions(given: Sequence[str], features: Sequence[str], source: str,
                      role: str | None = None) -> list[int]:
    """Where each training feature column ``features[j]`` sits among the columns ``given``
    (a header without its label column): ``given[positions[j]] == features[j]``.

    A header that lacks a training column, names one the model was not trained on, or
    names one more often than the training data, is an error naming ``source``, those
    columns and the expected ones (``role``, e.g. "eval", says what the examples are for).
    """
    given = list(given)
    at: dict[str, list[int]] = {}
    for i, name in enumerate(given):
        at.setdefault(name, []).append(i)
    order: list[int] = []
    missing: list[str] = []
    for name in features:
        slots = at.get(name)
        if slots:
            order.append(slots.pop(0))
        else:
            missing.append(name)
    unknown = [given[i] for i in sorted(set(range(len(given))) - set(order))]
    repeated = sorted({name for name in unknown if name in features})
    unknown = [name for name in unknown if name not in features]
    if missing or unknown or repeated:
        problems = []
        if missing:
            problems.append(f"lacks the feature column(s) {_listed(missing)}")
        if unknown:
            problems.append(f"names column(s) the model was not trained on: {_listed(unknown)}")
        if repeated:
            problems.append(f"names column(s) more often than the training data: "
                            f"{_listed(repeated)}")
        counts = (f"{role} examples have {len(given)} features, the training data has "
                  f"{len(features)}; " if role and len(given) != len(features) else "")
        raise NncliError(f"{source}: {counts}the header {' and '.join(problems)} "
                         f"(the training feature columns: {_listed(list(features))})")
    return order


def align_features(raw: RawData, features: Sequence[str] | None,
                   role: str | None = None) -> RawData:
    """A table's feature columns matched to the training columns ``features`` by name
    (:func:`feature_positions`). Returns ``raw`` or a copy with ``X: (N, D)`` reordered to
    the training order.

    Sources without column names (``.npz``, image folders), and models trained on such
    sources (``features`` None), are left to the shape check.
    """
    if not features or raw.features is None or list(raw.features) == list(features):
        return raw
    order = feature_positions(raw.features, features, raw.source, role)
    levels = None if raw.levels is None else [raw.levels[i] for i in order]
    return RawData(X=raw.X[:, order], labels=raw.labels, input_shape=raw.input_shape,
                   source=raw.source, kind=raw.kind, features=list(features),
                   label_lines=raw.label_lines, levels=levels, ignored=raw.ignored)
