"""The web view's audit verdict: `audit --verify` run at most once per AUDIT_KEPT seconds
and per audit head, shared by every request of the audit page.

Apart from the routes (`app.py`) because it is state kept between requests, with its own
lock and background warm-up, where every route is otherwise a function of its request.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from typing import Any

log = logging.getLogger("modelspec.web")

AUDIT_KEPT = 600.0  # seconds an audit verdict is shown without verifying again


class AuditCheck:
    """`audit --verify`'s verdict, kept while the log's newest event stays the same, for
    AUDIT_KEPT seconds at most: replaying 100,000 events takes seconds. A new event is
    verified at once; an edit of the tables behind modelspec's back is found at the next
    verification (at most AUDIT_KEPT later, or at once with `?fresh=true`)."""

    def __init__(self, catalog: Any) -> None:
        self.catalog = catalog
        self.lock = threading.Lock()  # one verification at a time; the others wait for it
        self.head: tuple[int, str] | None = None
        self.found: dict[str, Any] | None = None

    def warm(self) -> None:
        """The first verdict, in the background: a failure is the audit page's to report."""
        try:
            self.verdict()
        except Exception:  # the registry went away under us, say: the page will say so
            log.warning("verifying the audit log failed", exc_info=True)

    def verdict(self, fresh: bool = False) -> dict[str, Any]:
        """{ok, problem, problems, checked (when), events (how many were replayed), seconds};
        `fresh`: verified now, whatever was kept."""
        newest = self.catalog.audit(False, 1)["events"]
        head = (newest[-1]["seq"], newest[-1]["digest"]) if newest else (0, "")
        with self.lock:
            now = datetime.datetime.now(datetime.UTC).timestamp()
            if fresh or self.found is None or self.head != head or now - self.found["checked"] > AUDIT_KEPT:
                started = time.perf_counter()
                found = self.catalog.audit(True, 1)
                seconds = time.perf_counter() - started
                self.found = {**{k: found[k] for k in ("ok", "problem", "problems", "checkpoint")}, "checked": now,
                              "events": head[0], "seconds": seconds}  # fmt: skip
                self.head = head
            return dict(self.found)
