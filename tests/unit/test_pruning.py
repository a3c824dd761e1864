"""The plan of pruning the chunk layer's packs (store/pruning.py), on values: which packs go,
which live chunks are copied out of them first, and the bytes freed."""

from __future__ import annotations

from modelspec.store.packs import Located
from modelspec.store.pruning import PackRows, PrunePlan, plan_prune


def chunk(n: int) -> bytes:
    return bytes([n]) * 32


def pack(name: str, sizes: dict[int, int], overhead: int = 0) -> PackRows:
    """A pack holding chunk n with the stored size given, in order, and `overhead` bytes more."""
    rows, offset = [], 0
    for n, size in sizes.items():
        rows.append((chunk(n), Located(name, offset, size, size, 0)))
        offset += size
    return PackRows(name, offset + overhead, tuple(rows))


def test_a_pack_no_live_chunk_is_in_goes_whole_and_frees_its_size() -> None:
    plan = plan_prune([pack("a", {1: 100, 2: 100}), pack("b", {3: 100})], {chunk(3)}, set(), 0.5)
    assert plan == PrunePlan(("a",), (), 200)


def test_a_pack_mostly_dead_is_rewritten_with_its_live_chunks_and_a_mostly_live_one_stays() -> None:
    a, b = pack("a", {1: 100, 2: 300}), pack("b", {3: 300, 4: 100})
    plan = plan_prune([b, a], {chunk(1), chunk(3)}, set(), 0.5)
    assert plan.old == ("a",) and plan.copies == (a.rows[0],) and plan.freed == 300
    assert plan_prune([a, b], {chunk(1), chunk(3)}, set(), 0.0).old == ()  # min_live 0: only dead packs go


def test_a_chunk_is_copied_once_and_never_when_a_pack_before_it_that_stays_holds_it() -> None:
    kept = pack("a", {1: 100, 5: 10})  # mostly live: stays, and holds chunk 1
    dying = [pack("b", {1: 10, 2: 10, 9: 500}), pack("c", {2: 10, 3: 10, 9: 500})]
    plan = plan_prune([kept, *dying], {chunk(1), chunk(2), chunk(3), chunk(5)}, set(), 0.5)
    assert plan.old == ("b", "c")
    assert [c for c, _w in plan.copies] == [chunk(2), chunk(3)]  # 1 is in a, 2 copied from b only
    assert [w.pack for _c, w in plan.copies] == ["b", "c"]
    assert plan.freed == (520 - 20) + (520 - 20)


def test_a_chunk_quarantined_in_a_pack_is_not_live_there() -> None:
    a = pack("a", {1: 100, 2: 100})
    plan = plan_prune([a], {chunk(1), chunk(2)}, {(chunk(2).hex(), "a")}, 0.6)
    assert plan.old == ("a",) and plan.copies == (a.rows[0],) and plan.freed == 100
    assert plan_prune([a], {chunk(1), chunk(2)}, set(), 0.6).old == ()
