"""A build's lease, as gc reads it: what is leased inside `holding` reaches the lease file
before the gc guard is let go (written once for the block), and at once outside one."""

from __future__ import annotations

import fcntl
from pathlib import Path

from modelspec.store.leases import Lease, live_leased
from modelspec.store.objects import Entry


def gc_could_sweep(home: Path) -> bool:
    """Whether gc would get its exclusive guard now (it reads the leases only then)."""
    with open(home / "gc.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


def test_what_is_leased_inside_holding_is_in_the_file_before_gc_can_sweep(tmp_path: Path) -> None:
    first, second, third = (Entry("file", f"blake3:{c * 64}", 0) for c in "abc")
    with Lease(tmp_path) as lease:
        lease.add([first])  # outside a hold: at once
        assert live_leased(tmp_path) == {first}
        with lease.holding():
            with lease.holding():  # nested, as a lookup inside the scheduler's settling block
                lease.add([second])
            lease.add([third])
            assert not gc_could_sweep(tmp_path)
        assert gc_could_sweep(tmp_path)
        assert live_leased(tmp_path) == {first, second, third}
    assert live_leased(tmp_path) == set()  # the build is over
