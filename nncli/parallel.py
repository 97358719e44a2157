"""Data-parallel training over MPI: ``mpirun -n K nncli train CONFIG``.

Every process (rank) reads the same config and data, draws the same shuffling order from
the seed, and splits each global minibatch of B rows into K contiguous slices as
``np.array_split`` does (the first ``B mod K`` ranks get one row more; a slice may be empty).
Each rank computes the gradient of its slice, scaled by its share of the batch's mean, into
one flat buffer; one ``Allreduce`` per step sums the buffers, so every rank holds the
global batch's gradient and applies the same optimizer step: the parameters stay
identical. Rank 0 alone writes the run directory and prints; the validation metrics are
rank 0's, broadcast to the others, so that every rank takes the same early-stopping
decisions.

:class:`SingleProcess` is the communicator of a plain ``nncli train``: every method is the
plain call, and mpi4py is never imported. :func:`world` picks one from the environment.
"""

from __future__ import annotations

import math
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from nncli import interrupts
from nncli.errors import NncliError
from nncli.rundir import RunDir

if TYPE_CHECKING:  # pragma: no cover
    from nncli.train import MinibatchStep

T = TypeVar("T")

# Launchers and the world size they export to each process: Open MPI's mpirun/prterun,
# MPICH's and Intel MPI's Hydra (also Slurm's srun --mpi=pmi2), MVAPICH.
SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
# Set by a launcher without a world size: PMIx (Open MPI 5, srun --mpi=pmix), Hydra.
PRESENCE_VARIABLES = ("PMIX_RANK", "PMI_RANK", "MPI_LOCALNRANKS")
INSTALL_HINT = 'pip install "nncli[mpi]"'


def launcher_environment(env: dict[str, str] | None = None) -> tuple[str, int | None] | None:
    """The launcher variable found in ``env`` (default ``os.environ``) and the world size
    it states (None when it states none), or None outside an MPI launcher."""
    env = os.environ if env is None else env
    for name in SIZE_VARIABLES:
        if name in env:
            try:
                return name, int(env[name])
            except ValueError:
                raise NncliError(f"environment variable {name}: not a number of processes "
                                 f"({env[name]!r})") from None
    for name in PRESENCE_VARIABLES:
        if name in env:
            return name, None
    return None


def world() -> SingleProcess | MpiWorld:
    """The communicator of this process: :class:`SingleProcess` outside an MPI launcher
    (mpi4py is not imported), else :class:`MpiWorld` over ``MPI.COMM_WORLD``.

    A launcher's world of one process is refused: ``mpirun -n 1`` has nothing to split, and
    a launcher whose processes each see a world of 1 (mpi4py built against another MPI
    than the launcher's, or a PMI the library does not speak) would start K independent
    runs writing the same run directory."""
    found = launcher_environment()
    if found is None:
        return SINGLE_PROCESS
    name, stated = found
    if stated is not None and stated < 2:
        raise NncliError(f"MPI launcher environment with a world size of {stated} ({name}="
                         f"{stated}): data-parallel training needs at least 2 processes "
                         f"(mpirun -n K, K >= 2); for one process run nncli train without "
                         f"mpirun")
    try:
        from mpi4py import MPI
    except ImportError:
        raise NncliError(f"MPI launcher environment ({name}) but mpi4py is not installed: "
                         f"{INSTALL_HINT}") from None
    size = MPI.COMM_WORLD.Get_size()
    if size < 2 or (stated is not None and size != stated):
        raise NncliError(
            f"the MPI launcher states {stated or 'several'} processes ({name}) but mpi4py's "
            f"MPI sees a world of {size}: mpi4py is probably built against another MPI "
            f"library than the launcher's, or the launcher's PMI does not match; use the "
            f"mpirun of the same installation ({INSTALL_HINT} brings both)")
    return MpiWorld(MPI)


class SingleProcess:
    """One process: rank 0 of a world of 1. Every collective is the plain call."""

    rank = 0
    size = 1
    is_root = True

    def run_dir(self, open_run: Callable[[], RunDir]) -> RunDir:
        """Rank 0's run directory, from ``open_run`` (which may refuse the run)."""
        return open_run()

    def from_root(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, computed by rank 0 and sent to every rank."""
        return fn(*args)

    def together(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on every rank; if it fails on any rank, it fails on all."""
        return fn(*args)

    def broadcast_arrays(self, arrays: list[np.ndarray]) -> None:
        """Overwrite ``arrays`` with rank 0's values (in place)."""

    def step(self, inner: MinibatchStep) -> None:
        """The data-parallel step bound to ``inner`` (None: ``inner`` trains alone)."""
        return None

    @contextmanager
    def session(self) -> Iterator[None]:
        """The context a training runs in (here: nothing changes)."""
        yield


SINGLE_PROCESS = SingleProcess()


def _status(exc: BaseException) -> tuple[int, str]:
    """(exit code, message) of an exception, to tell the other ranks why this one stops."""
    if isinstance(exc, KeyboardInterrupt):
        return 130, "interrupted"
    if isinstance(exc, NncliError):
        return exc.exit_code, str(exc)
    return 2, f"internal error: {type(exc).__name__}: {exc}"


def _failure(rank: int, status: tuple[int, str]) -> BaseException:
    """The error a rank raises because rank ``rank`` failed with ``status``."""
    code, message = status
    if code == 130:
        return KeyboardInterrupt()
    error = NncliError(message if rank == 0 else f"rank {rank}: {message}")
    error.exit_code = code
    return error


class MpiWorld:
    """``MPI.COMM_WORLD`` behind :class:`SingleProcess`'s interface.

    Every collective carries the sender's status (the ``Allreduce`` of a step carries a
    pending Ctrl-C), so an error or a signal on one rank ends the run on every rank at the
    same point instead of leaving the others blocked. Small values (statuses, a resumed
    checkpoint) travel pickled in memory between the ranks of one job (mpi4py's lowercase
    methods); arrays as buffers.
    """

    def __init__(self, mpi: Any) -> None:
        self.MPI = mpi
        self.comm = mpi.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.is_root = self.rank == 0

    def run_dir(self, open_run: Callable[[], RunDir]) -> RunDir:
        """Rank 0 opens the run directory; the others get a :class:`QuietRunDir`."""
        run = None
        status: Any = None
        if self.is_root:
            try:
                run = open_run()
            except BaseException as exc:
                self.comm.bcast(("error", _status(exc)), root=0)
                raise
            status = ("ok", str(run.path))
        kind, value = self.comm.bcast(status, root=0)
        if kind == "error":
            raise _failure(0, value)
        return run if run is not None else QuietRunDir(Path(value), self.rank)

    def from_root(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on rank 0, its value (or its error) sent to every rank."""
        if self.is_root:
            try:
                value = fn(*args)
            except BaseException as exc:
                self.comm.bcast(("error", _status(exc)), root=0)
                raise
            self.comm.bcast(("ok", value), root=0)
            return value
        kind, value = self.comm.bcast(None, root=0)
        if kind == "error":
            raise _failure(0, value)
        return value

    def together(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on every rank, then an exchange of outcomes: a rank that failed
        raises its own error, the others that of the first failed rank; a Ctrl-C pending
        on any rank interrupts all."""
        value: Any = None
        own: BaseException | None = None
        try:
            value = fn(*args)
        except BaseException as exc:
            own = exc
        mine = None if own is None else _status(own)
        statuses = self.comm.allgather((mine, interrupts.pending()))
        if own is not None:
            raise own
        for rank, (status, _) in enumerate(statuses):
            if status is not None:
                raise _failure(rank, status)
        signals = [s for _, s in statuses if s is not None]
        if signals:
            interrupts.deliver(signals[0])
        return value

    def broadcast_arrays(self, arrays: list[np.ndarray]) -> None:
        """Overwrite ``arrays`` with rank 0's values, in place (a transposed C-contiguous
        array, as the fused step lays out W, is sent as its transpose)."""
        for array in arrays:
            if array.flags.c_contiguous:
                self.comm.Bcast(array, root=0)
            elif array.T.flags.c_contiguous:
                self.comm.Bcast(array.T, root=0)
            else:
                copy = np.ascontiguousarray(array)
                self.comm.Bcast(copy, root=0)
                array[...] = copy

    def step(self, inner: MinibatchStep) -> DataParallelStep:
        """The data-parallel step bound to ``inner``'s model, optimizer and arrays."""
        return DataParallelStep(self, inner)

    def allreduce_sum(self, buffer: np.ndarray) -> None:
        """``buffer`` (a contiguous array) summed over the ranks, in place on every rank."""
        self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)

    @contextmanager
    def session(self) -> Iterator[None]:
        """SIGINT/SIGTERM deferred to the next collective, which stops every rank at the
        same point (mpirun forwards the signal to all of them)."""
        with interrupts.deferred():
            yield


class QuietRunDir(RunDir):
    """Rank ``rank`` > 0's view of rank 0's run directory: it writes, locks and removes
    nothing (rank 0 alone owns the folder)."""

    def __init__(self, path: Path, rank: int) -> None:
        super().__init__(path)
        self.rank = rank

    def lock(self) -> None: ...

    def claim(self, fresh: bool, pick_free: bool = False) -> None: ...

    def release(self) -> None: ...

    def abandon_if_new(self) -> None: ...

    def abandon(self) -> None: ...

    def create(self) -> None: ...

    def _write(self, name: str, data: bytes) -> None: ...

    def start_metrics(self, keep_through_epoch: int = 0,
                      rows: list[dict[str, Any]] | None = None) -> None: ...

    def append_metrics(self, row: dict[str, Any]) -> None: ...


def slice_bounds(batch: int, size: int, rank: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of a batch of ``batch`` rows that rank ``rank`` of ``size`` takes:
    ``np.array_split``'s contiguous slices (the first ``batch % size`` one row longer)."""
    q, r = divmod(batch, size)
    lo = rank * q + min(rank, r)
    return lo, lo + q + (1 if rank < r else 0)


class DataParallelStep:
    """One gradient-descent step on a global batch, split over the ranks of ``comm``.

    The flat buffer holds every gradient of ``inner``'s training step (each view laid out
    like that gradient, so filling it is a straight copy), then three numbers: this rank's
    share of the batch's data loss, its correct predictions, and a pending-signal flag. A
    rank's share ``s_k`` is its part of the mean: ``m_k / B`` rows, or with class weights
    ``sum_{i in k} w_i / sum_i w_i`` (every rank has the whole batch's labels, so no message
    is needed for the total). Its gradient, the mean over its own slice plus the L2 term,
    is scaled by ``s_k``: the sum over ranks is the batch's gradient, and the L2 term,
    in every rank's gradient, counts ``sum s_k = 1`` time.
    """

    def __init__(self, comm: MpiWorld, inner: MinibatchStep) -> None:
        self.comm, self.inner = comm, inner
        grads = inner.step.grads
        total = sum(g.size for g in grads.values())
        # the model's dtype: float32 runs reduce float32 (the loss to float32 precision,
        # counts exactly up to 2^24 per batch); one message per step either way
        self.buffer = np.zeros(total + 3, dtype=inner.model.dtype)
        self.views: dict[str, np.ndarray] = {}
        offset = 0
        for name, g in grads.items():
            flat = self.buffer[offset:offset + g.size]
            # a gradient stored transposed (the fused step's (in, out) memory) gets a view
            # with the same memory order, so the copy into the buffer runs in order
            self.views[name] = flat.reshape(g.shape) if g.flags.c_contiguous or not \
                g.T.flags.c_contiguous else flat.reshape(g.shape[::-1]).T
            offset += g.size
        self.tail = self.buffer[total:]
        weights = inner.step.objective.class_weights
        self.weights = None if weights is None else np.asarray(weights, np.float64)

    def share(self, idx: np.ndarray, lo: int, hi: int) -> float:
        """This rank's share of the mean over the batch ``idx`` (B,): its rows ``[lo, hi)``."""
        if self.weights is None:
            return (hi - lo) / len(idx)
        w = self.weights[self.inner.y[idx]]
        total = float(w.sum())
        # a batch whose every weight is 0 has a zero data gradient: share the L2 term by rows
        return float(w[lo:hi].sum()) / total if total > 0 else (hi - lo) / len(idx)

    def __call__(self, idx: np.ndarray, lr: float) -> tuple[float, float, int]:
        """Update the model on the global batch ``idx`` (B,) with rate ``lr``; returns the
        batch's (data loss, reg loss, correct predictions), measured before the update, the
        same on every rank."""
        inner, comm = self.inner, self.comm
        lo, hi = slice_bounds(len(idx), comm.size, comm.rank)
        share = self.share(idx, lo, hi)
        if hi > lo:
            xb, yb = inner.gather(idx[lo:hi])
            d_loss, r_loss, correct, grads = inner.step.gradients(xb, yb)
            for name, g in grads.items():
                np.multiply(g, share, out=self.views[name])
        else:  # an empty slice (B < K): nothing to add
            self.buffer[:] = 0.0
            d_loss, correct = 0.0, 0
            r_loss = inner.step.objective.reg_loss(inner.model.params)
        # share 0 times a non-finite loss is NaN: every rank sees the divergence
        self.tail[0] = d_loss * share
        self.tail[1] = correct
        signum = interrupts.pending()
        self.tail[2] = signum or 0
        comm.allreduce_sum(self.buffer)
        if self.tail[2]:  # a Ctrl-C on some rank: all stop here, before the update
            interrupts.deliver(signum or int(signal.SIGINT))
        d_loss, correct = float(self.tail[0]), int(round(float(self.tail[1])))
        if math.isfinite(d_loss + r_loss):
            inner.optimizer.step(inner.model.params, self.views, lr, grads_are_scratch=True)
        return d_loss, r_loss, correct
