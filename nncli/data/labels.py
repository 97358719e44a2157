"""Labels: class names from raw label text, their order, class indices, class weights.

A label that is a number is one class whatever its spelling (3, 3.0, "+3", "3e0"), compared
exactly (no trip through float64); classes of numbers sort by value, others by name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal

import numpy as np

from nncli.errors import NncliError


def is_number(text: str) -> bool:
    """True when ``float(text)`` parses (e.g. "3", "-1.5e3", "nan")."""
    try:
        float(text)
    except ValueError:
        return False
    return True


# A label that is a number: decimal digits (ASCII only: "١٢" is not 12), an optional
# fraction and exponent. Not "nan", "inf", "1_000" or "0x10", which float() or int() accept.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_MAX_INT_DIGITS = 4000  # integral labels up to this many digits are written out exactly


def _label_number(text: str) -> Decimal | None:
    """The exact value of a numeric label (see ``_DECIMAL``), or None."""
    if not _DECIMAL.fullmatch(text):
        return None
    try:
        return Decimal(text)
    except ArithmeticError:  # not reached for text that matches _DECIMAL
        return None


def canonical_label(value: object) -> str:
    """A label as a class name: an integral number is written as its exact integer, so 3,
    3.0, "3", "+3" and "3e0" agree, while 12345678901234567890 and 12345678901234567891 stay
    two classes (no trip through float64). Other text, non-integral numbers included, is
    kept as it is (stripped)."""
    text = str(value).strip()
    number = _label_number(text)
    if number is None or number != number.to_integral_value() \
            or number.adjusted() > _MAX_INT_DIGITS:
        return text
    return str(int(number))


def sort_classes(names: Sequence[str]) -> list[str]:
    """Sorted class names: numerically (by exact value, so 12345678901234567890 <
    12345678901234567891, and 7 < 12.5 < 100) when every name is a number, else by name."""
    unique = sorted(set(names))
    values = [_label_number(name) for name in unique]
    if any(v is None for v in values):
        return unique
    return [name for _, name in sorted(zip(values, unique))]


def encode_labels(labels: np.ndarray, classes: Sequence[str], source: str,
                  lines: np.ndarray | None = None) -> np.ndarray:
    """Class indices (N,) for string labels (N,); unknown labels are an error naming one
    (and up to 20 of the model's classes)."""
    index = {name: i for i, name in enumerate(classes)}
    uniq, inverse = np.unique(labels, return_inverse=True)
    mapping = np.empty(len(uniq), dtype=np.int64)
    for j, name in enumerate(uniq):
        if name not in index:
            row = int(np.flatnonzero(labels == name)[0])
            where = f"line {int(lines[row])}" if lines is not None else f"example {row + 1}"
            shown = ", ".join(classes[:20]) + (f", ... ({len(classes):,} in all)"
                                               if len(classes) > 20 else "")
            raise NncliError(f"{source}: {where}: label '{name[:200]}' is not one of the "
                             f"model's classes ({shown})")
        mapping[j] = index[name]
    return mapping[inverse.reshape(-1)]


def numeric_targets(labels: np.ndarray, source: str, lines: np.ndarray | None = None,
                    column: str = "label") -> np.ndarray:
    """Regression targets (N,) float64 from the label text (N,): every value a finite
    number, else an error naming the first other one, its line and the label ``column``."""
    text = np.char.strip(labels.astype(str))
    uniq, inverse = np.unique(text, return_inverse=True)
    parsed = np.empty(len(uniq), dtype=np.float64)
    for j, name in enumerate(uniq):  # once per distinct value, not per row
        number = _label_number(name)
        parsed[j] = float(number) if number is not None else np.nan
    values = parsed[inverse.reshape(-1)]
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        where = f"line {int(lines[row])}" if lines is not None else f"example {row + 1}"
        raise NncliError(f"{source}: {where}: the target '{text[row][:200]}' in column "
                         f"'{column}' is not a number (task: regression needs a numeric "
                         f"label column; a classifier is task: classification)")
    return values


def class_weight_vector(spec: None | str | dict[str, float], classes: Sequence[str],
                        y: np.ndarray) -> np.ndarray | None:
    """Per-class loss weights (K,) or None.

    ``balanced``: ``w_k = N / (K N_k)`` from training labels y: (N,); a mapping names
    classes (missing ones weigh 1, as in Keras); unknown class names are errors.
    """
    if spec is None:
        return None
    K = len(classes)
    if spec == "balanced":
        counts = np.bincount(y, minlength=K).astype(np.float64)
        return np.where(counts > 0, len(y) / (K * np.maximum(counts, 1)), 0.0)
    weights = np.ones(K)
    lookup = {name: i for i, name in enumerate(classes)}
    for name, w in spec.items():
        key = canonical_label(name)
        if key not in lookup:
            raise NncliError(f"config key 'loss.class_weight.{name}': no class '{name}' in the "
                             f"training data (classes: {', '.join(classes)})")
        weights[lookup[key]] = w
    return weights
