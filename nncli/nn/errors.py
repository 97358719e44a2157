"""The error type the math raises for bad arguments, defined here at the bottom so that
``nncli.nn`` needs nothing above it; :mod:`nncli.errors` re-exports it."""


class NncliError(Exception):
    """Bad usage, config or data: the CLI prints ``Error: <message>`` and exits 2."""

    exit_code = 2
