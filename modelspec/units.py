"""Durations and sizes as people write them in specs and the workspace file: `90d`, `30m`,
`512M`, `4GiB`. Pure functions."""

from __future__ import annotations

import re

from .errors import UsageError

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"^(\d+)\s*([KMGT]?)(i?B)?$", re.IGNORECASE)
_BYTES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

DURATION_PATTERN = r"^[0-9]+[smhdw]$"
SIZE_PATTERN = r"^[0-9]+ *([KMGTkmgt]i?[Bb]?|[Bb])?$"


def parse_duration(text: str) -> float:
    """Seconds in `90d`, `12h`, `2w`, `30m` or `45s`."""
    match = _DURATION.match(str(text).strip())
    if match is None:
        raise UsageError(f"{text!r} is not a duration", hint="write e.g. 90d, 12h, 2w or 30m")
    return int(match.group(1)) * _SECONDS[match.group(2)]


def parse_size(text: str | int) -> int:
    """Bytes in `512M`, `4G`, `4GiB` or a plain number of bytes (units are powers of 1024)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    match = _SIZE.match(str(text).strip())
    if match is None:
        raise UsageError(f"{text!r} is not a size", hint="write e.g. 512M, 4G or 2GiB")
    return int(match.group(1)) * _BYTES[match.group(2).upper()]
