"""Temp files belong to a process by a lock it holds, not by its PID (modelspec/owner.py).

A PID means nothing from another PID namespace: `verify --all` run in a second container
sharing the workspace once deleted a running build's scratch directory because the build's
PID did not exist in its namespace. Here a live process whose PID is meaningless to us
(as seen from another namespace) owns a scratch directory; cleaning must keep it while that
process lives and remove it once it is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import Repo

from modelspec.store import owner

# A process whose PID does not exist here, as a build in another PID namespace would appear.
FOREIGN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from modelspec.store import owner
    owner.TOKEN = "4194303x0badf00d"
    tmp = Path(sys.argv[1])
    scratch = tmp / (owner.temp_prefix(tmp) + "run-abc")
    scratch.mkdir()
    (scratch / "half-written").write_text("x")
    print("ready", flush=True)
    time.sleep(120)
    """
)


def start_foreign(tmp: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", FOREIGN, str(tmp)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def test_verify_all_keeps_the_scratch_of_a_live_build_from_another_pid_namespace(repo: Repo) -> None:
    tmp = repo.path / ".modelspec" / "tmp"
    foreign = start_foreign(tmp)
    scratch = tmp / "4194303x0badf00d-run-abc"
    try:
        result = repo.modelspec("verify", "--all")
        assert result.returncode == 0, result.stderr
        assert (scratch / "half-written").exists(), "a live build's scratch directory was removed"
    finally:
        foreign.kill()
        foreign.wait()
        assert foreign.stdout is not None
        foreign.stdout.close()
    # Its owner is gone now (however it died): the next command removes what it left.
    assert repo.modelspec("verify", "--all").returncode == 0
    assert not scratch.exists()
    assert not list(tmp.glob("4194303x0badf00d*"))


def test_files_named_after_a_dead_pid_without_an_owner_are_removed(tmp_path: Path) -> None:
    (tmp_path / "12345-run-old").mkdir()  # the naming of earlier releases
    (tmp_path / "12345-abc.tmp").write_text("x")
    mine = tmp_path / f"{owner.temp_prefix(tmp_path)}keep.tmp"
    mine.write_text("x")
    removed: list[str] = []
    owner.remove_orphans(tmp_path, lambda path: removed.append(path.name))
    assert sorted(removed) == ["12345-abc.tmp", "12345-run-old"]


def test_a_claim_taken_for_dead_before_it_is_locked_is_claimed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cleaner that removes the claiming file between its creation and the rename
    real_rename = owner.os.rename
    calls = []

    def racing_rename(src: str | Path, dst: str | Path) -> None:
        if not calls:
            calls.append(src)
            Path(src).unlink()
        real_rename(src, dst)

    monkeypatch.setattr(owner.os, "rename", racing_rename)
    monkeypatch.setattr(owner, "_held", {})
    prefix = owner.temp_prefix(tmp_path)
    assert calls and (tmp_path / f"{prefix[:-1]}.owner").exists()
    assert owner._locked(tmp_path / f"{prefix[:-1]}.owner")


def test_threads_claiming_a_folder_at_once_do_not_wait_for_each_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stages run in threads (`build -j`, `reproduce -j`): two of them taking the first temp
    name in a folder at the same instant must not block on each other's owner lock (flock
    belongs to an open file, not a process), which hung `reproduce -j 2`."""
    import threading
    import time

    rename = owner.os.rename

    def slow_rename(source: Path, target: Path) -> None:  # widens the window between lock and name
        time.sleep(0.05)
        rename(source, target)

    monkeypatch.setattr(owner.os, "rename", slow_rename)
    for round_ in range(5):
        folder = tmp_path / f"tmp{round_}"
        start = threading.Barrier(4)
        prefixes: list[str] = []

        def claim(folder: Path = folder, start: threading.Barrier = start, prefixes: list[str] = prefixes) -> None:
            start.wait()
            prefixes.append(owner.temp_prefix(folder))

        threads = [threading.Thread(target=claim, daemon=True) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        assert not any(thread.is_alive() for thread in threads), f"round {round_}: a thread is stuck"
        assert len(set(prefixes)) == 1 and len(prefixes) == 4
        assert [p.name for p in folder.iterdir()] == [f"{owner.TOKEN}.owner"]


# A process that owns a temp file and forks a child that only waits (as a worker process of the
# chunk layer does between its fork and its first task), then waits itself.
FORKING = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from modelspec.store import owner
    tmp = Path(sys.argv[1])
    (tmp / (owner.temp_prefix(tmp) + "pack")).write_text("half a pack")
    child = os.fork()
    if child == 0:
        os.write(1, b"child running\\n")  # one write each: the two lines never interleave
        time.sleep(120)
        os._exit(0)
    os.write(1, b"%d\\n" % child)
    time.sleep(120)
    """
)


def test_a_forked_child_does_not_keep_a_killed_parents_temp_files(tmp_path: Path) -> None:
    """The child's inherited descriptor of its parent's owner lock is closed at the fork (before
    the child's first step): once the parent is killed, its temp files are orphans at once,
    though the child still runs."""
    with subprocess.Popen([sys.executable, "-c", FORKING, str(tmp_path)], stdout=subprocess.PIPE, text=True) as parent:
        assert parent.stdout is not None
        lines = {parent.stdout.readline().strip() for _ in range(2)}  # the child has run (and let go)
        child = int(next(line for line in lines if line != "child running"))
        try:
            assert "child running" in lines
            parent.kill()
            parent.wait()
            owner.remove_orphans(tmp_path, lambda path: path.unlink())
            assert [p.name for p in tmp_path.iterdir()] == []
        finally:
            parent.kill()
            os.kill(child, signal.SIGKILL)
