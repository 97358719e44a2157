"""Error types. Raised deep in the library, turned into one ``Error:`` line at the CLI edge.

:class:`NncliError` itself lives in :mod:`nncli.nn.errors` (the math raises it too and
imports nothing above ``nncli.nn``); it is the same class here.
"""

from nncli.nn.errors import NncliError

__all__ = ["DivergedError", "NncliError"]


class DivergedError(NncliError):
    """Training produced a non-finite loss or weight: exit 1."""

    exit_code = 1
