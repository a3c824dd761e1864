"""The remote object store: its objects (store/remote_objects.py) and the batched transfers
between it and a workspace's `LocalStore` (store/remote_batches.py).

Many small objects are not one round trip each: an upload of at least `PACK_AT_LEAST`
objects under `PACK_BELOW` sends them in packs (two requests a pack), a download reads a
pack's wanted members in a few range reads. A large object (at least the local chunk layer's
threshold) travels as its recipe and the chunks the other side lacks (store/remote_chunks.py).
Uploads and downloads run `jobs` at a time; a push killed half-way leaves only whole objects,
and the next push uploads just what is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from . import remote_batches, remote_chunks
from .objects import LocalStore
from .progress import Progress
from .protocol import ObjectStore
from .remote_objects import RemoteObjects


class RemoteStore(RemoteObjects):
    """An object store on a remote (an `ObjectStore`), with the batched transfers."""

    # -- transfers with a local store ----------------------------------------------------

    def upload(
        self,
        local: LocalStore,
        digests: Iterable[str],
        *,
        jobs: int = 8,
        report: Callable[[Progress], None] | None = None,
        hold: Callable[[Iterable[str]], None] | None = None,
    ) -> Progress:
        """Send the objects the remote lacks, `jobs` at a time, each verified locally first:
        many small ones in packs (each pack's index created after it), large ones as their
        recipe and the chunks the remote lacks, the rest one by one. `hold` (a lease's `add`)
        is given the chunks before their presence is checked."""
        return remote_batches.upload(self, local, digests, jobs, report, hold)

    def download(
        self,
        local: LocalStore,
        digests: Iterable[str],
        *,
        jobs: int = 8,
        report: Callable[[Progress], None] | None = None,
        sizes: dict[str, int] | None = None,
    ) -> Progress:
        """Fetch the objects the local store lacks, each verified before it enters it; packed
        ones by range reads covering members that lie close together."""
        return remote_batches.download(self, local, digests, jobs, report, sizes)

    def verify_all(
        self, jobs: int = 8, report: Callable[[Progress], None] | None = None
    ) -> tuple[Progress, list[str], remote_chunks.Census]:
        """Re-hash every object and chunk on the remote; the corrupt ones, taken out of service
        (quarantined, or marked bad when packed) as a read would; and what was there, counted
        as objects, large objects and chunks."""
        return remote_batches.verify_all(self, jobs, report)


if TYPE_CHECKING:
    from .blobs import FileBlobs

    _conforms: ObjectStore = RemoteStore(FileBlobs(Path(), ""))
