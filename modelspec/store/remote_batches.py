"""Batched transfers between a workspace's `LocalStore` and a remote (`RemoteObjects`): upload (small
objects in packs, large ones as recipes and chunks, the rest one by one), download (packed
members a range read per run of members that lie close together; chunked objects as the
chunks the local store lacks), and the re-hash of everything on the remote. Each runs
`jobs` requests at a time and verifies every object before it is sent or kept."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

from ..digest import digest_bytes
from ..errors import CorruptObjectError, StoreError
from . import remote_chunks
from .objects import LocalStore
from .progress import Progress, run_tasks
from .remote_objects import SMALL, RemoteObjects
from .remote_packs import PACK_AT_LEAST, PACK_BELOW, Run, groups, read_run, runs, send_pack


def upload(
    remote: RemoteObjects,
    local: LocalStore,
    digests: Iterable[str],
    jobs: int,
    report: Callable[[Progress], None] | None,
    hold: Callable[[Iterable[str]], None] | None = None,
) -> Progress:
    wanted = sorted(set(digests))
    absent = remote.missing(wanted, jobs)
    # What the remote has may be absent here (held there: store/held.py); what it lacks must be here.
    sizes = {d: _local_size(local, d, required=d in absent) for d in wanted}
    progress = Progress(len(wanted), sum(sizes.values()), report)
    progress.present = set(wanted) - absent
    for digest in wanted:
        if digest not in absent:
            progress.add(sizes[digest], moved=False)
    threshold = local.chunking.threshold if local.chunking is not None else None
    chunked = sorted(d for d in absent if threshold is not None and sizes[d] >= threshold)
    absent -= set(chunked)
    small = [(d, sizes[d]) for d in sorted(absent) if sizes[d] < PACK_BELOW]
    packed = groups(small) if len(small) >= PACK_AT_LEAST else []
    loose = sorted(absent - {d for d, _size in small}) if packed else sorted(absent)

    def checked_bytes(digest: str) -> bytes:
        data = local.checked_path(digest).read_bytes()  # never upload a corrupt local object
        if digest_bytes(data) != digest:  # changed since it was checked: refuse
            raise CorruptObjectError(f"local object {digest} changed while it was being uploaded")
        return data

    def send(digest: str) -> None:
        big = sizes[digest] > SMALL
        remote.put_loose(digest, local.checked_path(digest) if big else checked_bytes(digest))
        progress.add(sizes[digest], moved=True)

    def send_group(group: list[tuple[str, int]]) -> None:
        send_pack(remote.blobs, remote.packs, [(d, checked_bytes(d)) for d, _size in group])
        for _digest, size in group:
            progress.add(size, moved=True)

    if chunked:  # first: one that cannot be cut here is sent whole with the loose ones
        loose += remote_chunks.upload(remote, local, chunked, jobs, progress, hold)
    run_tasks([*(partial(send_group, g) for g in packed), *(partial(send, d) for d in loose)], jobs)
    return progress


def download(
    remote: RemoteObjects,
    local: LocalStore,
    digests: Iterable[str],
    jobs: int,
    report: Callable[[Progress], None] | None,
    sizes: dict[str, int] | None,
) -> Progress:
    wanted = sorted(set(digests))
    absent = [d for d in wanted if not local.has(d)]
    progress = Progress(len(wanted), sum((sizes or {}).get(d, 0) for d in wanted), report)
    for _digest in wanted[: len(wanted) - len(absent)]:
        progress.add(0, moved=False)
    if absent:
        remote.packs.refresh(jobs)
    members = [m for m in map(remote.packs.find, absent) if m is not None]
    loose = set(absent) - {m.digest for m in members}
    chunked = sorted(remote.recipes.present(loose, jobs))  # a recipe is cheaper than a whole copy
    loose = loose - set(chunked)

    def fetch(digest: str) -> None:
        progress.add(remote.fetch_into(local, digest), moved=True)

    def fetch_run(run: Run) -> None:
        found = read_run(remote.blobs, run) or {}
        failed: list[StoreError] = []
        for member in run.members:
            data = found.get(member)
            if data is not None and digest_bytes(data) == member.digest:
                local.put_bytes(data)
                progress.add(len(data), moved=True)
                continue
            try:
                fetch(member.digest)  # alone: once more from the pack, or from wherever it is now
            except StoreError as exc:  # the sound members of the run still arrive
                failed.append(exc)
        if failed:
            raise failed[0]

    run_tasks([*(partial(fetch_run, r) for r in runs(members)), *(partial(fetch, d) for d in sorted(loose))], jobs)
    if chunked:
        remote_chunks.download(remote, local, chunked, jobs, progress)
    return progress


def verify_all(
    remote: RemoteObjects, jobs: int, report: Callable[[Progress], None] | None
) -> tuple[Progress, list[str], remote_chunks.Census]:
    loose = list(remote.loose())
    remote.packs.refresh(jobs)
    members = sorted(remote.packs.members().values(), key=lambda m: (m.pack, m.offset))
    progress = Progress(len(loose) + len(members), 0, report)
    corrupt: list[str] = []

    def check_loose(digest: str) -> None:
        with tempfile.TemporaryDirectory(prefix="modelspec-remote-") as scratch:
            temp = Path(scratch) / "object"
            try:
                size = temp.stat().st_size if remote.download_loose(digest, temp) else 0
            except CorruptObjectError:
                corrupt.append(digest)
                size = 0
        progress.add(size, moved=True)

    def check_run(run: Run) -> None:
        found = read_run(remote.blobs, run) or {}
        for member in run.members:
            data = found.get(member)
            if data is None or digest_bytes(data) != member.digest:
                try:  # alone, once more: a network can damage bytes too
                    data = remote.packed_bytes(member.digest, refresh=False)
                except CorruptObjectError:
                    corrupt.append(member.digest)
            progress.add(len(data or b""), moved=True)

    run_tasks([*(partial(check_run, r) for r in runs(members)), *(partial(check_loose, d) for d in loose)], jobs)
    sound = set(loose) - set(corrupt)
    bad, named = remote_chunks.verify_recipes(remote, sound, jobs, progress)
    corrupt += bad
    recipes = set(remote.recipes.listed())  # without those just quarantined
    return progress, sorted(corrupt), remote_chunks.census(remote, sound, recipes, named)


def _local_size(local: LocalStore, digest: str, *, required: bool) -> int:
    info = local.stat(digest)  # a whole copy, or a cold object's chunks
    if info is None:
        if not required:
            return 0  # the remote has it: left there by a remote hit (store/held.py)
        raise StoreError(
            f"object {digest} is missing from the local store", hint="build again, or run `modelspec verify`"
        )
    return info.size
