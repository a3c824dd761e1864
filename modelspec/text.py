"""Words for people: user strings made safe for a terminal, and counts with the right plural.

A tag value, an actor's name, a config value or a file name is whatever someone wrote; printed
raw, `\\x1b]0;…\\x07` retitles the terminal and a bidi override reorders what the reader sees.
Text output passes user strings through `printable`; JSON output needs nothing (it escapes them).
"""

from __future__ import annotations

# C0 controls, DEL and C1 controls; the bidi embeddings/overrides and isolates.
_CONTROLS = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]


def _escaped(code: int) -> str:
    short = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
    return short.get(code) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


_SINGLE_LINE = {code: _escaped(code) for code in _CONTROLS}
_MULTI_LINE = {code: shown for code, shown in _SINGLE_LINE.items() if code not in (0x09, 0x0A)}


def printable(text: str, multiline: bool = False) -> str:
    """`text` with every control character shown as a visible escape (`\\x1b`, `\\u202e`).

    A newline or tab is kept only when `multiline` (a log tail, a list of problems): in a
    one-line value it would let the value forge the lines after it."""
    return text.translate(_MULTI_LINE if multiline else _SINGLE_LINE)


def plural(count: int, word: str, many: str = "") -> str:
    """`1 stage`, `2 stages`, `0 stages`; `many` for an irregular plural (`1 entry`, `2 entries`)."""
    return f"{count} {word if count == 1 else many or word + 's'}"
