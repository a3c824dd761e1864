"""How far one stage may go: wall time, memory, processes and the size of its /tmp.

A stage's own `timeout:` and `limits:` win over the workspace file's `limits:`, which win
over the defaults below. Limits are not part of the action key: they decide whether a run
is allowed to finish, never what it produces.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..units import parse_duration, parse_size

LIMIT_KEYS = ("timeout", "memory", "processes", "tmp")
# Generous enough for training a real model; small enough that a runaway stage cannot take
# the machine: `sleep 100000` ends, a fork bomb stops, /tmp (in RAM) cannot eat the memory.
DEFAULTS: Mapping[str, Any] = {"timeout": "24h", "memory": None, "processes": 4096, "tmp": "2G"}


@dataclass(frozen=True, slots=True)
class Limits:
    timeout: float | None = None  # seconds of wall time
    memory: int | None = None  # bytes of address space
    processes: int | None = None  # processes and threads of the user running the stage
    tmp: int | None = None  # bytes of /tmp

    def describe(self, name: str) -> str:
        """`memory = 512M`, for messages."""
        value = getattr(self, name)
        if name == "timeout":
            return f"timeout = {value:g} s"
        return f"{name} = {_bytes(value) if name in ('memory', 'tmp') else value}"


NO_LIMITS = Limits()


def effective_limits(stage: Mapping[str, Any] | None, workspace: Mapping[str, Any] | None) -> Limits:
    """The limits a stage runs under; each value already validated by the schemas."""
    merged = {**DEFAULTS, **(workspace or {}), **(stage or {})}
    return Limits(
        timeout=parse_duration(merged["timeout"]) if merged["timeout"] else None,
        memory=parse_size(merged["memory"]) if merged["memory"] else None,
        processes=int(merged["processes"]) if merged["processes"] else None,
        tmp=parse_size(merged["tmp"]) if merged["tmp"] else None,
    )


def _bytes(value: int) -> str:
    for unit, size in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if value >= size and value % size == 0:
            return f"{value // size}{unit}"
    return f"{value} B"
