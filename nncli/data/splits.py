"""Splits: the part of the training data held out for validation."""

from __future__ import annotations

import numpy as np


def stratified_split(y: np.ndarray, fraction: float,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out) holding out ``fraction`` of each class (at least one per
    class with two or more examples). y: (N,) -> two sorted index arrays."""
    held = []
    for k in np.unique(y):
        members = np.flatnonzero(y == k)
        n_out = int(round(fraction * len(members)))
        if len(members) >= 2:
            n_out = min(max(n_out, 1), len(members) - 1)
        else:
            n_out = 0
        held.append(rng.permutation(members)[:n_out])
    held_out = np.sort(np.concatenate(held)) if held else np.array([], dtype=np.int64)
    keep = np.setdiff1d(np.arange(len(y)), held_out)
    return keep, held_out
