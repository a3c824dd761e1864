"""Option lines in a requirements lock: refused, because the environment's digest covers
only the lock's own bytes, not what `-r FILE` or another index would bring in. (A module
of its own so that `validate` checks locks without importing the environment machinery.)"""

from __future__ import annotations

import re

_COMMENT = re.compile(r"(^|\s)#.*$")
_WHY = (
    "is not allowed in an environment lock (what it brings in is not part of the environment's digest); "
    "pin every requirement with --hash in the lock itself, as `modelspec env lock` does"
)


def option_lines(text: str) -> list[tuple[int, str]]:
    """(line, message) for each option in a requirements lock. `-r`, `-c`, `-e`, index and
    find-links options bring in packages or sources the lock's digest does not cover;
    only `--hash` (on a requirement) is allowed."""
    found: list[tuple[int, str]] = []
    logical = ""
    first = 0
    for number, line in enumerate(text.splitlines(), 1):
        if not logical:
            first = number
        stripped = _COMMENT.sub("", line).strip()
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        words = logical.split()
        logical = ""
        if not words:
            continue
        options = [w for w in words if w.startswith("-") and not w.startswith("--hash")]
        if words[0].startswith("-"):
            found.append((first, f"the option line `{' '.join(words)[:80]}` {_WHY}"))
        elif options:
            found.append((first, f"the option `{options[0][:80]}` {_WHY}"))
    return found
