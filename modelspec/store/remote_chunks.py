"""Large objects on a remote as recipes and chunks: a push sends a file's recipe and only the
chunks the remote lacks, a pull asks only for the chunks the local store lacks.

    <remote>/recipes/<hex>             a file's size and chunk list (store/remote_recipes.py)

A chunk is named by the blake3 of its raw bytes, which is its digest as an object: on the
remote it is a content-addressed object like any other, and travels as small objects do (in
packs, store/remote_packs.py; a handful alone). Both sides cut with the local chunk layer
(store/cutting.py), so the chunks of a file's next version mostly exist already.

A recipe is created (conditionally) only after every chunk it names is on the remote, and
remote gc deletes a recipe before the chunks only it needed: a push or gc killed at any
instant never leaves a recipe naming an absent chunk. An object is on the remote when its
loose copy, a packed copy or its recipe is.

Chunks travel in packs named as chunks' (store/remote_packs.py), so that what a remote holds
is counted as objects, large objects and chunks (`Census`), and the chunks no recipe names
(a killed push's, a deleted recipe's: what remote gc reclaims) are known.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import blake3

from ..errors import CorruptObjectError, StoreError
from .progress import Progress, run_all, run_tasks
from .recipes import Recipe
from .remote_packs import Member, Run, groups, holds_chunks, read_run, runs, send_pack
from .remote_recipes import chunk_digest, chunk_of, encode, recipe_name

if TYPE_CHECKING:
    from .objects import LocalStore
    from .remote_objects import RemoteObjects


@dataclass(frozen=True, slots=True)
class Chunked:
    """A large object a push sends as chunks: its recipe, and the chunks it brings first."""

    digest: str
    recipe: Recipe
    new: tuple[tuple[bytes, int], ...]  # (chunk, raw length), the remote lacks them; first holder only


def local_recipe(local: LocalStore, digest: str) -> Recipe:
    """The object's chunk list in the local store, cut now if it is whole but not chunked
    (with the local chunk layer's cutting: both sides agree on chunks)."""
    recipe = local.chunks.recipe(digest)
    if recipe is None:
        if local.chunks.add(local.checked_path(digest), digest) != digest:
            raise StoreError(f"local object {digest} changed while it was being chunked; run `modelspec verify`")
        recipe = local.chunks.recipe(digest)
    if recipe is None:
        raise StoreError(f"object {digest} is missing from the local store", hint="build again")
    return recipe


def upload(
    remote: RemoteObjects,
    local: LocalStore,
    digests: list[str],
    jobs: int,
    progress: Progress,
    hold: Callable[[Iterable[str]], None] | None,
) -> list[str]:
    """Send the objects as recipes and the chunks the remote lacks: every chunk first (in
    packs of one object's chunks, so remote gc frees a dropped version's packs whole), then
    the recipes. `hold` leases the chunks before their presence is checked (remote gc keeps
    them until the recipes name them). Returns the objects left for the caller to send whole:
    those that could not be cut here (no room for their chunks)."""
    recipes, whole = {}, []
    for digest in digests:
        try:
            recipes[digest] = local_recipe(local, digest)
        except OSError:  # a full disk: its chunks cannot be written here, its whole copy can be sent
            whole.append(digest)
    digests = [d for d in digests if d in recipes]
    if not digests:
        return whole
    every = {chunk_digest(c) for r in recipes.values() for c, _n in r.chunks}
    if hold is not None:
        hold(every)
    absent = remote.missing_blobs(every, jobs)
    plans, claimed = [], set()
    for digest in digests:
        new = []
        for chunk, length in recipes[digest].chunks:
            if chunk_digest(chunk) in absent and chunk not in claimed:
                claimed.add(chunk)
                new.append((chunk, length))
        plans.append(Chunked(digest, recipes[digest], tuple(new)))
    sent: dict[str, int] = {}
    sent_lock = threading.Lock()

    def send_group(plan: Chunked, group: list[tuple[bytes, int]]) -> None:
        parts = [(chunk_digest(c), raw) for (c, _n), raw in zip(group, local.chunks.read_chunks(group), strict=True)]
        send_pack(remote.blobs, remote.packs, parts, chunks=True)
        size = sum(len(raw) for _d, raw in parts)
        with sent_lock:
            sent[plan.digest] = sent.get(plan.digest, 0) + size
        progress.advance(size)

    def send_all(plans: list[Chunked]) -> None:
        tasks: list[Callable[[], None]] = []
        for plan in plans:
            sized = [(c.hex(), n) for c, n in plan.new]
            for group in groups(sized) if sized else []:
                tasks.append(partial(send_group, plan, [(bytes.fromhex(h), n) for h, n in group]))
        run_tasks(tasks, jobs)

    send_all(plans)
    # A chunk found there may have been deleted since by a remote gc whose sweep began before
    # the lease was visible: look again (one listing) before any recipe names it.
    lost = remote.missing_blobs(every - absent, jobs)
    if lost:
        sizes = {c: n for r in recipes.values() for c, n in r.chunks}
        again = sorted(chunk_of(d) for d in lost)
        send_all([Chunked(plans[0].digest, plans[0].recipe, tuple((c, sizes[c]) for c in again))])

    def send_recipe(plan: Chunked) -> None:
        data = encode(plan.recipe)
        remote.blobs.create(recipe_name(plan.digest), data)
        done = sent.get(plan.digest, 0)
        progress.add(plan.recipe.size, moved=True, sent=done + len(data), advanced=done)

    run_tasks([partial(send_recipe, plan) for plan in plans], jobs)
    return whole


def download(
    remote: RemoteObjects,
    local: LocalStore,
    digests: list[str],
    jobs: int,
    progress: Progress,
) -> None:
    """Fetch the objects as chunks: their recipes, then only the chunks the local store
    lacks (range reads of packs), each checked against its name before it is kept; each
    recipe is written locally last. The whole file's blake3 is checked when it is
    reassembled (checkout)."""
    recipes = remote.recipes.get_all(digests, jobs)
    for digest in digests:
        if digest not in recipes:
            raise remote.missing_error(digest)
    owner = {c: d for d in reversed(digests) for c, _n in recipes[d].chunks}  # which object asked first
    with local.chunks.receiving() as intake:
        wanted = local.chunks.lacking(owner)
        if wanted:
            remote.packs.refresh(jobs)
        members = [m for c in sorted(wanted) if (m := remote.packs.find(chunk_digest(c))) is not None]
        loose = sorted(wanted - {chunk_of(m.digest) for m in members})
        moved: dict[str, int] = {}
        lock = threading.Lock()

        def keep(chunk: bytes, data: bytes) -> None:
            intake.add(chunk, data)
            with lock:
                moved[owner[chunk]] = moved.get(owner[chunk], 0) + len(data)

        def alone(chunk: bytes) -> None:
            digest = chunk_digest(chunk)
            try:
                data = remote.read_chunk(owner[chunk], chunk)
                keep(chunk, data)
                progress.advance(len(data))
            except StoreError as exc:
                raise type(exc)(
                    f"object {owner[chunk]} on the remote {remote.url}: its chunk {digest} is unusable: {exc.message}",
                    hint="push the object again from a workspace that has it (`modelspec push`)",
                ) from None

        def fetch_run(run: Run) -> None:
            found = read_run(remote.blobs, run) or {}
            kept = 0
            for member in run.members:
                chunk = chunk_of(member.digest)
                data = found.get(member)
                if data is not None and blake3.blake3(data).digest() == chunk:
                    keep(chunk, data)
                    kept += len(data)
                else:
                    alone(chunk)  # once more, alone: from the pack, or wherever it is now
            progress.advance(kept)  # a run at a time: a progress event per chunk would cost more than it

        run_tasks([*(partial(fetch_run, r) for r in runs(members)), *(partial(alone, c) for c in loose)], jobs)
        for digest in digests:
            intake.recipe(digest, recipes[digest])
    for digest in digests:
        progress.add(recipes[digest].size, moved=True, sent=moved.get(digest, 0), advanced=moved.get(digest, 0))


def verify_recipes(remote: RemoteObjects, loose: set[str], jobs: int, progress: Progress) -> tuple[list[str], set[str]]:
    """Check every recipe (after the chunks were re-hashed): one that is damaged, or names a
    chunk the remote no longer has (`loose`: the sound loose objects), is quarantined and
    its object returned as corrupt: the next push sends it again. Returns those, and the
    chunks the recipes name."""
    listed = sorted(remote.recipes.listed())
    progress.total += len(listed)
    packed = set(remote.packs.members())  # without the members just marked bad
    corrupt: list[str] = []
    named: set[str] = set()

    def check(digest: str) -> None:
        try:
            recipe = remote.recipes.get(digest)
        except CorruptObjectError:
            corrupt.append(digest)
            recipe = None
        chunks = {chunk_digest(c) for c, _n in recipe.chunks} if recipe is not None else set()
        named.update(chunks)
        unseen = {d for d in chunks if d not in packed and d not in loose}
        # Not seen by the listings above: perhaps pushed since (a new pack, then this recipe).
        if unseen and remote.missing_blobs(unseen):
            remote.recipes.quarantine(digest)
            corrupt.append(digest)
        progress.add(0, moved=True)

    run_all(check, listed, jobs)
    return corrupt, named


@dataclass(frozen=True, slots=True)
class Census:
    """What a remote holds, told apart: objects (loose, packed, or large ones as recipes), of
    them the large ones, and the chunks in packs (not objects: parts of the large ones, or
    of none: `orphans`)."""

    objects: int = 0
    large_objects: int = 0
    chunks: int = 0
    orphans: int = 0  # chunks no recipe names: a killed push's, a deleted recipe's (remote gc reclaims them)


def chunk_packs(packs: dict[str, tuple[Member, ...]], named: set[str]) -> set[str]:
    """Which of the packs (pack → its members) hold chunks: named so by the push that made
    them, or, made before pushes named them, holding a chunk a recipe names (a push packs
    one object's chunks alone)."""
    return {p for p, members in packs.items() if holds_chunks(p) or any(m.digest in named for m in members)}


def chunk_members(remote: RemoteObjects, named: set[str]) -> set[str]:
    """The packed members that are chunks, as of the pack catalog's last refresh (`named`:
    the chunks the recipes name)."""
    members = remote.packs.members()
    by_pack: dict[str, list[Member]] = {}
    for member in members.values():
        by_pack.setdefault(member.pack, []).append(member)
    chunky = chunk_packs({p: tuple(ms) for p, ms in by_pack.items()}, named)
    return {d for d, m in members.items() if m.pack in chunky}


def census(remote: RemoteObjects, loose: set[str], recipes: set[str], named: set[str]) -> Census:
    """Count what the remote holds as of its pack catalog's last refresh: `loose` and
    `recipes` the loose objects and the objects with a recipe, `named` the chunks those name."""
    chunks = chunk_members(remote, named)
    objects = loose | (set(remote.packs.members()) - chunks) | recipes
    return Census(len(objects), len(recipes), len(chunks), len(chunks - named))
