"""The local object store read by one process while another writes or removes objects.

A reader must never fail with anything but a located store error: an object written by a
concurrent builder is read, one removed by a concurrent gc is "missing" (with what to do),
never an AssertionError or a bare FileNotFoundError.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from modelspec.digest import digest_bytes
from modelspec.errors import CorruptObjectError, StoreError
from modelspec.store.objects import LocalStore

DATA = b"the bytes of an artifact\n"


class LateWriterStore(LocalStore):
    """Another process's write of the object lands whenever this store asks whether it
    has it (the instant a look-then-read reader is exposed)."""

    def has(self, digest: str) -> bool:
        present = super().has(digest)
        LocalStore(self.root).put_bytes(DATA)
        return present


class EagerGcStore(LocalStore):
    """Another process's gc removes the object whenever this store asks whether it has it."""

    def has(self, digest: str) -> bool:
        present = super().has(digest)
        LocalStore(self.root).delete(digest)
        return present


def outcome(read: Callable[[str], bytes], digest: str) -> bytes | str:
    """What a reader got: the bytes, or "missing" (a located store error); anything else raises."""
    try:
        return read(digest)
    except StoreError as exc:
        assert type(exc) is StoreError and "is missing from the store" in exc.message and exc.hint
        return "missing"


def test_an_object_is_read_back_checked(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    digest = store.put_bytes(DATA)
    assert store.read_bytes(digest) == DATA
    with store.open(digest) as handle:
        assert handle.read() == DATA


def test_a_missing_object_is_a_store_error_saying_what_to_do(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    digest = digest_bytes(DATA)
    for read in (store.read_bytes, store.checked_path, store.open):
        with pytest.raises(StoreError, match="is missing from the store") as caught:
            read(digest)
        assert type(caught.value) is StoreError  # missing, not corrupt
        assert "build again" in caught.value.hint
    assert not store.verify(digest)


def test_an_object_written_concurrently_while_reading_is_either_read_or_missing(tmp_path: Path) -> None:
    store = LateWriterStore(tmp_path)
    digest = digest_bytes(DATA)
    assert outcome(store.read_bytes, digest) in (DATA, "missing")  # never AssertionError("unreachable")


def test_an_object_removed_concurrently_while_reading_is_either_read_or_missing(tmp_path: Path) -> None:
    store = EagerGcStore(tmp_path)
    digest = LocalStore(tmp_path).put_bytes(DATA)
    assert outcome(store.read_bytes, digest) in (DATA, "missing")  # never a bare FileNotFoundError


def test_readers_racing_a_writer_and_a_gc_see_the_bytes_or_missing(tmp_path: Path) -> None:
    """Real threads: one writes and removes the object in a loop, another reads it."""
    digest = digest_bytes(DATA)
    done = threading.Event()

    def churn() -> None:
        other = LocalStore(tmp_path)
        other.tmp.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            other.put_bytes(DATA)
            other.delete(digest)
        done.set()

    writer = threading.Thread(target=churn)
    writer.start()
    seen: set[bytes | str] = set()
    reader = LocalStore(tmp_path)
    while not done.is_set():
        seen.add(outcome(reader.read_bytes, digest))
    writer.join()
    assert seen <= {DATA, "missing"}


def test_an_object_removed_after_its_check_is_missing_when_opened(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    digest = store.put_bytes(DATA)
    store.checked_path(digest)  # verified once in this process: not hashed again
    LocalStore(tmp_path).delete(digest)
    with pytest.raises(StoreError, match="is missing from the store"):
        store.open(digest)


def test_a_corrupt_object_is_quarantined_not_called_missing(tmp_path: Path) -> None:
    digest = digest_bytes(DATA)
    path = LocalStore(tmp_path).path_of(digest)
    for read in (LocalStore(tmp_path).read_bytes, LocalStore(tmp_path).checked_path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"flipped")
        with pytest.raises(CorruptObjectError, match="corrupt and was quarantined"):
            read(digest)
        assert not path.exists()
        assert (tmp_path / "quarantine" / path.name).read_bytes() == b"flipped"


def test_deferred_objects_are_readable_at_once_and_synced_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside `deferring_sync` a commit waits for no disk; `sync` then fsyncs every file
    committed since, and each folder once, and the block's end syncs what is left."""
    store = LocalStore(tmp_path / "store")
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    with store.deferring_sync():
        first = store.put_bytes(b"one\n")
        second = store.put_bytes(b"two\n")
        assert synced == [] and store.read_bytes(first) == b"one\n"
        store.sync()
        files = {str(store.path_of(first)), str(store.path_of(second))}
        folders = {str(store.path_of(first).parent), str(store.path_of(second).parent)}
        assert set(synced) == files | folders and len(synced) == len(files | folders)
        synced.clear()
        third = store.put_bytes(b"three\n")
        assert synced == []
    assert str(store.path_of(third)) in synced
    synced.clear()
    store.put_bytes(b"four\n")  # outside the block: durable before it returns
    assert len(synced) == 2


def test_an_action_cache_index_that_cannot_be_written_fails_nothing(tmp_path: Path) -> None:
    """The index is only a faster way to the same entries: a full or read-only disk at the end
    of a build (the test_disk trial hit ENOSPC there) must not fail the build."""
    from modelspec.store.traces import ActionCache, ActionResult

    cache = ActionCache(tmp_path / "ac")
    result = ActionResult("blake3:" + "a" * 64, "s:x", {}, digest_bytes(b"log"), 0, 0.0, 1.0, True)
    cache.put(result)
    (tmp_path / "ac" / "index").write_text("not a directory")  # the index's folder cannot be made
    cache.write_index(digest_bytes(b"targets"))  # no error
    assert ActionCache(tmp_path / "ac").get(result.key) == result
