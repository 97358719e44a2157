"""Text that nncli prints but did not write itself — file names, class names, cell values —
made safe to print: it stays on its line and cannot steer the terminal.

Standard library only (the CLI imports it before NumPy loads). Two renderings:

- :func:`printable` for ``Error:``/``warning:`` lines and tables for people: control
  characters become visible escapes (``\\n``, ``\\r``, ``\\t``, ``\\x1b``, ``\\u0085``), so a
  file named ``a\\nb`` or ``\\x1b[2J`` is one line that shows its name and does nothing.
- :func:`tsv_cell` for ``predict --format tsv``: the same, plus ``\\\\`` for a backslash, so
  the escapes can be undone (PostgreSQL's COPY text format, extended to every control
  character).

What is escaped: C0 controls U+0000-U+001F and DEL U+007F as ``\\xNN`` (``\\t``, ``\\n``,
``\\r`` by name), C1 controls U+0080-U+009F (which include NEL and the one-character CSI) as
``\\u00NN``, the Unicode line and paragraph separators U+2028/U+2029 and the
bidirectional-text controls (the "Trojan Source" characters) as ``\\uNNNN``, and the bytes
of a file name that are not valid UTF-8 (held by Python as surrogate escapes
U+DC80-U+DCFF) as ``\\xNN`` — the raw byte, as ``ls -b`` shows it. Other lone surrogates
become ``\\udNNN``.
"""

from __future__ import annotations

from typing import Any

_NAMED = {ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r"}


def _escape_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for code in [*range(0x20), 0x7F]:
        table[code] = _NAMED.get(code, f"\\x{code:02x}")
    for code in [*range(0x80, 0xA0), 0x061C, 0x200E, 0x200F, 0x2028, 0x2029,
                 *range(0x202A, 0x202F), *range(0x2066, 0x206A)]:
        table[code] = f"\\u{code:04x}"
    for code in range(0xD800, 0xE000):
        table[code] = f"\\u{code:04x}"
    for byte in range(0x80, 0x100):  # undecodable bytes of a file name (surrogateescape)
        table[0xDC00 + byte] = f"\\x{byte:02x}"
    return table


_PRINTABLE = _escape_table()
_TSV = {**_PRINTABLE, ord("\\"): "\\\\"}


def printable(text: str) -> str:
    """``text`` with every control character shown as an escape: one line, inert on a
    terminal. ``printable("a\\nb\\x1b[2J") == "a\\\\nb\\\\x1b[2J"``."""
    return text.translate(_PRINTABLE)


def tsv_cell(text: str) -> str:
    """A TSV cell that keeps its record one line: :func:`printable` plus ``\\\\`` for a
    backslash, so every escape is reversible."""
    return text.translate(_TSV)


def surrogates_as_bytes(text: str) -> str:
    """Only the undecodable bytes of a file name as ``\\xNN`` (for CSV, whose quoting keeps
    every other character as it is); other lone surrogates as ``\\udNNN``."""
    if not any(0xD800 <= ord(c) < 0xE000 for c in text):
        return text
    return "".join(_PRINTABLE[ord(c)] if 0xD800 <= ord(c) < 0xE000 else c for c in text)


def short_repr(value: Any) -> str:
    """A bounded repr for messages (a tampered field may be a 10^6-digit integer)."""
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 200 else (
        f"an integer of {value.bit_length()} bits")
    return text if len(text) <= 40 else text[:37] + "..."
