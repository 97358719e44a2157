"""Error types. Raised deep in the library, turned into one ``Error:`` line at the CLI edge."""


class NncliError(Exception):
    """Bad usage, config or data: the CLI prints ``Error: <message>`` and exits 2."""

    exit_code = 2


class DivergedError(NncliError):
    """Training produced a non-finite loss or weight: exit 1."""

    exit_code = 1
