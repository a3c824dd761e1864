"""Chunking and reassembly on worker processes (store/forked.py) give what one thread's pass
gives: the same chunks, cut points and recipes whatever the regions the file is split into,
stored once, decoding bit for bit. The regions are made small here (a few KiB, with FastCDC's
max_size of 1 KiB) so that a small file crosses many seams."""

from __future__ import annotations

import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelspec.digest import digest_bytes
from modelspec.errors import StoreError
from modelspec.store import forked, stitching
from modelspec.store import workers as worker_side
from modelspec.store.chunks import ChunkPolicy
from modelspec.store.objects import LocalStore
from modelspec.store.packs import read_index

POLICY = ChunkPolicy(threshold=1, average=256, pack_limit=16 << 10, keep_whole=False)


@pytest.fixture(autouse=True)
def _workers_available() -> None:
    assert forked.wanted(forked.FORKED_FROM), "these tests need two cores and fork (Linux)"


def _store(root: Path, region: int | None) -> LocalStore:
    """A cold store whose large files go to worker processes in `region`-byte ranges, or to
    threads (None)."""
    forked.FORKED_FROM = 0 if region is not None else 1 << 62
    stitching.REGION = region or stitching.REGION
    forked._DECODED = region or forked._DECODED  # read back in as many regions
    return LocalStore(root, POLICY)


@pytest.fixture(autouse=True)
def _restore_settings() -> Iterator[None]:
    saved = forked.FORKED_FROM, forked._DECODED, stitching.REGION, worker_side.OWN_PACK
    yield
    forked.FORKED_FROM, forked._DECODED, stitching.REGION, worker_side.OWN_PACK = saved


def _safetensors(rng: random.Random, sizes: list[int]) -> bytes:
    header: dict[str, object] = {}
    offset = 0
    for i, size in enumerate(sizes):
        header[f"t{i}"] = {"dtype": "F32", "shape": [size // 4], "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    floats = b"".join(struct.pack(f"<{n // 4}f", *(rng.gauss(0, 0.02) for _ in range(n // 4))) for n in sizes)
    return struct.pack("<Q", len(text)) + text + floats


def _recipe(store: LocalStore, digest: str) -> list[tuple[bytes, int]]:
    recipe = store.chunks.recipe(digest)
    assert recipe is not None
    return recipe.chunks


def _checkout(store: LocalStore, digest: str, path: Path) -> bytes:
    with open(path, "w+b") as out:
        store.chunks.write_file(digest, out.fileno())
    return path.read_bytes()


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    size=st.integers(1, 60_000),
    region=st.integers(600, 9_000),
    repeats=st.booleans(),
    own_pack=st.sampled_from([1, 1 << 30]),
)
def test_workers_cut_store_and_reassemble_a_file_as_one_pass_does(
    tmp_path_factory: pytest.TempPathFactory, seed: int, size: int, region: int, repeats: bool, own_pack: int
) -> None:
    rng = random.Random(seed)
    data = rng.randbytes(size)
    if repeats:  # the same chunks again, within the file and across regions
        data = (data[: max(1, size // 5)] * 6)[:size]
    tmp = tmp_path_factory.mktemp("forked")
    one_pass = _store(tmp / "threads", None)
    expected = one_pass.put_bytes(data)
    worker_side.OWN_PACK = own_pack  # every task's new chunks in a pack of its own, or all sent back
    workers = _store(tmp / "workers", region)
    digest = workers.put_bytes(data)
    assert digest == expected == digest_bytes(data)
    assert _recipe(workers, digest) == _recipe(one_pass, digest)
    assert _checkout(workers, digest, tmp / "out") == data
    assert LocalStore(tmp / "workers", POLICY).read_bytes(digest) == data  # streamed, by workers
    forked.FORKED_FROM = 1 << 62
    assert LocalStore(tmp / "workers", POLICY).read_bytes(digest) == data  # by threads


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32), region=st.integers(600, 5_000))
def test_tensors_are_cut_at_their_boundaries_by_workers_too(
    tmp_path_factory: pytest.TempPathFactory, seed: int, region: int
) -> None:
    rng = random.Random(seed)
    data = _safetensors(rng, [rng.choice([40, 4_000, 13_000, 30_000]) for _ in range(rng.randrange(1, 6))])
    tmp = tmp_path_factory.mktemp("tensors")
    one_pass = _store(tmp / "threads", None)
    (tmp / "model.safetensors").write_bytes(data)
    expected = one_pass.put_file(tmp / "model.safetensors")
    workers = _store(tmp / "workers", region)
    digest = workers.put_file(tmp / "model.safetensors")
    assert digest == expected
    assert _recipe(workers, digest) == _recipe(one_pass, digest)
    assert _checkout(workers, digest, tmp / "out") == data


def test_a_changed_version_stores_only_its_new_chunks_in_few_packs(tmp_path: Path) -> None:
    """Changed chunks that workers send back are packed here with the rest: no pack per task."""
    rng = random.Random(5)
    data = bytearray(rng.randbytes(400_000))
    workers = _store(tmp_path / "store", 8_000)
    workers.put_bytes(bytes(data))
    packs, stored = len(list(workers.chunks.packs.glob("*.pack"))), _stored(workers)
    for at in rng.sample(range(0, len(data) - 2_000, 2_000), 10):
        data[at : at + 2_000] = rng.randbytes(2_000)
    digest = workers.put_bytes(bytes(data))
    added = _stored(workers) - stored
    assert 20_000 <= added <= 60_000, added  # the 20 kB changed, in the chunks around it
    assert len(list(workers.chunks.packs.glob("*.pack"))) - packs <= 4  # 16 KiB packs: ~3 of them
    assert _checkout(workers, digest, tmp_path / "out") == bytes(data)


def test_a_region_whose_pack_was_repacked_meanwhile_is_read_again(tmp_path: Path) -> None:
    """Packs pruned by another process between this one's look at the pack indexes and its
    workers' reads: the regions the workers cannot read are decoded here, looking again."""
    rng = random.Random(9)
    first = rng.randbytes(300_000)
    second = first[:150_000] + rng.randbytes(150_000)
    stale = _store(tmp_path / "store", 5_000)
    gone, kept = stale.put_bytes(first), stale.put_bytes(second)
    other = LocalStore(tmp_path / "store", POLICY)
    other.delete(gone)
    assert other.chunks.prune(min_live=1.0).removed  # packs the stale map names are gone
    look = stale.chunks.refresh

    def first_look_before_the_prune() -> Callable[[], None]:
        looked = False

        def refresh() -> None:
            nonlocal looked
            if looked:
                look()
            looked = True

        return refresh

    stale.chunks.refresh = first_look_before_the_prune()  # type: ignore[method-assign]
    assert _checkout(stale, kept, tmp_path / "out") == second
    stale.chunks.refresh = first_look_before_the_prune()  # type: ignore[method-assign]
    assert stale.read_bytes(kept) == second


def test_a_corrupt_chunk_fails_a_checkout_by_workers_and_is_quarantined(tmp_path: Path) -> None:
    data = random.Random(6).randbytes(200_000)
    workers = _store(tmp_path / "store", 5_000)
    digest = workers.put_bytes(data)
    pack = max(workers.chunks.packs.glob("*.pack"), key=lambda p: p.stat().st_size)
    (_chunk, where) = read_index(pack)[3]
    pack.chmod(0o644)
    with open(pack, "r+b") as f:
        f.seek(where.offset + 10)
        byte = f.read(1)
        f.seek(where.offset + 10)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(Exception, match="corrupt"):
        _checkout(LocalStore(tmp_path / "store", POLICY), digest, tmp_path / "out")
    assert LocalStore(tmp_path / "store", POLICY).verify(digest) is not True


def _die(*args: object) -> None:
    """A worker killed in the middle of a task (by the OOM killer, a `kill -9`)."""
    os._exit(9)


def test_a_worker_that_dies_fails_the_command_clearly_and_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = random.Random(10).randbytes(200_000)
    store = _store(tmp_path / "store", 5_000)
    kept = store.put_bytes(data[:100_000])
    with monkeypatch.context() as patched:
        patched.setattr(forked, "cut_and_encode", _die)
        with pytest.raises(StoreError, match="worker process of the chunk layer died"):
            store.put_bytes(data)
        assert [p.name for p in store.tmp.iterdir() if not p.name.endswith(".owner")] == []
        assert not store.chunks.has(digest_bytes(data))  # no recipe: the object stays whole, as stored first
    with monkeypatch.context() as patched:
        patched.setattr(forked, "decode", _die)
        with pytest.raises(StoreError, match="worker process of the chunk layer died"):
            store.read_bytes(kept)
    assert store.read_bytes(kept) == data[:100_000]  # the store is as it was
    assert store.read_bytes(store.put_bytes(data)) == data


def _stored(store: LocalStore) -> int:
    return sum(p.stat().st_size for p in store.chunks.packs.glob("*.pack"))


KILLED = """
import sys
from pathlib import Path
from modelspec.store import forked, stitching
from modelspec.store import workers as worker_side
from modelspec.store.chunks import ChunkPolicy
from modelspec.store.objects import LocalStore

forked.FORKED_FROM, stitching.REGION = 0, 64 << 10
store = LocalStore(Path(sys.argv[1]), ChunkPolicy(threshold=1, average=256, keep_whole=False))
print("ready", flush=True)
while True:
    store.put_file(Path(sys.argv[2]))  # the same file again and again: cut, hashed, known
"""


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    source = tmp_path / "model.bin"
    source.write_bytes(random.Random(8).randbytes(8 << 20))
    with subprocess.Popen(
        [sys.executable, "-c", KILLED, str(tmp_path / "store"), str(source)], stdout=subprocess.PIPE, text=True
    ) as parent:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        while not (workers := _children(parent.pid)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert workers, "the parent forked no workers"
        parent.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers), "a worker outlived its killed parent"
