"""SIGINT and SIGTERM as :class:`KeyboardInterrupt`, remembered until the process ends.

The CLI installs :func:`install` for every command before anything heavy runs, so Ctrl-C
and SIGTERM end every phase the same way (one ``Error: interrupted ...`` line, exit 130).

A Python signal handler runs whenever C code calls ``PyErr_CheckSignals``; some C code
then drops the exception it raised and carries on (NumPy 2.x's cast of a string array
to float64, ``np.array(["1.5"] * n).astype(float)``, swallows a ``KeyboardInterrupt``
raised during the cast, and the run would then finish with exit 0), and Python itself
drops one raised while a finalizer (``__del__``) runs, printing "Exception ignored".
So the handler also records the signal, :func:`raise_if_interrupted` (called after
reading data, at every training batch, and when a command ends) raises it again, and
the "Exception ignored" report of it is silenced: a signal is never lost, only delayed
to the next check.

Some Python code is broken, not merely abandoned, by a KeyboardInterrupt raised between
two of its statements: :mod:`zipfile` (under ``np.savez``) interrupted inside
``ZipFile.open`` or its constructor turns the interrupt into ``ValueError: Can't close the
ZIP file while there is an open writing handle`` and prints "Exception ignored in
ZipFile.__del__" when the half-made object is collected. Such code runs inside
:func:`held`, which delays the signal's exception to the block's end.

Standard library only, cheap to import: the CLI imports this before click or NumPy.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_received: int | None = None  # the first SIGINT/SIGTERM since install(), if any
_holding = False  # the main thread is inside held(): the handler records, raises nothing
_held = False  # a signal arrived inside held(); raised when the block ends
_deferring = False  # inside deferred(): the handler only notes the signal
_deferred: int | None = None  # the signal noted inside deferred(), not yet delivered


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Record the signal and raise KeyboardInterrupt where the main thread is (at the end
    of the :func:`held` block it is in, if any)."""
    global _received, _held, _deferred
    if _deferring:
        _deferred = _deferred or signum
        return
    if _received is None:
        _received = signum
    if _holding:
        _held = True
        return
    raise KeyboardInterrupt


@contextmanager
def held() -> Iterator[None]:
    """Run the block free of KeyboardInterrupt from SIGINT/SIGTERM: one arriving meanwhile
    is recorded at once and raised when the block ends (unless the block raises first).

    For short stretches of code that an exception between two of its statements would
    leave inconsistent (``np.savez``'s zipfile bookkeeping). Nested blocks raise at the
    outermost end. Outside the main thread nothing changes: handlers run in the main
    thread only."""
    global _holding, _held
    if _holding or threading.current_thread() is not threading.main_thread():
        yield
        return
    # _held first: a signal between the two assignments then raises before the block.
    _held = False
    _holding = True
    try:
        yield
    finally:
        _holding = False
    if _held:
        raise KeyboardInterrupt


@contextmanager
def deferred() -> Iterator[None]:
    """Run the block with SIGINT/SIGTERM only noted (:func:`pending`), never raised, and not
    seen by :func:`raise_if_interrupted`: the caller delivers them (:func:`deliver`) at a
    point it chooses. For data-parallel training, whose processes must all stop at the same
    step (a process that raised alone would leave the others blocked in a collective). A
    signal still pending when the block ends is delivered then (unless the block raises)."""
    global _deferring, _deferred
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _deferred = None
    _deferring = True
    try:
        yield
    finally:
        _deferring = False
    if _deferred is not None:
        deliver(_deferred)


def pending() -> int | None:
    """The signal noted inside :func:`deferred` and not yet delivered, or None."""
    return _deferred


def deliver(signum: int) -> None:
    """Record ``signum`` as received (as the handler does) and raise KeyboardInterrupt."""
    global _received, _deferred
    _deferred = None
    if _received is None:
        _received = signum
    raise KeyboardInterrupt


def received() -> int | None:
    """The signal number of the first SIGINT/SIGTERM since :func:`install`, or None."""
    return _received


def signal_name(signum: int | None) -> str:
    """``SIGTERM`` for 15 etc.; ``SIGINT`` when unknown (a KeyboardInterrupt raised by
    Python itself, e.g. before :func:`install`)."""
    if signum is None:
        return "SIGINT"
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if a signal arrived since :func:`install` (one global read).

    Call it after C calls that may have swallowed the handler's exception."""
    if _received is not None:
        raise KeyboardInterrupt


def _quiet_unraisable(previous: Callable[[sys.UnraisableHookArgs], object]
                      ) -> Callable[[sys.UnraisableHookArgs], object]:
    """An unraisablehook that drops our KeyboardInterrupt: raised while a finalizer
    (``__del__``, a weakref callback) ran, Python would print "Exception ignored in ..."
    and carry on; the signal is recorded, and :func:`raise_if_interrupted` delivers it."""

    def hook(unraisable: sys.UnraisableHookArgs) -> object:
        if _received is not None and isinstance(unraisable.exc_value, KeyboardInterrupt):
            return None
        return previous(unraisable)

    return hook


def _install(handler: Callable[[int, FrameType | None], object]) -> Callable[[], None]:
    """Set ``handler`` for SIGINT and SIGTERM, except where they are ignored (``SIG_IGN``,
    as a shell without job control starts background jobs, or ``nohup``-like wrappers):
    an ignored signal stays ignored, as in every careful Unix tool. Returns a function
    restoring the previous handlers. Outside the main thread nothing is changed."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: dict[int, object] = {}
    for signum in SIGNALS:
        old = signal.getsignal(signum)
        if old is signal.SIG_IGN:
            continue
        signal.signal(signum, handler)
        previous[signum] = old
    unraisable = sys.unraisablehook
    sys.unraisablehook = _quiet_unraisable(unraisable)

    def restore() -> None:
        sys.unraisablehook = unraisable
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, old in previous.items():
            # None: a handler not installed from Python; the default is the best guess.
            signal.signal(signum, old if old is not None else signal.SIG_DFL)  # type: ignore[arg-type]

    return restore


def install() -> Callable[[], None]:
    """SIGINT/SIGTERM raise KeyboardInterrupt (and are recorded) from now on; forget any
    earlier signal. Returns a function restoring the previous handlers."""
    global _received
    _received = None
    return _install(_on_signal)


def install_early(on_signal: Callable[[int, FrameType | None], object]) -> Callable[[], None]:
    """``on_signal`` for SIGINT/SIGTERM (not where ignored) until the returned function
    restores the previous handlers; for start-up, where no exception can be caught."""
    return _install(on_signal)


def stop() -> None:
    """Ignore further SIGINT/SIGTERM: the process is on its way out after one already
    (so the exit message is printed once and the exit code stays 130). Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, signal.SIG_IGN)
