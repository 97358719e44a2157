"""Rows of a memory-mapped X normalized as they are read, and the order an epoch reads them.

:class:`NormalizedRows` is what a :class:`~nncli.data.types.Dataset` holds for an array
folder: the rows ``rows`` of the raw ``X.npy`` (a memmap, any of float32, float64, uint8)
seen as a (N, D) array of the compute dtype. Training gathers a batch with
:meth:`~NormalizedRows.take` (the signature of ``ndarray.take``, as
:class:`~nncli.train.MinibatchStep` calls it) and scoring reads slices ``X[a:b]``; both
normalize just the rows they read, with exactly the arithmetic of
:meth:`~nncli.data.types.Normalization.apply` (float64 ``(x - shift) / scale``, then cast),
so that the values equal those of the same data normalized in memory, bit for bit.

The order of an epoch (:func:`block_order`): the training rows cut into blocks of
:data:`BLOCK_BYTES` of X (64 MiB), the blocks in a shuffled order, the rows shuffled within
each block. Why: a uniformly shuffled epoch reads rows at random over the whole file, so
once the file outgrows the page cache nearly every row is a page fault of its own to disk
(4 KiB read for a 3 KiB row, readahead useless). Block by block, an epoch reads each block
whole while it trains on it — 64 MiB of pages touched together, so disk reads are
sequential-ish and the working set is one block, however large the file — and the kernel
may drop the pages of blocks already done (they are clean file pages, not anonymous
memory). The cost is randomness: a batch mixes rows of one block only (about 21,000 rows of
784 float32), so a file sorted by label must be shuffled once when it is written. The rule
depends on the data's size only (N and D times X's itemsize), never on the machine; data
of one block (at most 64 MiB of X) gets ``rng.permutation(N)``, the in-memory order, so an
array folder trains exactly as the same data in memory.
"""

from __future__ import annotations

import numpy as np

from nncli.data.types import Normalization, row_blocks
from nncli.errors import NncliError

BLOCK_BYTES = 64 << 20  # rows of X per shuffle block: this many bytes of them
READ_ELEMENTS = 1 << 16  # values normalized at once by a scoring read (512 KiB of float64)


def block_order(n: int, row_bytes: int, rng: np.random.Generator,
                block_bytes: int = BLOCK_BYTES) -> np.ndarray:
    """An epoch's order of n rows of ``row_bytes`` each: (n,) int64, every row once.

    Rows ``[k B, (k+1) B)`` make block k, B = ``block_bytes // row_bytes`` (at least 1);
    the blocks are taken in the order ``rng.permutation(n_blocks)``, the rows of each in the
    order ``start + rng.permutation(len)``. A single block (n <= B) is
    ``rng.permutation(n)`` itself.
    """
    per_block = max(1, block_bytes // max(1, row_bytes))
    if n <= per_block:
        return rng.permutation(n)
    starts = np.arange(0, n, per_block)
    order = np.empty(n, dtype=np.int64)
    filled = 0
    for b in rng.permutation(len(starts)).tolist():
        start = int(starts[b])
        size = min(per_block, n - start)
        order[filled:filled + size] = start + rng.permutation(size)
        filled += size
    return order


class NormalizedRows:
    """The rows ``rows`` (sorted indices into raw, None: all of them) of ``raw`` (N_all, D)
    seen as X: (N, D) of ``dtype``, normalized by ``normalization`` as they are read.

    Nothing is read when it is made; each read gathers its rows from ``raw`` and normalizes
    them into the caller's array (``take(..., out=)``) through work arrays kept from one
    batch to the next, so that a training step allocates nothing.
    """

    def __init__(self, raw: np.ndarray, rows: np.ndarray | None,
                 normalization: Normalization, dtype: str | np.dtype,
                 block_bytes: int | None = None) -> None:
        self.raw, self.rows, self.normalization = raw, rows, normalization
        self.dtype = np.dtype(dtype)
        n = raw.shape[0] if rows is None else len(rows)
        self.shape = (int(n), int(raw.shape[1]))
        self.ndim = 2
        self.block_bytes = block_bytes  # None: BLOCK_BYTES when an epoch's order is drawn
        self._raw_work = np.empty((0, raw.shape[1]), dtype=raw.dtype)
        self._work = np.empty((0, raw.shape[1]), dtype=np.float64)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        """What the normalized rows would take in memory, were they copied."""
        return self.shape[0] * self.shape[1] * self.dtype.itemsize

    def order(self, rng: np.random.Generator) -> np.ndarray:
        """An epoch's order of these rows: :func:`block_order` over X's row size."""
        return block_order(self.shape[0], self.shape[1] * self.raw.dtype.itemsize, rng,
                           BLOCK_BYTES if self.block_bytes is None else self.block_bytes)

    def _raw_rows(self, m: int) -> np.ndarray:
        """A work array (m, D) of raw's dtype for gathered rows, grown when needed."""
        if len(self._raw_work) < m:
            self._raw_work = np.empty((m, self.shape[1]), dtype=self.raw.dtype)
        return self._raw_work[:m]

    def _float_rows(self, m: int) -> np.ndarray:
        """A float64 work array (m, D) for the arithmetic, grown when needed."""
        if len(self._work) < m:
            self._work = np.empty((m, self.shape[1]), dtype=np.float64)
        return self._work[:m]

    def _normalize_into(self, block: np.ndarray, out: np.ndarray) -> None:
        """``block`` (m, D) raw rows normalized into ``out`` (m, D) of dtype:
        Normalization.apply's float64 arithmetic, then the cast."""
        norm = self.normalization
        if norm.shift is None:
            np.copyto(out, block, casting="unsafe")
            return
        # float64 output: the arithmetic happens in it (the cast to float64 is no cast)
        work = out if out.dtype == np.float64 else self._float_rows(len(block))
        np.copyto(work, block)
        with np.errstate(over="ignore", invalid="ignore"):
            work -= norm.shift
            work /= norm.scale
            if work is not out:
                np.copyto(out, work, casting="unsafe")

    def _chunks(self, m: int) -> range:
        """Starts of the row chunks in which a read of m rows is normalized, so that the
        work arrays of a large scoring read stay small (:data:`READ_ELEMENTS` values)."""
        return range(0, m, max(1, READ_ELEMENTS // max(1, self.shape[1])))

    def take(self, idx: np.ndarray, axis: int = 0, out: np.ndarray | None = None,
             mode: str = "raise") -> np.ndarray:
        """Rows ``idx`` (m,) normalized: (m, D) of dtype, into ``out`` if given (as
        ``ndarray.take(idx, axis=0, out=out, mode=mode)``). A training batch (``out``
        given) is gathered at once; a larger read in chunks."""
        if axis != 0:
            raise ValueError("NormalizedRows.take reads rows (axis=0) only")
        idx = np.asarray(idx)
        where = idx if self.rows is None else self.rows.take(idx, mode=mode)  # type: ignore[call-overload]
        if out is not None:
            steps: range | list[int] = [0]
            size = len(where)
        else:
            out = np.empty((len(where), self.shape[1]), dtype=self.dtype)
            steps = self._chunks(len(where))
            size = steps.step
        for start in steps:
            part = where[start:start + size]
            raw_work = self._raw_rows(len(part))
            self.raw.take(part, axis=0, out=raw_work, mode=mode)  # type: ignore[call-overload]
            self._normalize_into(raw_work, out[start:start + size])
        return out

    def __getitem__(self, key: slice | np.ndarray | int) -> np.ndarray:
        """``X[a:b]`` (a slice of rows), ``X[idx]`` (an index array) or ``X[i]`` (one row
        (D,)), normalized."""
        if isinstance(key, slice):
            positions = range(*key.indices(self.shape[0]))
            if positions.step == 1 and self.rows is None:  # contiguous: no gather
                out = np.empty((len(positions), self.shape[1]), dtype=self.dtype)
                chunks = self._chunks(len(positions))
                for start in chunks:
                    stop = min(start + chunks.step, len(positions))
                    first = positions.start
                    self._normalize_into(np.asarray(self.raw[first + start:first + stop]),
                                         out[start:stop])
                return out
            return self.take(np.arange(positions.start, positions.stop, positions.step))
        if np.ndim(key) == 0:
            i = int(key)  # type: ignore[arg-type]
            return self.take(np.array([i + self.shape[0] if i < 0 else i]))[0]
        return self.take(np.asarray(key))

    def materialize(self) -> np.ndarray:
        """All the rows normalized, (N, D) in memory: only for data known to be small."""
        return self[:]


MAPPED_BLOCK_ELEMENTS = 1 << 18  # values per block in a pass over a memmap (1 MiB float32)


def check_values(X: np.ndarray, normalization: Normalization, dtype: str | np.dtype,
                 source: str, elements: int = MAPPED_BLOCK_ELEMENTS) -> None:
    """Refuse an X: (N, D) (a memmap) that holds NaN or inf, or a value that does not fit
    ``dtype`` once normalized — the checks an in-memory source gets when it is read and
    normalized — in one pass over row blocks of about ``elements`` values. Errors name the
    example (and the feature). Normalizing is monotone per column, so the columns' minima
    and maxima stand for all their values."""
    lo = hi = None
    for rows in row_blocks(X, elements):
        block = np.asarray(X[rows])
        block_lo, block_hi = block.min(axis=0), block.max(axis=0)  # NaN propagates
        if block.dtype.kind == "f" and not (np.isfinite(block_lo).all()
                                            and np.isfinite(block_hi).all()):
            row = int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
            raise NncliError(f"{source}: X has a non-finite value in example "
                             f"{rows.start + row + 1}")
        lo = block_lo if lo is None else np.minimum(lo, block_lo)
        hi = block_hi if hi is None else np.maximum(hi, block_hi)
    if lo is None or normalization.shift is None and np.dtype(dtype).itemsize >= 8:
        return
    extremes = np.stack([lo, hi]).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if normalization.shift is not None:
            extremes = (extremes - normalization.shift) / normalization.scale
        fits = np.isfinite(extremes.astype(dtype)).all()
    if not fits:  # find the first row that does not: apply's own error names it
        for rows in row_blocks(X, elements):
            normalization.apply(np.asarray(X[rows]), dtype,
                                lambda i, start=rows.start: f"{source}: example {start + i + 1}")
