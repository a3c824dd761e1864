"""The chunk layer under LocalStore: packs and their index, compression only where it pays,
tensor-aware cutting of safetensors files, hot and cold objects, corrupt chunks, pruning."""

from __future__ import annotations

import json
import os
import random
import struct
from pathlib import Path

import numpy as np
import pytest

from modelspec.digest import digest_bytes
from modelspec.errors import CorruptObjectError, StoreError
from modelspec.store.chunks import ChunkPolicy
from modelspec.store.cutting import segments
from modelspec.store.objects import Entry, LocalStore
from modelspec.store.packs import RAW, ZSTD, read_index

POLICY = ChunkPolicy(threshold=64 << 10, pack_limit=1 << 20)


def _weights(rng: np.random.Generator, count: int) -> bytes:
    return (rng.standard_normal(count).astype(np.float32) * 0.02).tobytes()


def _safetensors(tensors: dict[str, bytes]) -> bytes:
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, data in tensors.items():
        header[name] = {"dtype": "F32", "shape": [len(data) // 4], "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + b"".join(tensors.values())


def _stored(store: LocalStore) -> int:
    return sum(p.stat().st_size for p in store.chunks.packs.glob("*.pack"))


def _file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_small_file_stays_a_whole_object_and_a_large_one_is_also_chunked(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store", POLICY)
    small = store.put_bytes(b"x" * 1000)
    large = store.put_bytes(random.Random(1).randbytes(300_000))
    assert not store.chunks.has(small) and store.chunks.has(large)
    assert store.is_whole(large)  # hot until gc cools it
    assert sorted(store.iter()) == sorted([small, large])


def test_packs_stay_under_their_limit_and_their_index_names_every_chunk(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store", ChunkPolicy(threshold=1, pack_limit=256 << 10))
    data = random.Random(2).randbytes(3 << 20)
    digest = store.put_bytes(data)
    packs = sorted(store.chunks.packs.glob("*.pack"))
    assert len(packs) >= 10
    recipe = store.chunks.recipe(digest)
    assert recipe is not None and recipe.size == len(data)
    indexed = {d for pack in packs for d, _w in read_index(pack)}
    assert {c for c, _n in recipe.chunks} <= indexed
    for pack in packs:
        rows = read_index(pack)
        assert sum(w.stored for _d, w in rows) < (256 << 10) + 4 * POLICY.average * 4  # limit + one chunk
        index = pack.read_bytes()[-(len(rows) * 49 + 16) :]  # its rows and footer
        assert pack.stem == digest_bytes(index).split(":")[1]  # named by its index


def test_packs_named_by_all_their_bytes_by_an_older_version_are_read_the_same(tmp_path: Path) -> None:
    # Packs were named by the blake3 of all their bytes before they were named by their index's.
    store = LocalStore(tmp_path / "store", ChunkPolicy(threshold=1, pack_limit=256 << 10, keep_whole=False))
    data = _safetensors({"w": _weights(np.random.default_rng(2), 1 << 18)}) + random.Random(2).randbytes(1 << 19)
    digest = store.put_file(_file(tmp_path, "model.safetensors", data))
    for pack in store.chunks.packs.glob("*.pack"):
        pack.rename(pack.with_name(digest_bytes(pack.read_bytes()).split(":")[1] + ".pack"))
    old = LocalStore(tmp_path / "store", ChunkPolicy(keep_whole=False))
    old.restore(Entry("file", digest, len(data)), tmp_path / "out.safetensors", link=False)
    assert (tmp_path / "out.safetensors").read_bytes() == data and old.chunks.verify(digest)


def test_chunks_are_compressed_only_when_it_saves_enough(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store", ChunkPolicy(threshold=1))
    store.put_bytes(random.Random(3).randbytes(200_000))  # incompressible
    store.put_bytes(b"a repetitive line of a log\n" * 10_000)
    codecs = {w.codec for pack in store.chunks.packs.glob("*.pack") for _d, w in read_index(pack)}
    assert codecs == {RAW, ZSTD}


def test_float_tensors_are_byte_grouped_and_compress_better(tmp_path: Path) -> None:
    weights = _weights(np.random.default_rng(4), 200_000)  # too small to be sampled for floats as plain bytes
    plain = LocalStore(tmp_path / "plain", ChunkPolicy(threshold=1))
    plain.put_file(_file(tmp_path, "w.bin", weights))
    tensors = LocalStore(tmp_path / "tensors", ChunkPolicy(threshold=1))
    digest = tensors.put_file(_file(tmp_path, "w.safetensors", _safetensors({"w": weights})))
    assert _stored(tensors) < 0.95 * _stored(plain) < len(weights)
    tensors.cool(digest)
    assert LocalStore(tmp_path / "tensors").read_bytes(digest) == _safetensors({"w": weights})


def test_safetensors_segments_follow_the_header_and_a_bad_header_is_plain_bytes() -> None:
    data = _safetensors({"a": b"\0" * 400, "b": b"\1" * 800})
    found = segments(memoryview(data), "m.safetensors")
    assert [(s.end - s.start, s.element) for s in found[1:]] == [(400, 4), (800, 4)]
    broken = struct.pack("<Q", 10**9) + data[8:]
    assert len(segments(memoryview(broken), "m.safetensors")) == 1
    assert len(segments(memoryview(b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'}" + b"\0" * 64), "a.npy")) == 2


def test_retraining_one_tensor_stores_about_that_tensor(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    layers = {f"layer{i}.weight": _weights(rng, 65_536) for i in range(8)}  # 256 KiB each
    store = LocalStore(tmp_path / "store", POLICY)
    store.put_file(_file(tmp_path, "v1.safetensors", _safetensors(layers)))
    before = _stored(store)
    layers["layer3.weight"] = _weights(rng, 65_536)
    store.put_file(_file(tmp_path, "v2.safetensors", _safetensors(layers)))
    grown = _stored(store) - before
    assert 0.8 * 256_000 < grown < 1.3 * 262_144, grown


def test_a_cold_object_is_restored_by_reassembly(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store", POLICY)
    data = random.Random(6).randbytes(1 << 20)
    digest = store.put_bytes(data)
    assert store.cool(digest) and not store.is_whole(digest) and store.has(digest)
    assert store.stat(digest) is not None and store.stat(digest).size == len(data)  # type: ignore[union-attr]
    fresh = LocalStore(tmp_path / "store", POLICY)
    fresh.restore(Entry("file", digest, len(data)), tmp_path / "out" / "model.bin")
    assert (tmp_path / "out" / "model.bin").read_bytes() == data
    assert fresh.verify(digest)


def test_a_corrupt_chunk_is_quarantined_and_the_file_reported(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store", POLICY)
    data = random.Random(7).randbytes(1 << 20)
    digest = store.put_bytes(data)
    store.cool(digest)
    pack = next(store.chunks.packs.glob("*.pack"))
    os.chmod(pack, 0o644)
    with open(pack, "r+b") as f:
        f.seek(5000)
        f.write(b"\0" * 16)
    fresh = LocalStore(tmp_path / "store", POLICY)
    assert not fresh.verify(digest)
    assert list(fresh.chunks.quarantine_dir.iterdir())  # the chunk, by chunk and pack
    assert not fresh.has(digest)  # its recipe is quarantined too: never served
    with pytest.raises(CorruptObjectError if fresh.has(digest) else Exception):
        fresh.read_bytes(digest)
    assert fresh.put_bytes(data) == digest  # writing it again repairs it
    fresh.cool(digest)
    assert LocalStore(tmp_path / "store", POLICY).read_bytes(digest) == data


def test_a_lost_chunk_is_cut_again_from_a_sound_whole_copy(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store", POLICY)
    data = random.Random(8).randbytes(1 << 20)
    digest = store.put_bytes(data)
    for pack in store.chunks.packs.glob("*.pack"):
        pack.unlink()
    fresh = LocalStore(tmp_path / "store", POLICY)
    assert not fresh.verify(digest)  # reported
    assert fresh.verify(digest)  # and repaired from the whole copy
    fresh.cool(digest)
    assert LocalStore(tmp_path / "store", POLICY).read_bytes(digest) == data


def test_pruning_removes_dead_packs_and_rewrites_mostly_dead_ones(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store", ChunkPolicy(threshold=1, pack_limit=8 << 20, keep_whole=False))
    rng = random.Random(9)
    keep, drop = rng.randbytes(200_000), rng.randbytes(1_000_000)
    gone = store.put_bytes(drop)
    kept = store.put_bytes(keep + drop[:100_000])  # shares a tenth of `drop`'s chunks
    before = _stored(store)
    predicted = store.chunks.prune(min_live=0.5, dry_run=True, gone={gone})
    assert _stored(store) == before  # a dry run changes nothing
    store.delete(gone)
    report = store.chunks.prune(min_live=0.5)
    assert (predicted.removed, predicted.freed) == (report.removed, report.freed)
    assert report.removed >= 1 and report.freed > 800_000
    assert _stored(store) < before - 800_000
    assert LocalStore(tmp_path / "store").read_bytes(kept) == keep + drop[:100_000]
    assert store.chunks.prune().removed == 0  # nothing more to do


def test_a_pack_rewritten_into_the_same_pack_is_not_removed(tmp_path: Path) -> None:
    """A wholly live pack rewritten (any live fraction under 1 asks it: its header is not
    live) is the same pack under the same name, which the rewrite must not then delete."""
    store = LocalStore(tmp_path / "store", ChunkPolicy(threshold=1, pack_limit=8 << 20, keep_whole=False))
    data = random.Random(13).randbytes(600_000)
    digest = store.put_bytes(data)
    report = store.chunks.prune(min_live=1.0)
    assert report.removed == 1 and report.written == 1
    assert LocalStore(tmp_path / "store").read_bytes(digest) == data
    assert _stored(store) > 0


def test_cooling_a_corrupt_whole_copy_quarantines_it_instead(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store", ChunkPolicy(threshold=1 << 20, pack_limit=1 << 20))
    data = random.Random(10).randbytes(2 << 20)
    digest = store.put_bytes(data)
    store.chunks.delete(digest)  # as a store made before the chunk layer: whole copy only
    path = store.path_of(digest)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.write(b"rot")
    assert not store.cool(digest)
    assert not store.has(digest) and (store.quarantine_dir / digest.split(":")[1]).exists()


def test_a_store_without_whole_copies_writes_only_new_chunks(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store", ChunkPolicy(threshold=1 << 20, keep_whole=False))
    data = random.Random(11).randbytes(4 << 20)
    first = store.put_file(_file(tmp_path, "v1.bin", data))
    packed = _stored(store)
    changed = data[:1000] + b"new" + data[1003:]
    second = store.put_file(_file(tmp_path, "v2.bin", changed))
    assert _stored(store) - packed < 200_000
    assert not store.is_whole(first) and not store.is_whole(second)
    assert [LocalStore(tmp_path / "store").read_bytes(d) for d in (first, second)] == [data, changed]


def test_pruning_at_a_live_fraction_of_zero_writes_nothing(tmp_path: Path) -> None:
    """gc's fallback on a full disk: only packs without a live chunk go, none is rewritten."""
    store = LocalStore(tmp_path / "store", ChunkPolicy(threshold=1, pack_limit=8 << 20, keep_whole=False))
    rng = random.Random(12)
    shared = rng.randbytes(300_000)
    gone = store.put_bytes(rng.randbytes(400_000))
    store.put_bytes(shared + rng.randbytes(10))
    store.put_bytes(shared[:100_000])
    store.delete(gone)
    report = store.chunks.prune(0.0)
    assert (report.removed, report.written) == (1, 0)


@pytest.mark.parametrize("kind", ["raw", "floats"])
def test_a_checkout_that_meets_a_corrupt_chunk_fails_and_leaves_no_file(tmp_path: Path, kind: str) -> None:
    # Chunks are written at their offsets on worker threads: the whole file is checked after.
    store = LocalStore(tmp_path / "store", ChunkPolicy(threshold=1, pack_limit=256 << 10, keep_whole=False))
    if kind == "raw":
        data = random.Random(11).randbytes(1 << 20)
    else:
        data = _safetensors({"w": _weights(np.random.default_rng(11), 1 << 18)})
    digest = store.put_file(_file(tmp_path, "model.safetensors", data))
    pack = max(store.chunks.packs.glob("*.pack"), key=lambda p: p.stat().st_size)
    os.chmod(pack, 0o644)
    with open(pack, "r+b") as f:
        f.seek(3000)
        flipped = bytes(b ^ 0xFF for b in f.read(8))
        f.seek(3000)
        f.write(flipped)
    fresh = LocalStore(tmp_path / "store", ChunkPolicy(keep_whole=False))
    with pytest.raises(CorruptObjectError):
        fresh.restore(Entry("file", digest, len(data)), tmp_path / "out" / "model.bin", link=False)
    assert not (tmp_path / "out" / "model.bin").exists() and not list((tmp_path / "out").iterdir())
    assert list(fresh.chunks.quarantine_dir.iterdir()) and not fresh.has(digest)


def test_a_checkout_reassembles_every_chunk_at_its_offset(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store", ChunkPolicy(threshold=1, pack_limit=256 << 10, keep_whole=False))
    rng = np.random.default_rng(12)
    data = _safetensors({f"t{i}": _weights(rng, 40_001 + i) for i in range(5)}) + b"tail" * 999
    digest = store.put_file(_file(tmp_path, "model.safetensors", data))
    assert len(list(store.chunks.packs.glob("*.pack"))) > 1  # sealed in the background, then the last
    fresh = LocalStore(tmp_path / "store", ChunkPolicy(keep_whole=False))
    fresh.restore(Entry("file", digest, len(data)), tmp_path / "a.safetensors", link=False)  # at offsets
    assert (tmp_path / "a.safetensors").read_bytes() == data
    assert fresh.read_bytes(digest) == data  # in order, into a stream
    fresh.checked_path(digest)  # made whole again (rehydrated)
    assert fresh.is_whole(digest) and fresh.path_of(digest).read_bytes() == data


@pytest.mark.parametrize("pack_limit", [256 << 10, 64 << 20])
def test_a_checkout_of_chunks_out_of_their_packs_order_reads_each_run_right(tmp_path: Path, pack_limit: int) -> None:
    # A pack's consecutive chunks are read at once. A version made of the first's chunks in
    # another order (back to an earlier place of the same pack) and of new ones breaks those
    # runs wherever they break.
    store = LocalStore(tmp_path / "store", ChunkPolicy(threshold=1, pack_limit=pack_limit, keep_whole=False))
    data = random.Random(15).randbytes(3 << 19)  # plain bytes: one segment, whatever the order
    recipe = store.chunks.recipe(store.put_file(_file(tmp_path, "v1.bin", data)))
    assert recipe is not None and len(recipe.chunks) > 40
    ends = [sum(n for _c, n in recipe.chunks[:k]) for k in range(len(recipe.chunks) + 1)]
    # FastCDC's cut after a chunk looks at the next byte: a junction where that byte is the same
    # keeps the chunk before it whole.
    a, b = next((a, b) for b in range(30, 40) for a in range(2, 20) if data[ends[a]] == data[ends[b]])
    moved = data[ends[b - 10] : ends[b]] + data[ends[a] : ends[a + 10]] + random.Random(16).randbytes(30_000)
    digest = store.put_file(_file(tmp_path, "v2.bin", moved))
    again = store.chunks.recipe(digest)
    assert again is not None and again.chunks[9:11] == [recipe.chunks[b - 1], recipe.chunks[a]]  # back, no gap
    fresh = LocalStore(tmp_path / "store", ChunkPolicy(keep_whole=False))
    fresh.restore(Entry("file", digest, len(moved)), tmp_path / "out.bin", link=False)
    assert (tmp_path / "out.bin").read_bytes() == moved and fresh.read_bytes(digest) == moved


def test_compression_resumes_after_incompressible_chunks_that_were_only_sampled(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store", ChunkPolicy(threshold=1, keep_whole=False))
    noise = random.Random(13).randbytes(4 << 20)
    text = b"a repetitive line of a log\n" * 40_000  # compressible again after the noise
    digest = store.put_file(_file(tmp_path, "mixed.bin", noise + text))
    codecs = [w.codec for pack in store.chunks.packs.glob("*.pack") for _d, w in read_index(pack)]
    assert RAW in codecs and ZSTD in codecs  # the probes find the text compressible again
    assert LocalStore(tmp_path / "store", ChunkPolicy(keep_whole=False)).read_bytes(digest) == noise + text


def test_plain_bytes_that_sample_as_floats_are_byte_grouped() -> None:
    weights = _weights(np.random.default_rng(14), 1 << 19)  # 2 MiB of float32, no format to say so
    assert segments(memoryview(weights), "model.bin")[-1].element == 4
    shifted = b"xyz" + weights  # numbers start three bytes in: those bytes are cut off first
    assert [(s.start, s.element) for s in segments(memoryview(shifted), "model.bin")] == [(0, 0), (3, 4)]
    noise = random.Random(14).randbytes(2 << 20)
    assert [s.element for s in segments(memoryview(noise), "model.bin")] == [0]


def test_chunks_received_by_name_are_kept_and_recipes_written_only_once_whole(tmp_path: Path) -> None:
    """A pull's intake: chunks in new packs, then only the recipes whose every chunk is here;
    a failure before the end writes no recipe at all (packs sealed by then keep their chunks
    for the next try, or are pruned)."""
    import blake3

    from modelspec.store.recipes import Recipe

    sender = LocalStore(tmp_path / "a", POLICY)
    sender.tmp.mkdir(parents=True)
    data = random.Random(4).randbytes(1 << 20)
    digest = sender.put_bytes(data)
    recipe = sender.chunks.recipe(digest)
    assert recipe is not None and len(recipe.chunks) > 10
    raw = list(sender.chunks.read_chunks(recipe.chunks))
    receiver = LocalStore(tmp_path / "b", POLICY)
    receiver.tmp.mkdir(parents=True)

    with pytest.raises(RuntimeError), receiver.chunks.receiving() as intake:
        for (chunk, _n), piece in zip(recipe.chunks, raw, strict=True):
            intake.add(chunk, piece)
        intake.recipe(digest, recipe)
        raise RuntimeError("killed before the packs were sealed")
    assert not receiver.has(digest)

    unknown = blake3.blake3(b"never sent").digest()
    lacking = Recipe(recipe.size + 10, [*recipe.chunks, (unknown, 10)])
    with pytest.raises(StoreError, match="arrived without all their chunks"), receiver.chunks.receiving() as intake:
        for (chunk, _n), piece in zip(recipe.chunks, raw, strict=True):
            intake.add(chunk, piece)
        intake.recipe(digest, recipe)
        intake.recipe(digest_bytes(data + b"x" * 10), lacking)
    assert receiver.has(digest) and not receiver.has(digest_bytes(data + b"x" * 10))
    assert not receiver.is_whole(digest) and receiver.read_bytes(digest) == data
    assert receiver.chunks.lacking(c for c, _n in recipe.chunks) == set()
