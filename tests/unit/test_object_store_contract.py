"""The `ObjectStore` protocol's promises, checked against every implementation.

Each implementation is one parameter of the `backend` fixture: a store, a way to open a
fresh view of the same objects (what another process sees), and a way to damage an
object's bytes behind the store's back. The remote store runs them over a shared
directory (`file://`) and over a real S3 server (moto, on loopback).
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelspec.digest import digest_bytes
from modelspec.errors import CorruptObjectError, StoreError
from modelspec.store.blobs import RemoteConfig, open_blobs
from modelspec.store.objects import ChunkPolicy, Entry, LocalStore
from modelspec.store.protocol import ObjectStore
from modelspec.store.remote import RemoteStore
from modelspec.store.remote_objects import object_name

DATA = b"the bytes of an artifact\n"


@dataclass(frozen=True)
class Backend:
    store: ObjectStore
    fresh: Callable[[], ObjectStore]  # another view of the same objects, which has verified nothing yet
    corrupt: Callable[[str], None]  # replace an object's bytes behind the store's back


def _local(tmp_path: Path) -> Backend:
    root = tmp_path / "store"

    def corrupt(digest: str) -> None:
        path = LocalStore(root).path_of(digest)
        os.chmod(path, 0o644)
        path.write_bytes(b"not what the digest says\n")

    return Backend(LocalStore(root), lambda: LocalStore(root), corrupt)


def _local_cold(tmp_path: Path) -> Backend:
    """A local store that keeps every object as chunks only (a cold version's objects): each
    object is cut (tiny chunks, so a tree document spans several), packed, and its whole copy
    removed; reading it reassembles it. `corrupt` damages the bytes of a chunk in its pack."""
    root = tmp_path / "store"
    policy = ChunkPolicy(threshold=1, average=256, keep_whole=False)

    def corrupt(digest: str) -> None:
        store = LocalStore(root, policy)
        store.cool(digest)  # read since: whole again, until cooled
        recipe = store.chunks.recipe(digest)
        assert recipe is not None
        store.chunks.refresh()
        where = store.chunks.map.located[recipe.chunks[0][0]]
        pack = store.chunks.packs / f"{where.pack}.pack"
        os.chmod(pack, 0o644)
        with open(pack, "r+b") as f:
            f.seek(where.offset)
            flipped = bytes(255 - b for b in f.read(where.stored))
            f.seek(where.offset)
            f.write(flipped)

    return Backend(LocalStore(root, policy), lambda: LocalStore(root, policy), corrupt)


def _remote_file(tmp_path: Path) -> Backend:
    root = tmp_path / "shared"
    config = RemoteConfig(root.as_uri())

    def corrupt(digest: str) -> None:
        path = root / object_name(digest)
        path.unlink()
        path.write_bytes(b"not what the digest says\n")

    return Backend(RemoteStore(open_blobs(config)), lambda: RemoteStore(open_blobs(config)), corrupt)


def _remote_s3(tmp_path: Path, endpoint: str = "", bucket: str = "") -> Backend:
    config = RemoteConfig(f"s3://{bucket}/team/models", endpoint=endpoint)
    blobs = open_blobs(config)

    def corrupt(digest: str) -> None:
        blobs.replace(object_name(digest), b"not what the digest says\n")

    return Backend(RemoteStore(blobs), lambda: RemoteStore(open_blobs(config)), corrupt)


BACKENDS: dict[str, Callable[..., Backend]] = {
    "local": _local,
    "local-cold": _local_cold,
    "remote-file": _remote_file,
    "remote-s3": _remote_s3,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "remote-s3":  # a real S3 server (moto) on loopback, a bucket of its own
        endpoint = request.getfixturevalue("s3_endpoint")
        return _remote_s3(tmp_path, endpoint, request.getfixturevalue("s3_bucket"))
    return BACKENDS[request.param](tmp_path)


def _tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"a\n")
    (root / "sub" / "b.bin").write_bytes(bytes(range(256)))
    (root / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    return root


def test_it_is_an_object_store(backend: Backend) -> None:
    assert isinstance(backend.store, ObjectStore)


def test_bytes_are_stored_under_their_digest_and_read_back(backend: Backend) -> None:
    store = backend.store
    assert not store.has(digest_bytes(DATA))
    digest = store.put_bytes(DATA)
    assert digest == digest_bytes(DATA)
    assert store.has(digest) and backend.fresh().has(digest)
    assert store.read_bytes(digest) == DATA
    with store.open(digest) as handle:
        assert handle.read() == DATA
    assert store.verify(digest)
    assert list(store.iter()) == [digest]


def test_writing_an_object_again_changes_nothing(backend: Backend) -> None:
    digest = backend.store.put_bytes(DATA)
    assert backend.fresh().put_bytes(DATA) == digest
    assert backend.store.read_bytes(digest) == DATA
    assert list(backend.store.iter()) == [digest]


def test_a_missing_object_is_a_store_error_with_a_hint(backend: Backend) -> None:
    store = backend.store
    digest = digest_bytes(b"never stored")
    tree = Entry("tree", digest, 0)
    reads: list[Callable[[], object]] = [
        lambda: store.read_bytes(digest),
        lambda: store.open(digest),
        lambda: store.read_tree(digest),
        lambda: list(store.tree_objects(tree)),
    ]
    for read in reads:
        with pytest.raises(StoreError) as caught:
            read()
        assert caught.value.hint
    assert not store.verify(digest)
    store.delete(digest)  # already gone: not an error


def test_stat_gives_an_objects_size_and_when_it_was_stored(backend: Backend) -> None:
    before = time.time()
    digest = backend.store.put_bytes(DATA)
    info = backend.fresh().stat(digest)
    assert info is not None and info.size == len(DATA)
    assert before - 2 <= info.stored_at <= time.time() + 2  # a remote's clock may differ a little
    assert backend.store.stat(digest_bytes(b"never stored")) is None


def test_a_deleted_object_is_gone(backend: Backend) -> None:
    digest = backend.store.put_bytes(DATA)
    backend.store.delete(digest)
    assert not backend.store.has(digest)
    assert backend.store.stat(digest) is None
    assert list(backend.store.iter()) == []
    with pytest.raises(StoreError):
        backend.fresh().read_bytes(digest)


def test_a_file_is_copied_in_unless_it_is_moved(backend: Backend, tmp_path: Path) -> None:
    source = tmp_path / "file"
    source.write_bytes(DATA)
    assert backend.store.put_file(source) == digest_bytes(DATA)
    assert source.read_bytes() == DATA  # a copy: the user's file stays theirs
    moved = tmp_path / "ours"
    moved.write_bytes(b"scratch output\n")
    digest = backend.store.put_file(moved, move=True)
    assert not moved.exists()
    assert backend.store.read_bytes(digest) == b"scratch output\n"


def test_a_file_that_is_not_what_the_caller_said_is_refused(backend: Backend, tmp_path: Path) -> None:
    source = tmp_path / "file"
    source.write_bytes(b"edited since it was locked\n")
    claimed = digest_bytes(DATA)
    with pytest.raises(StoreError):
        backend.store.put_file(source, digest=claimed)
    assert not backend.store.has(claimed)


def test_a_tree_is_stored_listed_and_restored_read_only(backend: Backend, tmp_path: Path) -> None:
    store = backend.store
    entry = store.put_path(_tree(tmp_path / "src"))
    assert entry.type == "tree" and entry.size == 2 + 256 + len(b"#!/bin/sh\necho hi\n")
    assert set(store.read_tree(entry.digest)) == {"a.txt", "sub", "run.sh"}
    objects = list(store.tree_objects(entry))
    assert objects[0] == entry.digest
    assert digest_bytes(b"a\n") in objects and digest_bytes(bytes(range(256))) in objects
    assert all(store.has(d) for d in objects)

    dest = tmp_path / "restored"
    backend.fresh().restore(entry, dest, link=False)
    assert (dest / "sub" / "b.bin").read_bytes() == bytes(range(256))
    assert (dest / "a.txt").stat().st_nlink == 1  # a copy, independent of the store
    assert not (dest / "a.txt").stat().st_mode & stat.S_IWUSR
    assert (dest / "run.sh").stat().st_mode & stat.S_IXUSR


def test_a_file_entry_is_restored(backend: Backend, tmp_path: Path) -> None:
    source = tmp_path / "file"
    source.write_bytes(DATA)
    entry = backend.store.put_path(source)
    assert entry == Entry("file", digest_bytes(DATA), len(DATA))
    backend.store.restore(entry, tmp_path / "out" / "copy", link=False)
    assert (tmp_path / "out" / "copy").read_bytes() == DATA


def test_symlinks_are_refused(backend: Backend, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "link").symlink_to("/etc/hostname")
    with pytest.raises(StoreError):
        backend.store.put_path(tmp_path / "src")


def test_a_corrupt_object_is_never_handed_out(backend: Backend, tmp_path: Path) -> None:
    digest = backend.store.put_bytes(DATA)
    backend.corrupt(digest)
    with pytest.raises(CorruptObjectError):
        backend.store.read_bytes(digest)
    with pytest.raises(StoreError):  # no longer served: missing, or corrupt again
        backend.fresh().read_bytes(digest)


def test_open_and_restore_verify_what_they_hand_out(backend: Backend, tmp_path: Path) -> None:
    source = tmp_path / "file"
    source.write_bytes(DATA)
    entry = backend.store.put_path(source)
    backend.corrupt(entry.digest)
    with pytest.raises(CorruptObjectError):
        backend.fresh().open(entry.digest)
    backend.store.put_bytes(DATA)  # repaired by writing it again
    backend.corrupt(entry.digest)
    with pytest.raises(CorruptObjectError):
        backend.fresh().restore(entry, tmp_path / "out", link=False)


def test_verify_finds_a_corrupt_object_and_writing_it_again_repairs_it(backend: Backend) -> None:
    digest = backend.store.put_bytes(DATA)
    backend.corrupt(digest)
    assert not backend.fresh().verify(digest)
    assert not backend.fresh().verify(digest)  # still not served after the first check
    assert backend.fresh().put_bytes(DATA) == digest
    assert backend.fresh().read_bytes(digest) == DATA
