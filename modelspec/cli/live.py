"""A rich progress display that runs while a command works, on a terminal only."""

from __future__ import annotations

from typing import Any, Self


class LiveProgress:
    """Holds `progress` (a rich `Progress`, or None off a terminal) and shows it for as long
    as the `with` block runs; subclasses make the progress and feed it."""

    progress: Any = None

    def __enter__(self) -> Self:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
