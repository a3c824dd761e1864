"""Disk full and permissions: a store on a full filesystem (a small tmpfs as MODELSPEC_HOME)
or on a read-only one. The build fails with a clear message and exit code 1, never a
traceback; the store stays consistent (`verify --all` exit 0); once there is room (the
tmpfs remounted bigger) or the store is writable again, the build completes.

These tests mount filesystems, so they run as root; every mount is undone in teardown.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Repo, states

SMALL = "3m"
ROOMY = "32m"
FILL_BYTES = 8_000_000  # more than a 3 MiB store can hold

SPEC = """\
modelspec: 1
name: disk
version: "1.0"
code: {{repo: ..}}
data:
  raw: {{path: data/raw.bin}}
config: {{dir: conf}}
hermetic: strict
stages:
  fill:
    cmd: {cmd}
    inputs: [raw]
    params: [fill]
    outputs: {{out: fill.bin}}
artifacts: [fill.out]
"""
WRITE_ZEROS = "head -c ${config.fill.bytes} /dev/zero > ${outputs.out}"
# Fills the filesystem of the output directory (the store's) up to `leave` free bytes.
FILL_UP_TO = (
    "python3 -c \"import os, sys; s = os.statvfs('/ms/out'); "
    "open(sys.argv[1], 'wb').write(bytes(s.f_bavail * s.f_frsize - int(sys.argv[2])))\" "
    "${outputs.out} ${config.fill.leave}"
)


def make_spec(repo: Repo, cmd: str, *, raw: bytes = b"raw\n") -> str:
    repo.write("specs/disk.yaml", SPEC.format(cmd=json.dumps(cmd)), dedent=False)
    repo.write("data/raw.bin", raw)
    repo.write("conf/config.yaml", f"fill: {{bytes: {FILL_BYTES}, leave: 49152}}\n")
    repo.commit("disk spec")
    return "specs/disk.yaml"


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def is_mounted(path: Path) -> bool:
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == str(path) for line in mounts)


def unmount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs, unmounted after the test."""
    point = tmp_path / "small"
    point.mkdir()
    mount("-t", "tmpfs", "-o", f"size={SMALL}", "tmpfs", str(point))
    try:
        yield point
    finally:
        unmount(point)


def grow(point: Path) -> None:
    mount("-o", f"remount,size={ROOMY}", str(point))


@pytest.fixture
def store_env(small_fs: Path) -> dict[str, str]:
    return {"MODELSPEC_HOME": str(small_fs / "home")}


def build(repo: Repo, spec: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = repo.modelspec("build", spec, *args, env=env)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    return result


def fill_reason(result: subprocess.CompletedProcess[str]) -> str:
    """Why modelspec says the stage failed (its own words, not the stage's log)."""
    (row,) = json.loads(result.stdout)["nodes"]
    assert row["state"] == "failed", row
    return str(row["reason"])


def assert_consistent(repo: Repo, env: dict[str, str]) -> None:
    verify = repo.modelspec("verify", "--all", env=env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    leftovers = os.listdir(Path(env["MODELSPEC_HOME"]) / "tmp")
    assert leftovers == [], f"scratch files left in the store: {leftovers}"


def assert_builds_after_growing(repo: Repo, spec: str, env: dict[str, str], point: Path, size: int) -> None:
    grow(point)
    result = build(repo, spec, env, "--json")
    assert result.returncode == 0, result.stdout
    repo.modelspec("checkout", spec, "--out", "o", env=env, check=True)
    assert (repo.path / "o" / "fill" / "fill.bin").stat().st_size == size
    assert_consistent(repo, env)


def test_a_stage_that_fills_the_store_fails_clearly_and_the_store_stays_consistent(
    repo: Repo, small_fs: Path, store_env: dict[str, str]
) -> None:
    spec = make_spec(repo, f"sh -c 'echo writing ${{config.fill.bytes}} bytes; {WRITE_ZEROS}'")
    result = build(repo, spec, store_env, "--json")
    assert result.returncode == 1
    assert "no space left on the store's filesystem" in fill_reason(result), result.stdout
    assert_consistent(repo, store_env)
    assert_builds_after_growing(repo, spec, store_env, small_fs, FILL_BYTES)


def test_a_silent_stage_that_fills_the_store_is_reported_as_out_of_space(
    repo: Repo, small_fs: Path, store_env: dict[str, str]
) -> None:
    spec = make_spec(repo, f"sh -c '{WRITE_ZEROS}'")
    result = build(repo, spec, store_env, "--json")
    assert result.returncode == 1
    assert "no space left on the store's filesystem" in fill_reason(result), result.stdout


def test_data_larger_than_the_free_space_fails_clearly(repo: Repo, small_fs: Path, store_env: dict[str, str]) -> None:
    raw = os.urandom(4 << 20)
    spec = make_spec(repo, "sh -c 'wc -c < ${inputs.raw} > ${outputs.out}'", raw=raw)
    result = build(repo, spec, store_env, "--json")
    assert result.returncode == 1
    assert "no space left on the store's filesystem" in fill_reason(result), result.stdout
    assert_consistent(repo, store_env)
    assert_builds_after_growing(repo, spec, store_env, small_fs, len(f"{len(raw)}\n"))


def test_a_full_disk_while_registering_fails_clearly(repo: Repo, small_fs: Path, store_env: dict[str, str]) -> None:
    """The stage leaves 48 KiB: enough for the action cache and the lock, not the registry."""
    spec = make_spec(repo, FILL_UP_TO)
    result = repo.modelspec("build", spec, env=store_env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr[-600:]
    assert "registry" in result.stderr and "disk is full" in result.stderr, result.stderr
    assert_consistent(repo, store_env)
    grow(small_fs)
    assert build(repo, spec, store_env).returncode == 0


@pytest.fixture
def read_only_store(repo: Repo) -> Iterator[tuple[str, Path]]:
    """A built workspace whose store is then bind-mounted read-only over itself."""
    spec = make_spec(repo, f"sh -c '{WRITE_ZEROS}'")
    assert states(repo.build_json(spec, "fill.bytes=1000")) == {"disk:fill": "ran"}
    store = repo.path / ".modelspec"
    mount("--bind", str(store), str(store))
    try:
        mount("-o", "remount,bind,ro", str(store))
        yield spec, store
    finally:
        if is_mounted(store):
            unmount(store)


def test_a_read_only_store_is_a_clear_error(repo: Repo, read_only_store: tuple[str, Path]) -> None:
    spec, store = read_only_store
    with pytest.raises(OSError, match="Read-only file system"):
        (store / "probe").write_text("the mount really is read-only")
    result = build(repo, spec, {}, "fill.bytes=2000")
    assert result.returncode == 1
    assert "read-only file system" in result.stderr.lower(), result.stderr
    assert "point MODELSPEC_HOME at a writable directory" in result.stderr
    noop = build(repo, spec, {}, "fill.bytes=1000")
    assert noop.returncode == 0 or "read-only file system" in noop.stderr.lower(), noop.stdout + noop.stderr
    unmount(store)  # writable again: the same build now completes
    assert not is_mounted(store)
    assert states(repo.build_json(spec, "fill.bytes=2000")) == {"disk:fill": "ran"}


def test_registry_queries_on_a_read_only_store_do_not_crash(repo: Repo, read_only_store: tuple[str, Path]) -> None:
    result = repo.modelspec("versions", "disk")
    assert "Traceback" not in result.stderr, result.stderr[-600:]
    assert result.returncode == 0 or "read-only" in result.stderr.lower()


def fill_the_disk(point: Path) -> None:
    """Fill the filesystem to its last byte, as something else on the machine could."""
    with pytest.raises(OSError, match="No space left on device"), open(point / "filler", "wb") as filler:
        while True:
            filler.write(bytes(1 << 16))
            filler.flush()
    stats = os.statvfs(point)
    assert stats.f_bavail * stats.f_frsize == 0


def test_on_a_full_disk_reading_commands_work_and_gc_frees_space(
    repo: Repo, small_fs: Path, store_env: dict[str, str]
) -> None:
    """Issue 20 item 17: the build's hint says to run gc, so gc must run on a full disk; and
    `versions`, `verify --all` and `audit --verify` only read, so they must too."""
    spec = make_spec(repo, f"sh -c '{WRITE_ZEROS}'")
    repo.write("modelspec.yaml", "retention: {grace: 0s, keep_last: 1}\n")
    repo.commit("retention")
    for size in (600_000, 600_001):
        assert build(repo, spec, store_env, f"fill.bytes={size}").returncode == 0
    repo.modelspec("promote", "disk@1.0.1", "production", env=store_env, check=True)
    fill_the_disk(small_fs)

    full = build(repo, spec, store_env, "fill.bytes=5000")
    assert full.returncode == 1
    assert "modelspec gc" in full.stderr, full.stderr  # the hint gc must live up to
    for args in (["versions", "disk"], ["verify", "--all"], ["audit", "--verify"], ["show", "disk@production"]):
        result = repo.modelspec(*args, env=store_env)
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    assert "audit log intact" in repo.modelspec("audit", "--verify", env=store_env).stdout

    gc = repo.modelspec("gc", "--json", env=store_env)
    assert "Traceback" not in gc.stderr, gc.stderr[-3000:]
    assert gc.returncode == 0, gc.stdout + gc.stderr
    report = json.loads(gc.stdout)
    assert list(report["retire"]) == ["disk@1.0.0"]
    assert report["bytes"] >= 600_000

    assert build(repo, spec, store_env, "fill.bytes=5000").returncode == 0
    assert repo.modelspec("audit", "--verify", env=store_env).returncode == 0
    assert_consistent(repo, store_env)


def test_on_a_full_disk_without_the_reserve_gc_first_sweeps_what_needs_no_registry_write(
    repo: Repo, small_fs: Path, store_env: dict[str, str]
) -> None:
    """A store that filled up before it had a reserve: gc cannot open the registry for
    writing, so it first sweeps the bytes of a version retired earlier (held then by the
    grace period), and then runs as usual."""
    spec = make_spec(repo, f"sh -c '{WRITE_ZEROS}'")
    repo.write("modelspec.yaml", "retention: {grace: 1h, keep_last: 1}\n")
    repo.commit("retention")
    for size in (900_000, 900_001):  # after the sweep, room for a build beside the reserve made again
        assert build(repo, spec, store_env, f"fill.bytes={size}").returncode == 0
    held = repo.modelspec("gc", "--json", env=store_env, check=True)
    assert list(json.loads(held.stdout)["retire"]) == ["disk@1.0.0"] and json.loads(held.stdout)["bytes"] < 900_000
    repo.write("modelspec.yaml", "retention: {grace: 0s, keep_last: 1}\n")
    repo.commit("no grace")
    (small_fs / "home" / "reserve").unlink()
    fill_the_disk(small_fs)

    gc = repo.modelspec("gc", "--json", env=store_env)
    assert "Traceback" not in gc.stderr, gc.stderr[-3000:]
    assert gc.returncode == 0, gc.stdout + gc.stderr
    assert json.loads(gc.stdout)["bytes"] >= 900_000
    assert build(repo, spec, store_env, "fill.bytes=5000").returncode == 0
    assert repo.modelspec("audit", "--verify", env=store_env).returncode == 0
    assert_consistent(repo, store_env)


def test_no_room_for_the_chunks_of_a_large_output_leaves_it_whole(repo: Repo, tmp_path: Path) -> None:
    """A 5 MiB output fits the 8 MiB store, its chunks (5 MiB more) do not: the build succeeds
    with the output stored whole (gc cuts it once there is room), and nothing half-written
    stays behind."""
    point = tmp_path / "eight"
    point.mkdir()
    mount("-t", "tmpfs", "-o", "size=8m", "tmpfs", str(point))
    try:
        env = {"MODELSPEC_HOME": str(point / "home")}
        spec = make_spec(repo, "sh -c 'head -c 5242880 /dev/urandom > ${outputs.out}'")
        result = build(repo, spec, env, "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        assert not (point / "home" / "recipes").exists() or not list((point / "home" / "recipes").rglob("*"))
        assert_consistent(repo, env)
        repo.modelspec("checkout", spec, "--out", "o", env=env, check=True)
        assert (repo.path / "o" / "fill" / "fill.bin").stat().st_size == 5 << 20
    finally:
        unmount(point)


def test_a_large_object_that_cannot_be_cut_for_lack_of_room_is_pushed_whole(tmp_path: Path) -> None:
    """A store with room for a large object's whole copy but not for its chunks keeps it
    whole; a push, which would cut it, sends it whole instead of failing."""
    from modelspec.store.blobs import RemoteConfig, open_blobs
    from modelspec.store.objects import LocalStore
    from modelspec.store.remote import RemoteStore
    from modelspec.store.remote_objects import object_name

    point = tmp_path / "eight"
    point.mkdir()
    mount("-t", "tmpfs", "-o", "size=8m", "tmpfs", str(point))
    try:
        data = os.urandom(5 << 20)
        (tmp_path / "model.bin").write_bytes(data)
        local = LocalStore(point / "store")
        local.tmp.mkdir(parents=True)
        digest = local.put_file(tmp_path / "model.bin")
        assert local.is_whole(digest) and not local.chunks.has(digest)  # no room for its chunks
        remote = RemoteStore(open_blobs(RemoteConfig((tmp_path / "shared").as_uri())))
        assert remote.upload(local, [digest]).transferred == 1
        assert (tmp_path / "shared" / object_name(digest)).read_bytes() == data
        assert remote.read_bytes(digest) == data
    finally:
        unmount(point)


@pytest.mark.parametrize("size", [2 << 20, 6 << 20], ids=["copied-from-memory", "copied-by-the-kernel"])
def test_a_checkout_copy_that_runs_out_of_room_leaves_no_half_written_file(tmp_path: Path, size: int) -> None:
    """An artifact copied out of the store (checkout, export) onto a filesystem without room for
    it fails with the filesystem's error and leaves nothing at its place: a partial file there
    would pass for the artifact."""
    from modelspec.store.objects import Entry, LocalStore

    store = LocalStore(tmp_path / "store", chunking=None)
    store.tmp.mkdir(parents=True)
    data = os.urandom(size)
    digest = store.put_bytes(data)
    point = tmp_path / "one"
    point.mkdir()
    mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point))
    try:
        with pytest.raises(OSError) as raised:
            store.restore(Entry("file", digest, size), point / "out" / "model.bin", link=False)
        assert raised.value.errno == errno.ENOSPC
        assert not (point / "out" / "model.bin").exists()
    finally:
        unmount(point)
