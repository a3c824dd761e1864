"""A transfer's progress, and its parallel work: what push, fetch and verify of a remote
report as they go (`Progress`) and how they run their requests `jobs` at a time (`run_all`).
Below the modules that move loose objects, packs and chunks, which all use them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass
class Progress:
    """What a transfer has done so far; `report` is called after each object (thread-safe)."""

    total: int
    total_bytes: int
    report: Callable[[Progress], None] | None = None
    done: int = 0
    bytes: int = 0
    transferred: int = 0  # objects actually sent or received (the rest were already there)
    moved_bytes: int = 0  # their bytes
    present: set[str] = field(default_factory=set)  # found there already (not sent)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, size: int, *, moved: bool, sent: int | None = None, advanced: int = 0) -> None:
        """One object done; `sent`: the bytes that moved, when not its size (a chunked one);
        `advanced`: of its size, what `advance` already counted."""
        with self._lock:
            self.done += 1
            self.bytes += size - advanced
            self.transferred += int(moved)
            self.moved_bytes += (size if sent is None else sent) if moved else 0
            if self.report is not None:
                self.report(self)

    def advance(self, size: int) -> None:
        """Bytes of an object still under way (a large one's chunks): a progress bar moves."""
        with self._lock:
            self.bytes += size
            if self.report is not None:
                self.report(self)


def run_tasks(tasks: list[Callable[[], None]], jobs: int) -> None:
    run_all(lambda task: task(), tasks, jobs)


def run_all(work: Callable[[T], None], items: list[T], jobs: int) -> None:
    """Run `work` on every item, `jobs` at a time; the first failure is raised once the
    running ones finish (nothing half-done: each item is all or nothing)."""
    if not items:
        return
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        futures = [pool.submit(work, item) for item in items]
        for future in futures:
            error = future.exception()
            if error is not None:
                for pending in futures:
                    pending.cancel()
                raise error
