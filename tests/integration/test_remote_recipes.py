"""What a remote holds of large objects, told apart and read well: `verify --remote`, remote
gc and `remote status` count objects, large objects (recipes) and chunks each as what they
are, and name the chunks no recipe names (what gc reclaims); a recipe replaced on the remote
(quarantined, then pushed again cut otherwise) is never served from a cache as it was; many
recipes are read a few at a time; and verifying a large object holds none of it whole."""

from __future__ import annotations

import json
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from conftest import Repo
from test_remote_chunks import SIZE, checkout, stored, versions

from modelspec.build.loading import open_registry
from modelspec.retention.remote_gc import collect_remote
from modelspec.store.blobs import FileBlobs, RemoteConfig, open_blobs
from modelspec.store.objects import LocalStore
from modelspec.store.recipes import ChunkPolicy
from modelspec.store.remote import RemoteStore
from modelspec.store.remote_packs import index_name, pack_name, send_pack
from modelspec.store.remote_recipes import chunk_digest, recipe_name
from modelspec.store.workspace import find_workspace


def named_chunks(remote: RemoteStore, digests: list[str]) -> set[str]:
    return {chunk_digest(c) for d in digests for c, _n in remote.recipes.get(d).chunks}  # type: ignore[union-attr]


def small_files(tmp: Path, count: int) -> list[Path]:
    """Small files, each of its own bytes (their folder's name is in them)."""
    tmp.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        paths.append(tmp / f"s{i}.txt")
        paths[-1].write_bytes(f"small object {i} of {tmp.name}\n".encode() * 10)
    return paths


def test_verify_remote_counts_objects_large_objects_and_chunks_apart(tmp_path: Path) -> None:
    """Two 12 MiB versions as recipes and their chunks, ten small objects packed and one loose:
    13 objects checked, 2 of them large, and their chunks counted as chunks, not objects."""
    local = LocalStore(tmp_path / "a")
    large = stored(local, tmp_path, versions(2, seed=13))
    small = [local.put_file(p) for p in small_files(tmp_path / "small", 10)]
    remote = RemoteStore(open_blobs(RemoteConfig((tmp_path / "shared").as_uri())))
    remote.upload(local, [*large, *small])
    (lone,) = [local.put_file(p) for p in small_files(tmp_path / "lone", 1)]
    remote.upload(local, [lone])  # alone: loose
    chunks = named_chunks(remote, large)
    progress, corrupt, census = RemoteStore(remote.blobs).verify_all()
    assert corrupt == []
    assert (census.objects, census.large_objects, census.chunks) == (13, 2, len(chunks))
    assert progress.done == 11 + 2 + len(chunks)  # each was checked


def test_remote_gc_counts_the_chunks_it_deletes_apart_from_objects(repo: Repo, tmp_path: Path) -> None:
    """A large object no workspace keeps: gc condemns its recipe, deletes it, then condemns and
    deletes its chunks: each step counted as one large object, or as so many chunks."""
    from modelspec.store.remote_cache import open_remote

    repo.write("modelspec.yaml", f"remote: '{(tmp_path / 'shared').as_uri()}'\n")
    repo.commit("a workspace with a remote")
    workspace = find_workspace(repo.path)
    remote = open_remote(workspace.settings, workspace.home)
    assert remote is not None
    (big,) = stored(workspace.store, tmp_path, versions(1, seed=17))
    small = [workspace.store.put_file(p) for p in small_files(tmp_path / "small", 9)]
    remote.store.upload(workspace.store, [big, *small])
    chunks = named_chunks(remote.store, [big])
    with open_registry(workspace) as registry:  # no version keeps any of them
        reports = [collect_remote(workspace, registry, remote, grace=0).to_dict() for _ in range(3)]
    first, second, third = reports
    assert (first["condemned_objects"], first["condemned_chunks"]) == (10, 0), first
    assert (second["deleted_objects"], second["deleted_large_objects"], second["deleted_chunks"]) == (10, 1, 0)
    assert (second["condemned_objects"], second["condemned_chunks"]) == (0, len(chunks)), second
    assert (third["deleted_objects"], third["deleted_chunks"]) == (0, len(chunks)), third
    assert remote.store.missing_blobs(chunks) == chunks


def test_remote_status_names_the_chunks_no_recipe_names(repo: Repo, tmp_path: Path) -> None:
    """A push killed after its chunks, before its recipe: its chunks are on the remote, but are
    neither objects nor a large object's; status reports them as what gc would reclaim."""
    import random

    from test_chunked_store import SPEC

    from modelspec.store.remote_cache import open_remote

    repo.write("specs/big.yaml", SPEC, dedent=False)
    repo.write("data/base.bin", random.Random(4).randbytes(6 << 20))
    repo.write("conf/config.yaml", "train: {v: 1}\n")
    repo.write("modelspec.yaml", f"remote: '{(tmp_path / 'shared').as_uri()}'\n")
    repo.commit("a large model")
    repo.build_json("specs/big.yaml", in_process=True)
    repo.cli("push", check=True)
    before = json.loads(repo.cli("remote", "status", "--json", check=True).stdout)
    assert before["remote_orphan_chunks"] == 0, before
    workspace = find_workspace(repo.path)
    remote = open_remote(workspace.settings, workspace.home)
    assert remote is not None
    kept, cut = stored(workspace.store, tmp_path, versions(2, seed=19))
    remote.store.upload(workspace.store, [kept, cut])
    only_cut = named_chunks(remote.store, [cut]) - named_chunks(remote.store, [kept])
    remote.blobs.delete([recipe_name(cut)])  # as if the push was killed just before it
    status = json.loads(repo.cli("remote", "status", "--json", check=True).stdout)
    assert status["remote_chunked_objects"] == before["remote_chunked_objects"] + 1, status
    assert status["remote_orphan_chunks"] == len(only_cut), status
    # One more object (`kept`): its chunks and the orphans are not objects.
    assert status["remote_objects"] == before["remote_objects"] + 1, (before, status)
    assert status["remote_only"] == before["remote_only"], (before, status)
    text = repo.cli("remote", "status", check=True).stdout
    assert f"{len(only_cut)} chunks no recipe names" in text, text


@pytest.fixture(params=["file", "s3"])
def remote_config(request: pytest.FixtureRequest, tmp_path: Path) -> RemoteConfig:
    """A shared directory, or a bucket on the test S3 server (moto)."""
    if request.param == "file":
        return RemoteConfig((tmp_path / "shared").as_uri())
    bucket = request.getfixturevalue("s3_bucket")
    return RemoteConfig(f"s3://{bucket}/models", endpoint=request.getfixturevalue("s3_endpoint"))


def test_a_recipe_replaced_on_the_remote_is_not_served_from_a_cache(
    tmp_path: Path, remote_config: RemoteConfig
) -> None:
    """A workspace reads (and caches) v1's recipe; the recipe is quarantined and pushed again
    by a modelspec that cuts otherwise, and the chunks only the old recipe named are deleted
    (as remote gc does): the workspace, in this process and the next, reads the new recipe
    and pulls v1 whole (the old one named chunks that are gone, and taking it for true would
    quarantine the sound new recipe)."""
    (model,) = versions(1, seed=23)
    first = LocalStore(tmp_path / "a")
    (v1,) = stored(first, tmp_path, [model])
    RemoteStore(open_blobs(remote_config)).upload(first, [v1])
    cache = tmp_path / "cache"
    reader = RemoteStore(open_blobs(remote_config), cache)
    old = reader.recipes.get(v1)
    assert old is not None and any((cache / "recipes").iterdir())

    other = RemoteStore(open_blobs(remote_config))
    before = set(other.packs.refresh().packs)
    other.recipes.quarantine(v1)
    second = LocalStore(tmp_path / "b", ChunkPolicy(average=64 << 10))
    (tmp_path / "b-files").mkdir()
    assert stored(second, tmp_path / "b-files", [model]) == [v1]
    other.upload(second, [v1])
    new = other.recipes.get(v1)
    assert new is not None and new.chunks != old.chunks
    # The first push's packs go (a remote gc's work: no recipe names their chunks now but the
    # few both cuts share, which stay: sent here again in a pack of their own).
    other.blobs.delete([index_name(p) for p in sorted(before)] + [pack_name(p) for p in sorted(before)])
    other.packs.refresh()
    lost = sorted(other.missing_blobs({chunk_digest(c) for c, _n in new.chunks}))
    if lost:
        sizes = dict(new.chunks)
        wanted = [(bytes.fromhex(d[7:]), sizes[bytes.fromhex(d[7:])]) for d in lost]
        send_pack(
            other.blobs, other.packs, list(zip(lost, second.chunks.read_chunks(wanted), strict=True)), chunks=True
        )
    assert other.missing_blobs({chunk_digest(c) for c, _n in new.chunks}) == set()
    assert other.missing_blobs({chunk_digest(c) for c, _n in old.chunks}) != set()

    for store in (reader, RemoteStore(open_blobs(remote_config), cache)):  # this process, and the next
        store.recipes.listed()
        assert store.recipes.get(v1) == new
        pulled = LocalStore(tmp_path / f"pulled-{id(store)}")
        pulled.tmp.mkdir(parents=True)
        store.download(pulled, [v1])
        assert checkout(pulled, v1, tmp_path / f"out-{id(store)}") == model
    assert other.missing([v1]) == set()  # the sound recipe stayed in service


class CountingBlobs(FileBlobs):
    """A shared directory whose recipe reads take a while, as over a network, and are counted
    as they overlap."""

    def __init__(self, root: Path, url: str) -> None:
        super().__init__(root, url)
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def get(self, name: str) -> bytes | None:
        if not name.startswith("recipes/"):
            return super().get(name)
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(0.05)
            return super().get(name)
        finally:
            with self.lock:
                self.now -= 1


def test_the_recipes_of_many_large_objects_are_read_a_few_at_a_time(tmp_path: Path) -> None:
    local = LocalStore(tmp_path / "a")
    large = stored(local, tmp_path, versions(3, seed=29))
    shared = tmp_path / "shared"
    RemoteStore(open_blobs(RemoteConfig(shared.as_uri()))).upload(local, large)

    fetching = CountingBlobs(shared, shared.as_uri())
    pulled = LocalStore(tmp_path / "b")
    pulled.tmp.mkdir(parents=True)
    RemoteStore(fetching).download(pulled, large, jobs=4)
    assert fetching.most >= 2, fetching.most  # a fetch
    verifying = CountingBlobs(shared, shared.as_uri())
    RemoteStore(verifying).recipes.get_all(large, jobs=4)  # gc's and status's reads
    assert verifying.most >= 2, verifying.most


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
