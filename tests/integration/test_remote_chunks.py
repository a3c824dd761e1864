"""Large objects travel as recipes and chunks (store/remote_chunks.py): a push of a new
version sends about the chunks that changed, a fresh store pulls about the same and reads
every version back bit for bit, a corrupt chunk on the remote is named and never stored,
remote gc keeps shared chunks and drops an unneeded version's own, and a remote holding a
large object whole (pushed before chunks travelled) still serves it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from conftest import Repo
from faultproxy import fault_proxy
from test_chunked_store import SPEC, _model

from modelspec.build.loading import open_registry
from modelspec.errors import CorruptObjectError, StoreError
from modelspec.retention.remote_gc import collect_remote
from modelspec.store.blobs import RemoteConfig, open_blobs
from modelspec.store.objects import LocalStore
from modelspec.store.remote import RemoteStore
from modelspec.store.remote_cache import RemoteLease, open_remote
from modelspec.store.remote_chunks import chunk_digest
from modelspec.store.remote_objects import object_name
from modelspec.store.remote_packs import Member
from modelspec.store.remote_recipes import recipe_name
from modelspec.store.workspace import find_workspace

SIZE = 12 << 20
RUN = 64 << 10


def versions(count: int, seed: int = 7) -> list[bytes]:
    """A model, then versions each rewriting 5% of the previous one in runs of 64 KiB."""
    rng = random.Random(seed)
    found = [rng.randbytes(SIZE)]
    for _ in range(count - 1):
        data = bytearray(found[-1])
        for _run in range(SIZE // 20 // RUN):
            at = rng.randrange(0, SIZE - RUN)
            data[at : at + RUN] = rng.randbytes(RUN)
        found.append(bytes(data))
    return found


def stored(store: LocalStore, tmp: Path, models: list[bytes]) -> list[str]:
    store.tmp.mkdir(parents=True, exist_ok=True)
    digests = []
    for i, data in enumerate(models):
        (tmp / f"v{i}.bin").write_bytes(data)
        digests.append(store.put_file(tmp / f"v{i}.bin"))
    return digests


def checkout(store: LocalStore, digest: str, dest: Path) -> bytes:
    from modelspec.store.protocol import Entry

    store.restore(Entry("file", digest, 0), dest, link=False)  # reassembled, the whole blake3 checked
    return dest.read_bytes()


def test_a_new_version_sends_and_pulls_about_its_changed_chunks(
    s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    models = versions(2)
    local = LocalStore(tmp_path / "a")
    v1, v2 = stored(local, tmp_path, models)
    changed = SIZE // 20 // RUN * RUN
    with fault_proxy(s3_endpoint) as (endpoint, faults):
        config = RemoteConfig(f"s3://{s3_bucket}/models", endpoint=endpoint)
        remote = RemoteStore(open_blobs(config), tmp_path / "cache-a")
        seen: list[tuple[int, int]] = []
        first = remote.upload(local, [v1], jobs=4, report=lambda p: seen.append((p.done, p.bytes)))
        assert any(done == 0 and size > 0 for done, size in seen) and seen[-1] == (1, SIZE)  # a bar moves
        assert first.transferred == 1 and SIZE <= first.moved_bytes < SIZE * 1.01
        assert remote.blobs.head(object_name(v1)) is None and remote.blobs.head(recipe_name(v1)) is not None
        faults.bytes_in, faults.methods = 0, {}
        second = remote.upload(local, [v2], jobs=4)
        # About the changed 5%: a changed run touches the chunks it overlaps (~20 KiB each).
        assert changed <= second.moved_bytes < changed * 2, second.moved_bytes
        assert faults.bytes_in < changed * 2.2, faults.bytes_in
        assert faults.methods["PUT"] <= 4  # a pack of chunks, its index, the recipe
        assert remote.missing([v1, v2]) == set() and remote.stat(v2).size == SIZE  # type: ignore[union-attr]
        assert remote.upload(local, [v1, v2]).transferred == 0

        fresh = RemoteStore(open_blobs(config))
        pulled = LocalStore(tmp_path / "b")
        pulled.tmp.mkdir(parents=True)
        seen.clear()
        assert fresh.download(pulled, [v1], jobs=4, report=lambda p: seen.append((p.done, p.bytes))).moved_bytes == SIZE
        assert any(done == 0 and size > 0 for done, size in seen) and seen[-1] == (1, SIZE)
        faults.bytes_out = 0
        got = fresh.download(pulled, [v2], jobs=4)
        assert got.transferred == 1 and changed <= got.moved_bytes < changed * 2
        assert faults.bytes_out < changed * 2.5, faults.bytes_out
        assert not pulled.is_whole(v2)  # kept as chunks, reassembled on checkout
        assert checkout(pulled, v1, tmp_path / "out1") == models[0]
        assert checkout(pulled, v2, tmp_path / "out2") == models[1]
        assert fresh.read_bytes(v2) == models[1]  # straight from the remote's chunks too
        assert fresh.verify_all()[1] == []


def corrupt_member(remote: RemoteStore, shared: Path, chunk: str) -> Member:
    """Flip a byte of a packed chunk where it lies (a disk or a hand that damaged the pack)."""
    remote.packs.refresh()
    member = remote.packs.find(chunk)
    assert member is not None
    pack = shared / "packs" / f"{member.pack}.pack"
    data = bytearray(pack.read_bytes())
    data[member.offset + 5] ^= 0xFF
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))
    return member


@pytest.fixture
def shared_remote(tmp_path: Path) -> tuple[LocalStore, RemoteStore, list[str], list[bytes]]:
    models = versions(2, seed=11)
    local = LocalStore(tmp_path / "a")
    digests = stored(local, tmp_path, models)
    remote = RemoteStore(open_blobs(RemoteConfig((tmp_path / "shared").as_uri())))
    remote.upload(local, digests)
    return local, remote, digests, models


def test_a_corrupt_chunk_on_the_remote_is_named_and_never_stored(
    shared_remote: tuple[LocalStore, RemoteStore, list[str], list[bytes]], tmp_path: Path
) -> None:
    local, remote, (v1, v2), models = shared_remote
    recipe = remote.recipes.get(v2)
    assert recipe is not None
    chunk = chunk_digest(recipe.chunks[len(recipe.chunks) // 2][0])
    member = corrupt_member(remote, tmp_path / "shared", chunk)

    pulled = LocalStore(tmp_path / "b")
    pulled.tmp.mkdir(parents=True)
    with pytest.raises(CorruptObjectError) as caught:
        RemoteStore(open_blobs(RemoteConfig((tmp_path / "shared").as_uri()))).download(pulled, [v2])
    assert chunk in caught.value.message and v2 in caught.value.message
    assert not pulled.has(v2)  # no recipe naming a chunk that never arrived
    assert (tmp_path / "shared" / "packs" / f"{member.pack}.bad").is_dir()
    # The object no longer counts as there: the next push sends the chunk and the recipe again.
    assert remote.missing([v2]) == {v2}
    assert remote.upload(local, [v2]).transferred == 1
    assert RemoteStore(open_blobs(RemoteConfig((tmp_path / "shared").as_uri()))).download(pulled, [v2]).transferred
    assert checkout(pulled, v2, tmp_path / "out") == models[1]
    assert remote.verify_all()[1] == []

    # verify --remote finds a corrupt chunk of v1 alone, names it and v1, and quarantines v1's recipe.
    recipes = [remote.recipes.get(d) for d in (v1, v2)]
    onlyv1 = {c for c, _n in recipes[0].chunks} - {c for c, _n in recipes[1].chunks}  # type: ignore[union-attr]
    chunk = chunk_digest(sorted(onlyv1)[0])
    corrupt_member(remote, tmp_path / "shared", chunk)
    checker = RemoteStore(open_blobs(RemoteConfig((tmp_path / "shared").as_uri())))
    assert sorted(checker.verify_all()[1]) == sorted([chunk, v1])
    assert (tmp_path / "shared" / "quarantine" / "recipes" / v1[7:]).exists()
    assert checker.missing([v1, v2]) == {v1}
    assert remote.upload(local, [v1]).transferred == 1 and checker.verify_all()[1] == []


def test_an_old_remote_with_a_whole_large_object_still_serves_it(tmp_path: Path) -> None:
    (model,) = versions(1, seed=3)
    local = LocalStore(tmp_path / "a")
    (digest,) = stored(local, tmp_path, [model])
    remote = RemoteStore(open_blobs(RemoteConfig((tmp_path / "shared").as_uri())))
    remote.put_loose(digest, local.checked_path(digest))  # as a push before chunks did
    assert remote.upload(local, [digest]).transferred == 0  # there already: not sent again
    pulled = LocalStore(tmp_path / "b")
    pulled.tmp.mkdir(parents=True)
    assert remote.download(pulled, [digest]).moved_bytes == SIZE
    assert pulled.read_bytes(digest) == model
    assert not (tmp_path / "shared" / "recipes").exists()


def test_remote_gc_keeps_shared_chunks_and_drops_an_unneeded_versions_own(repo: Repo, tmp_path: Path) -> None:
    base = random.Random(1).randbytes(6 << 20)
    repo.write("specs/big.yaml", SPEC, dedent=False)
    repo.write("data/base.bin", base)
    repo.write("conf/config.yaml", "train: {v: 1}\n")
    repo.write("modelspec.yaml", f"remote: '{(tmp_path / 'shared').as_uri()}'\n")
    repo.commit("a large model")
    refs = [
        repo.build_json("specs/big.yaml", f"train.v={v}", in_process=True)["versions"]["big"]["ref"] for v in (1, 2)
    ]
    repo.cli("push", check=True)
    models = [_model(repo, ref) for ref in refs]
    workspace = find_workspace(repo.path)
    remote = open_remote(workspace.settings, workspace.home)
    assert remote is not None and remote.store.missing(models) == set()

    # A version no workspace keeps (pushed, then deleted): mostly the chunks of the others.
    extra = bytearray(base)
    extra[1 << 20 : (1 << 20) + RUN] = random.Random(5).randbytes(RUN)
    (orphan,) = stored(workspace.store, tmp_path, [bytes(extra)])
    remote.store.upload(workspace.store, [orphan])
    own = {chunk_digest(c) for c, _n in remote.store.recipes.get(orphan).chunks}  # type: ignore[union-attr]
    others = set(remote.store.recipes.listed()) - {orphan}  # the models, and their input data
    shared = {chunk_digest(c) for d in others for c, _n in remote.store.recipes.get(d).chunks}  # type: ignore[union-attr]
    assert own & shared and own - shared
    workspace.store.delete(orphan)

    with open_registry(workspace) as registry:
        first = collect_remote(workspace, registry, remote, grace=0)
        assert orphan in first.condemned and first.deleted == []
        second = collect_remote(workspace, registry, remote, grace=0)
        # Its chunks stay while its recipe does (it might be needed again before it goes),
        # and are condemned with its deletion, then deleted, with their pack, by the next gc.
        third = collect_remote(workspace, registry, remote, grace=0)
    assert second.deleted == [orphan] and second.deleted_recipes == 1
    assert second.to_dict()["deleted_large_objects"] == 1
    assert own - shared <= set(second.condemned)
    assert set(third.deleted) == own - shared
    assert remote.store.missing([orphan]) == {orphan}
    with pytest.raises(StoreError, match=f"object {orphan} is missing from the remote"):
        remote.store.read_bytes(orphan)  # its recipe, read before and kept, is not believed
    assert remote.store.missing(shared) == set()
    fresh = RemoteStore(open_blobs(RemoteConfig((tmp_path / "shared").as_uri())))
    pulled = LocalStore(tmp_path / "b")
    pulled.tmp.mkdir(parents=True)
    fresh.download(pulled, models)
    for digest in models:
        assert pulled.verify(digest)
    assert fresh.verify_all()[1] == []

    # A push that has sent its chunks but not yet its recipe: its lease keeps them.
    extra[3 << 20 : (3 << 20) + RUN] = random.Random(6).randbytes(RUN)
    (pending,) = stored(workspace.store, tmp_path, [bytes(extra)])
    with open_registry(workspace) as registry, RemoteLease(remote.blobs) as lease:
        remote.store.upload(workspace.store, [pending], hold=lease.add)
        sent = {chunk_digest(c) for c, _n in remote.store.recipes.get(pending).chunks}  # type: ignore[union-attr]
        remote.blobs.delete([recipe_name(pending)])  # as if killed just before the recipe
        for _ in range(2):
            assert collect_remote(workspace, registry, remote, grace=0).deleted == []
        assert remote.store.missing(sent) == set()
        lease.release()
        collect_remote(workspace, registry, remote, grace=0)
        assert set(collect_remote(workspace, registry, remote, grace=0).deleted) == sent - shared


def test_push_and_pull_of_a_workspaces_large_model_move_its_changed_chunks(repo: Repo, tmp_path: Path) -> None:
    import json
    import shutil
    import stat

    base = random.Random(2).randbytes(6 << 20)
    repo.write("specs/big.yaml", SPEC, dedent=False)
    repo.write("data/base.bin", base)
    repo.write("conf/config.yaml", "train: {v: 1}\n")
    repo.write("modelspec.yaml", f"remote: '{(tmp_path / 'shared').as_uri()}'\n")
    repo.commit("a large model")
    first = repo.build_json("specs/big.yaml", "--no-push", in_process=True)["versions"]["big"]["ref"]
    pushed = json.loads(repo.cli("push", "--json", check=True).stdout)
    # The input data and the model, which shares all but a 64 KiB run with it: sent once.
    assert len(base) < pushed["bytes"] < 1.1 * len(base), pushed
    second = repo.build_json("specs/big.yaml", "train.v=9", "--no-push", in_process=True)["versions"]["big"]["ref"]
    again = json.loads(repo.cli("push", second, "--json", check=True).stdout)
    assert 0 < again["bytes"] < len(base) / 8, again  # a 64 KiB run changed: its chunks, the recipe, small files
    status = json.loads(repo.cli("remote", "status", "--json", check=True).stdout)
    assert status["not_on_remote"] == 0 and status["remote_chunked_objects"] >= 3, status
    text = repo.cli("remote", "status", check=True).stdout
    assert f"{status['remote_chunked_objects']} large objects stored as {status['remote_chunks']} chunks" in text

    # The machine loses its store: pull brings the models back, reassembled and checked.
    store = repo.path / ".modelspec"
    for name in ("objects", "packs", "recipes"):
        for path in (store / name).rglob("*"):
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
        shutil.rmtree(store / name)
    for ref in (first, second):
        pulled = json.loads(repo.cli("pull", ref, "--json", check=True).stdout)
        placed = Path(pulled["placed"][f"{ref}:train.model"])
        expected = bytearray(base)
        v = 1 if ref == first else 9
        expected[v * RUN : (v + 1) * RUN] = (f"{v}\n".encode() * RUN)[:RUN]
        assert placed.read_bytes() == bytes(expected)
    assert repo.cli("verify", first).returncode == 0 and repo.cli("verify", second).returncode == 0


def test_remote_gc_keeps_the_chunks_of_every_recipe_it_does_not_delete(repo: Repo, tmp_path: Path) -> None:
    """A recipe pushed after gc condemned the chunks it reuses (found present, not sent again)
    is condemned itself, not deleted, by the next gc: that gc keeps its chunks, though they have
    been condemned for longer than the grace. (It deleted them: the recipe named absent chunks,
    and the object still counted as on the remote, so no push would send them again.)"""
    repo.write("modelspec.yaml", f"remote: '{(tmp_path / 'shared').as_uri()}'\n")
    repo.commit("a workspace with a remote")
    workspace = find_workspace(repo.path)
    remote = open_remote(workspace.settings, workspace.home)
    assert remote is not None
    first, second = versions(2)
    old, new = stored(workspace.store, tmp_path, [first, second])
    with open_registry(workspace) as registry:  # no version keeps either object
        remote.store.upload(workspace.store, [old])
        assert old in collect_remote(workspace, registry, remote, grace=0).condemned  # and its chunks
        remote.store.upload(workspace.store, [new])  # reuses most of them
        named = {chunk_digest(c) for c, _n in remote.store.recipes.get(new).chunks}  # type: ignore[union-attr]
        report = collect_remote(workspace, registry, remote, grace=0)
    assert old in report.deleted and new in report.condemned and not named & set(report.deleted)
    assert remote.store.missing(named) == set()
    fresh = LocalStore(tmp_path / "fresh")
    fresh.tmp.mkdir(parents=True)
    remote.store.download(fresh, [new])
    assert checkout(fresh, new, tmp_path / "new.bin") == second


def test_remote_gc_keeps_the_chunks_of_a_recipe_made_while_it_ran(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A push that reuses condemned chunks and creates its recipe after gc listed the recipes
    (its lease released before gc looks at the leases again): gc lists the recipes again just
    before deleting, and keeps what the new one names."""
    repo.write("modelspec.yaml", f"remote: '{(tmp_path / 'shared').as_uri()}'\n")
    repo.commit("a workspace with a remote")
    workspace = find_workspace(repo.path)
    remote = open_remote(workspace.settings, workspace.home)
    assert remote is not None
    first, second = versions(2, seed=11)
    old, new = stored(workspace.store, tmp_path, [first, second])
    catalog = remote.store.recipes
    real_listed = catalog.listed
    pushed: list[str] = []

    def listed_then_a_push() -> dict[str, float]:
        found = real_listed()
        if not pushed:  # gc's first listing: the push lands right after it
            pushed.append(new)
            remote.store.upload(workspace.store, [new])
        return found

    with open_registry(workspace) as registry:
        remote.store.upload(workspace.store, [old])
        collect_remote(workspace, registry, remote, grace=0)  # condemns old's recipe
        assert old in collect_remote(workspace, registry, remote, grace=0).deleted  # and condemns its chunks
        monkeypatch.setattr(catalog, "listed", listed_then_a_push)
        report = collect_remote(workspace, registry, remote, grace=0)
    named = {chunk_digest(c) for c, _n in catalog.get(new).chunks}  # type: ignore[union-attr]
    assert pushed and not named & set(report.deleted)
    assert remote.store.missing(named) == set()


def test_a_recipe_of_a_newer_format_is_an_error_to_upgrade_and_stays_in_service(tmp_path: Path) -> None:
    """An older modelspec reading a recipe a newer one wrote (whole: its checksum holds) says
    to upgrade, and neither takes it for damage nor quarantines it."""
    import blake3

    blobs = open_blobs(RemoteConfig((tmp_path / "shared").as_uri()))
    digest = "blake3:" + "ab" * 32
    body = b"MSRCP002" + bytes(40)
    blobs.create(recipe_name(digest), body + blake3.blake3(body).digest())
    catalog = RemoteStore(blobs).recipes
    with pytest.raises(StoreError, match=f"recipe of object {digest} .* newer than this modelspec") as raised:
        catalog.get(digest)
    assert "upgrade" in (raised.value.hint or "")
    assert blobs.get(recipe_name(digest)) is not None  # still in service
    damaged = b"MSRCP001" + bytes(40)
    blobs.create(recipe_name("blake3:" + "cd" * 32), damaged + bytes(32))  # a checksum that fails
    with pytest.raises(CorruptObjectError):
        catalog.get("blake3:" + "cd" * 32)
