"""Test hook: hold the process at a named phase so a test can signal it then.

``pause_here(phase)`` does nothing unless the environment variable
``NNCLI_TEST_PAUSE`` equals ``phase``.  When it does, it writes one line
``paused <phase> <pid>`` to the file named by ``NNCLI_TEST_PAUSE_FILE`` (or to
stderr when that is unset), flushes, and sleeps in short steps for up to about
60 seconds, so that a test can send a signal at exactly that point.  Signals
arriving during the sleep are handled at once by Python (``time.sleep`` is
interruptible), so the handler's exception surfaces from this call; a signal that
:func:`nncli.interrupts.deferred` only notes ends the pause.

Phases: ``import``, ``load``, ``parse-table``, ``decode``, ``train``,
``eval``, ``predict``.

This module imports only the standard library and is cheap to import: the
hot path is one ``os.environ`` lookup.
"""

from __future__ import annotations

import os
import sys
import time

from nncli import interrupts

#: How long a paused process waits for the test's signal before going on.
PAUSE_SECONDS = 60.0
_STEP_SECONDS = 0.05


def pause_here(phase: str) -> None:
    """Pause at ``phase`` when ``NNCLI_TEST_PAUSE == phase``; else return at once.

    phase: one of the documented phase names.
    """
    if os.environ.get("NNCLI_TEST_PAUSE") != phase:
        return
    line = f"paused {phase} {os.getpid()}\n"
    target = os.environ.get("NNCLI_TEST_PAUSE_FILE")
    if target:
        # Append + one write: several processes may share one pause file.
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
    else:
        sys.stderr.write(line)
        sys.stderr.flush()
    deadline = time.monotonic() + PAUSE_SECONDS
    while time.monotonic() < deadline:
        time.sleep(_STEP_SECONDS)
        if interrupts.pending() is not None:
            return  # a signal noted for later (data-parallel training) ends the pause too
