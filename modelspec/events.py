"""Progress events: the library reports through a `Reporter`; only the CLI renders them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """`kind` is one of: resolve, env-create, env-ready, stage-start, stage-cached,
    stage-done, stage-failed, stage-skipped, warning."""

    kind: str
    node: str = ""
    data: dict[str, Any] = field(default_factory=dict)


Reporter = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """A reporter that drops every event (library calls from tests, --json runs)."""
