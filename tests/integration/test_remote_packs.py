"""Small objects travel in packs (store/remote_packs.py): a push of many costs a few PUTs, a
packed object counts as on the remote for every existence check, reads of it are verified
(a corrupt member is refused and marked, never stored), a pack a killed push left without
its index is ignored and swept, and remote gc deletes a pack only once all of it is dead."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import GIT_ENV, Repo, states
from faultproxy import fault_proxy
from pipeline import make_pipeline

from modelspec.digest import digest_bytes
from modelspec.errors import CorruptObjectError
from modelspec.retention.remote_gc import collect_remote
from modelspec.store.blobs import RemoteConfig, open_blobs
from modelspec.store.objects import LocalStore
from modelspec.store.remote import RemoteStore
from modelspec.store.remote_cache import RemoteLease, open_remote
from modelspec.store.remote_packs import Member, build_pack, decode_index, pack_name, send_pack
from modelspec.store.workspace import find_workspace

WIDE = """\
modelspec: 1
name: wide
version: "1.0"
code: {repo: ..}
config: {dir: conf}
stages:
  make:
    cmd: sh -c 'mkdir ${outputs.tree}; for i in $(seq 120); do echo ${config.make.v} $i > ${outputs.tree}/f$i; done'
    params: [make]
    outputs: {tree: tree}
  pick:
    cmd: sh -c 'cat ${inputs.make.tree}/f7 > ${outputs.model}'
    inputs: [make.tree]
    outputs: {model: model.txt}
artifacts: [make.tree, pick.model]
"""


def packed_member(shared: Path, digest: str) -> tuple[Path, Member]:
    """The pack file on a shared-directory remote holding the object, and where in it."""
    for index in sorted((shared / "packs").glob("*.idx")):
        pack = shared / "packs" / f"{index.stem}.pack"
        for member in decode_index(index.stem, index.read_bytes(), pack.stat().st_size) or ():
            if member.digest == digest:
                return pack, member
    raise AssertionError(f"{digest} is in no pack")


def corrupt_packed(shared: Path, digest: str) -> Member:
    """Flip a byte of a packed object (a disk or a hand that damaged the pack)."""
    path, member = packed_member(shared, digest)
    data = bytearray(path.read_bytes())
    data[member.offset] ^= 0xFF
    path.unlink()  # read-only, like every blob
    path.write_bytes(bytes(data))
    return member


def small_objects(store: LocalStore, count: int, tag: bytes) -> list[str]:
    store.tmp.mkdir(parents=True, exist_ok=True)
    return [store.put_bytes(tag + b" %d " % i + os.urandom(3000)) for i in range(count)]


def test_many_small_objects_cost_a_few_puts_and_count_as_there(
    s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    local = LocalStore(tmp_path / "a")
    digests = small_objects(local, 300, b"small")
    with fault_proxy(s3_endpoint) as (endpoint, faults):
        config = RemoteConfig(f"s3://{s3_bucket}/many", endpoint=endpoint)
        remote = RemoteStore(open_blobs(config), tmp_path / "index-cache")
        sent = remote.upload(local, digests, jobs=8)
        assert sent.transferred == 300
        assert faults.methods.get("PUT") == 2  # one pack and its index (300 loose objects: 300 PUTs)
        assert remote.missing(digests) == set() and remote.has(digests[5])
        info = remote.stat(digests[5])
        assert info is not None and info.size == local.stat(digests[5]).size  # type: ignore[union-attr]
        assert set(remote.iter()) == set(digests)

        # Another process with the same index cache reads no index; one without reads it once.
        faults.log.clear()
        cached = RemoteStore(open_blobs(config), tmp_path / "index-cache")
        assert cached.missing(digests) == set()
        assert not any(path.endswith(".idx") for _method, path in faults.log)
        (index,) = (tmp_path / "index-cache").glob("*.idx")
        index.write_bytes(b"damaged")  # a cached index that does not check out is fetched again
        stale = tmp_path / "index-cache" / f".{index.name}.1234-killed.tmp"
        stale.write_bytes(b"half")
        os.utime(stale, (0, 0))
        faults.log.clear()
        assert RemoteStore(open_blobs(config), tmp_path / "index-cache").missing(digests) == set()
        assert sum(path.endswith(".idx") for _method, path in faults.log) == 1 and not stale.exists()
        faults.log.clear()
        fresh = RemoteStore(open_blobs(config))
        assert fresh.missing([*digests, digest_bytes(b"never pushed")]) == {digest_bytes(b"never pushed")}
        assert sum(path.endswith(".idx") for _method, path in faults.log) == 1
        faults.log.clear()  # a few digests: a HEAD each, then one listing of the packs
        assert fresh.missing(digests[:3]) == set()
        assert sum("list-type" in path and "packs" in path for _method, path in faults.log) == 1, faults.log
        assert remote.upload(local, digests).transferred == 0  # a second push sends nothing

        # Pulled into a fresh store: a range read or two, each object verified.
        faults.log.clear()
        pulled = LocalStore(tmp_path / "b")
        pulled.tmp.mkdir(parents=True)
        got = fresh.download(pulled, digests, jobs=8)
        assert got.transferred == 300 and all(pulled.verify(d) for d in digests)
        assert sum(method == "GET" and ".pack" in path for method, path in faults.log) <= 2
        assert fresh.read_bytes(digests[9]) == local.read_bytes(digests[9])
        assert remote.verify_all()[1] == []


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_a_corrupt_packed_object_is_refused_marked_and_pushed_again(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    local = LocalStore(tmp_path / "a")
    digests = small_objects(local, 20, b"member")
    if kind == "file":
        config = RemoteConfig((tmp_path / "shared").as_uri())
    else:
        endpoint, bucket = request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket")
        config = RemoteConfig(f"s3://{bucket}/bad", endpoint=endpoint)
    remote = RemoteStore(open_blobs(config))
    remote.upload(local, digests)
    victim = digests[3]
    member = remote.packs.find(victim)
    assert member is not None
    # Damage the pack where it lies: a pack is a blob like any other (replaced here by hand).
    data = bytearray(remote.blobs.get(pack_name(member.pack)) or b"")
    data[member.offset] ^= 0xFF
    remote.blobs.delete([pack_name(member.pack)])
    remote.blobs.create(pack_name(member.pack), bytes(data))

    pulled = LocalStore(tmp_path / "b")
    pulled.tmp.mkdir(parents=True)
    with pytest.raises(CorruptObjectError, match=rf"{victim} .* is corrupt.*\.bad/"):
        remote.download(pulled, digests)
    assert not pulled.has(victim)  # never entered the store
    assert all(pulled.verify(d) for d in digests if d != victim)  # its sound neighbours did
    # Marked beside its pack: for every reader, and for the next push, it is not there.
    other = RemoteStore(open_blobs(config))
    assert other.missing(digests) == {victim} and not other.has(victim)
    assert victim not in set(other.iter())
    with pytest.raises(Exception, match="missing from the remote"):
        other.read_bytes(victim)
    again = other.upload(local, digests)
    assert again.transferred == 1 and other.missing(digests) == set()
    assert other.read_bytes(victim) == local.read_bytes(victim)
    assert other.verify_all()[1] == []


def test_a_push_killed_between_pack_and_index_leaves_nothing_readers_see(tmp_path: Path) -> None:
    local = LocalStore(tmp_path / "a")
    digests = small_objects(local, 12, b"killed")
    remote = RemoteStore(open_blobs(RemoteConfig((tmp_path / "shared").as_uri())))
    orphan = build_pack([(d, local.read_bytes(d)) for d in digests])
    remote.blobs.create(pack_name(orphan.pack), orphan.data)  # killed before the index
    assert remote.missing(digests) == set(digests) and list(remote.iter()) == []
    sent = remote.upload(local, digests)  # the next push: a pack of its own, then its index
    assert sent.transferred == 12 and remote.missing(digests) == set()
    assert len(list((tmp_path / "shared" / "packs").glob("*.pack"))) == 2


def workspace_with_remote(tmp_path: Path) -> Repo:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "modelspec.yaml").write_text(f"remote: '{(tmp_path / 'shared').as_uri()}'\n")
    repo = Repo(root)
    repo.build_json(make_pipeline(repo), in_process=True)
    return repo


def test_remote_gc_deletes_a_dead_pack_keeps_one_with_a_live_member_and_sweeps_orphans(tmp_path: Path) -> None:
    from modelspec.build.loading import open_registry

    repo = workspace_with_remote(tmp_path)
    workspace = find_workspace(repo.path)
    remote = open_remote(workspace.settings, workspace.home)
    assert remote is not None
    blobs, catalog = remote.blobs, remote.store.packs
    needed = sorted(remote.store.iter())[0]  # pushed by the build: this workspace keeps it
    dead = [(digest_bytes(b), b) for b in (b"dead %d\n" % i for i in range(10))]
    mixed = [(needed, workspace.store.read_bytes(needed))] + [
        (digest_bytes(b), b) for b in (b"x%d" % i for i in range(9))
    ]
    dead_pack = send_pack(blobs, catalog, dead).pack
    mixed_pack = send_pack(blobs, catalog, mixed).pack
    orphan = build_pack([(digest_bytes(b), b) for b in (b"orphan %d" % i for i in range(9))])
    blobs.create(pack_name(orphan.pack), orphan.data)
    packs = tmp_path / "shared" / "packs"

    with open_registry(workspace) as registry:
        young = collect_remote(workspace, registry, remote, grace=3600)
        assert young.orphan_packs == 0 and young.condemned == [] and (packs / f"{orphan.pack}.pack").exists()
        first = collect_remote(workspace, registry, remote, grace=0)
        assert sorted(first.condemned) == sorted(d for d, _b in dead)  # the mixed pack's garbage waits
        assert first.deleted_packs == 0 and first.partly_dead_packs == 1
        assert first.orphan_packs == 1 and not (packs / f"{orphan.pack}.pack").exists()
        assert remote.store.missing([d for d, _b in dead]) == set()  # condemned, not yet deleted
        # A push elsewhere found one of them there and will name it: its lease keeps the pack.
        with RemoteLease(blobs) as lease:
            lease.add([dead[0][0]])
            leased = collect_remote(workspace, registry, remote, grace=0)
            assert leased.deleted_packs == 0 and (packs / f"{dead_pack}.idx").exists()
        assert collect_remote(workspace, registry, remote, grace=0).deleted_packs == 0  # condemned afresh
        second = collect_remote(workspace, registry, remote, grace=0)
        assert second.deleted_packs == 1 and sorted(second.deleted) == sorted(d for d, _b in dead)
        third = collect_remote(workspace, registry, remote, grace=0)
        assert third.deleted == [] and third.partly_dead_packs == 1
    assert not (packs / f"{dead_pack}.idx").exists() and not (packs / f"{dead_pack}.pack").exists()
    assert (packs / f"{mixed_pack}.pack").exists() and remote.store.has(needed)
    fresh = RemoteStore(open_blobs(RemoteConfig(remote.url)))
    assert fresh.missing([d for d, _b in dead]) == {d for d, _b in dead}
    assert fresh.read_bytes(needed) == workspace.store.read_bytes(needed)
    text = repo.cli("gc", "--remote", "--grace", "0s", check=True).stdout
    assert "1 pack with a needed object kept whole" in text


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_a_pushed_wide_tree_is_packed_and_a_second_workspace_builds_nothing(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    first = Repo(tmp_path / "a")
    if kind == "s3":
        endpoint, bucket = request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket")
        proxy = fault_proxy(endpoint)
        counted, faults = proxy.__enter__()
        request.addfinalizer(lambda: proxy.__exit__(None, None, None))
        first.write("modelspec.yaml", f"remote: {{url: 's3://{bucket}/team', endpoint: '{counted}'}}\n")
    else:
        first.write("modelspec.yaml", f"remote: '{(tmp_path / 'shared').as_uri()}'\n")
    first.write("specs/wide.yaml", WIDE)
    first.write("conf/config.yaml", "make: {v: 1}\n")
    first.commit("a stage with a wide output")
    if kind == "s3":  # push sends the build's objects
        first.build_json("specs/wide.yaml", "--no-push", in_process=True)
        faults.methods.clear()
        pushed = json.loads(first.cli("push", "--json", check=True).stdout)
        assert pushed["transferred"] == pushed["objects"] > 120
        # Packs and indices, the lease, two action-cache entries, the roots: not one PUT an object.
        assert faults.methods["PUT"] < 12, faults.methods
    else:  # the build uploads a stage's outputs as it goes: the wide one's in a pack
        first.build_json("specs/wide.yaml", in_process=True)
        assert len(list((tmp_path / "shared" / "packs").glob("*.idx"))) == 1
        assert len(list((tmp_path / "shared" / "objects").rglob("*"))) <= 10  # what stayed loose: a few
        pushed = json.loads(first.cli("push", "--json", check=True).stdout)
        assert pushed["objects"] > 120 and pushed["transferred"] < 10  # the version's own records

    subprocess.run(
        ["git", "clone", "-q", str(first.path), str(tmp_path / "b")], check=True, env={**GIT_ENV, "PATH": "/usr/bin"}
    )
    second = Repo.__new__(Repo)
    second.path = tmp_path / "b"
    report = second.build_json("specs/wide.yaml", in_process=True)
    assert set(states(report).values()) == {"cached"}  # every remote hit verified against the packs
    assert second.cli("verify", check=True).returncode == 0
    status = json.loads(first.cli("remote", "status", "--json", check=True).stdout)
    assert status["not_on_remote"] == 0 and status["remote_objects"] >= pushed["objects"]
    assert json.loads(second.cli("verify", "--remote", "--json", check=True).stdout)["ok"]


def test_an_s3_remote_signs_with_an_aws_profiles_keys(
    s3_endpoint: str, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys kept in ~/.aws/credentials (AWS_PROFILE, or the remote's `profile:`), not in the
    variables: obstore reads only the variables, so modelspec reads the profile."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    credentials = tmp_path / "credentials"
    credentials.write_text("[team]\naws_access_key_id = AKIDFROMPROFILE\naws_secret_access_key = s\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    local = LocalStore(tmp_path / "a")
    digests = small_objects(local, 10, b"profile")
    with fault_proxy(s3_endpoint) as (endpoint, faults):
        remote = RemoteStore(open_blobs(RemoteConfig(f"s3://{s3_bucket}/p", endpoint, profile="team")), None)
        remote.upload(local, digests, jobs=4)
        assert remote.missing(digests) == set()
    assert faults.access_keys == {"AKIDFROMPROFILE"}
