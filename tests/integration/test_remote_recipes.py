"""What a remote holds of large objects, read well: verifying a large object on the remote
holds none of it whole."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from test_remote_chunks import SIZE, stored, versions

from modelspec.store.blobs import RemoteConfig, open_blobs
from modelspec.store.objects import LocalStore
from modelspec.store.remote import RemoteStore


def test_verifying_a_large_object_on_the_remote_holds_none_of_it_whole(tmp_path: Path) -> None:
    local = LocalStore(tmp_path / "a")
    digests = stored(local, tmp_path, versions(2, seed=31))
    shared = (tmp_path / "shared").as_uri()
    RemoteStore(open_blobs(RemoteConfig(shared))).upload(local, digests)
    whole = LocalStore(tmp_path / "w", None)  # a remote holding a large object whole, as before chunks travelled
    (loose,) = stored(whole, tmp_path, versions(1, seed=37))
    remote = RemoteStore(open_blobs(RemoteConfig(shared)))
    remote.put_loose(loose, whole.checked_path(loose))
    for digest in [*digests, loose]:
        tracemalloc.start()
        try:
            assert remote.verify(digest)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < SIZE, (digest, peak)  # before: the object whole, and a copy of it
