"""Code refs and code snapshots on real git repositories."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from conftest import Repo

from modelspec.errors import GitError
from modelspec.resolve.gitcode import (
    CodeFile,
    code_digest,
    committed_files,
    dirty_files,
    escaping_symlinks,
    export_files,
    files_under,
    resolve_commit,
    working_files,
)


@pytest.fixture
def code(repo: Repo) -> Repo:
    """src/ (a plain file, an executable, an inner symlink), lib/, src2/ and a README."""
    repo.write("src/a.py", "print('a')\n")
    repo.write("src/run.sh", "#!/bin/sh\necho run\n").chmod(0o755)
    repo.write("src/my file.py", "spaces = True\n")
    os.symlink("a.py", repo.path / "src" / "link.py")
    repo.write("lib/b.py", "B = 1\n")
    repo.write("src2/c.py", "C = 1\n")
    repo.write("README", "readme\n")
    repo.write(".gitignore", "*.log\n")
    repo.commit("initial")
    return repo


def rev(repo: Repo, ref: str) -> str:
    return str(repo.git("rev-parse", ref).strip())


def test_resolve_commit_head_branch_tag_and_short_sha(code: Repo) -> None:
    first = rev(code, "HEAD")
    code.git("branch", "feature")
    code.git("tag", "v1")
    code.git("tag", "-a", "v1-annotated", "-m", "release")
    code.write("README", "changed\n")
    second = code.commit("second")
    path = code.path
    assert resolve_commit(path, "HEAD").sha == second
    assert resolve_commit(path, "main").sha == second
    assert resolve_commit(path, "HEAD~1").sha == first
    assert resolve_commit(path, "feature").sha == first
    assert resolve_commit(path, "v1").sha == first
    assert resolve_commit(path, "v1-annotated").sha == first  # peeled to its commit
    assert resolve_commit(path, first[:10]).sha == first
    assert resolve_commit(path, "HEAD").time == int(code.git("log", "-1", "--format=%ct").strip())


@pytest.mark.parametrize("ref", ["nope", "HEAD~5", "HEAD:README", "0" * 40, "v1..main"])
def test_resolve_commit_refuses_what_names_no_commit(code: Repo, ref: str) -> None:
    with pytest.raises(GitError, match="does not name a commit"):
        resolve_commit(code.path, ref)


def test_resolve_commit_does_not_take_a_ref_for_an_option(code: Repo) -> None:
    before = sorted(p.name for p in code.path.iterdir())
    try:
        with pytest.raises(GitError):
            resolve_commit(code.path, "--output=written")
    finally:
        assert sorted(p.name for p in code.path.iterdir()) == before


def test_resolve_commit_outside_a_repository(tmp_path: Path) -> None:
    with pytest.raises(GitError):
        resolve_commit(tmp_path, "HEAD")


def test_committed_files_lists_modes_and_blobs(code: Repo) -> None:
    head = rev(code, "HEAD")
    files = {f.path: f for f in committed_files(code.path, head, ["src"])}
    assert set(files) == {"src/a.py", "src/run.sh", "src/my file.py", "src/link.py"}
    assert files["src/a.py"].mode == "100644"
    assert files["src/run.sh"].mode == "100755"
    assert files["src/link.py"].mode == "120000"
    for path, item in files.items():
        assert item.blob == rev(code, f"HEAD:{path}")
    picked = committed_files(code.path, head, ["src/a.py", "README", "src/a.py"])
    assert sorted(f.path for f in picked) == ["README", "src/a.py"]
    assert committed_files(code.path, head, []) == []
    assert committed_files(code.path, head, ["no/such/dir"]) == []


def test_committed_files_of_an_older_commit(code: Repo) -> None:
    old = rev(code, "HEAD")
    old_blob = rev(code, "HEAD:src/a.py")
    code.write("src/a.py", "print('new')\n")
    code.commit("change a")
    (item,) = committed_files(code.path, old, ["src/a.py"])
    assert item.blob == old_blob != rev(code, "HEAD:src/a.py")


def test_files_under_is_by_path_component() -> None:
    files = [CodeFile(p, "100644", "0" * 40) for p in ["src/a.py", "src2/b.py", "src", "srcx"]]
    assert [f.path for f in files_under(files, ["src"])] == ["src/a.py", "src"]
    assert [f.path for f in files_under(files, ["src/"])] == ["src/a.py", "src"]
    assert [f.path for f in files_under(files, ["src2/b.py"])] == ["src2/b.py"]
    assert files_under(files, []) == []


def test_dirty_files_clean_tree(code: Repo) -> None:
    assert dirty_files(code.path, rev(code, "HEAD"), ["src", "lib"]) == []
    assert dirty_files(code.path, rev(code, "HEAD"), []) == []


def test_dirty_files_sees_modified_untracked_and_staged_under_the_paths_only(code: Repo) -> None:
    head = rev(code, "HEAD")
    code.write("src/a.py", "print('edited')\n")          # modified
    code.write("src/my file.py", "spaces = False\n")     # modified, with a space
    code.write("src/new/untracked.py", "x = 1\n")        # untracked, in a new directory
    code.write("lib/staged.py", "y = 2\n")               # staged new file
    code.git("add", "lib/staged.py")
    code.write("lib/b.py", "B = 2\n")                    # staged modification
    code.git("add", "lib/b.py")
    code.write("README", "edited outside\n")             # outside the paths
    code.write("src2/c.py", "C = 2\n")                   # a sibling that shares a prefix
    code.write("elsewhere/new.py", "z = 3\n")            # untracked outside
    code.write("src/debug.log", "ignored\n")             # ignored by .gitignore
    assert dirty_files(code.path, head, ["src", "lib"]) == [
        "lib/b.py", "lib/staged.py", "src/a.py", "src/my file.py", "src/new/untracked.py",
    ]
    assert dirty_files(code.path, head, ["src/a.py"]) == ["src/a.py"]
    assert dirty_files(code.path, head, ["src2"]) == ["src2/c.py"]


def test_dirty_files_sees_deletions_and_renames(code: Repo) -> None:
    head = rev(code, "HEAD")
    (code.path / "src" / "run.sh").unlink()
    code.git("mv", "src/a.py", "src/renamed.py")
    dirty = dirty_files(code.path, head, ["src"])
    assert "src/run.sh" in dirty
    assert "src/renamed.py" in dirty


def test_dirty_files_against_an_older_commit(code: Repo) -> None:
    old = rev(code, "HEAD")
    code.write("src/a.py", "print('v2')\n")
    code.commit("v2")
    assert dirty_files(code.path, rev(code, "HEAD"), ["src"]) == []
    assert dirty_files(code.path, old, ["src"]) == ["src/a.py"]
    assert dirty_files(code.path, old, ["lib"]) == []


def test_code_digest_same_for_committed_and_identical_working_files(code: Repo) -> None:
    head = rev(code, "HEAD")
    committed = committed_files(code.path, head, ["src", "lib"])
    working = working_files(code.path, ["src", "lib"])
    assert sorted(committed, key=lambda f: f.path) == working
    assert code_digest(committed) == code_digest(working)
    assert code_digest(list(reversed(committed))) == code_digest(committed)
    assert code_digest(committed).startswith("blake3:")


@pytest.mark.parametrize(
    "change",
    ["content", "exec bit", "new file", "deleted file", "symlink target"],
)
def test_code_digest_changes_with_any_declared_file(code: Repo, change: str) -> None:
    before = code_digest(working_files(code.path, ["src"]))
    src = code.path / "src"
    if change == "content":
        (src / "a.py").write_text("print('b')\n")
    elif change == "exec bit":
        (src / "a.py").chmod(0o755)
    elif change == "new file":
        (src / "extra.py").write_text("")
    elif change == "deleted file":
        (src / "a.py").unlink()
    else:
        (src / "link.py").unlink()
        os.symlink("run.sh", src / "link.py")
    assert code_digest(working_files(code.path, ["src"])) != before


def test_code_digest_ignores_files_outside_the_paths(code: Repo) -> None:
    before = code_digest(working_files(code.path, ["src"]))
    code.write("README", "other\n")
    code.write("src2/c.py", "C = 3\n")
    code.write("src/debug.log", "ignored\n")
    assert code_digest(working_files(code.path, ["src"])) == before


def test_escaping_symlinks(code: Repo) -> None:
    src = code.path / "src"
    os.symlink("../../outside", src / "evil")
    os.symlink("/etc/passwd", src / "absolute")
    os.symlink("../..", src / "parent")
    os.symlink("../README", src / "inside")
    os.symlink("sub/../../lib/b.py", src / "roundabout")
    expected = ["src/absolute -> /etc/passwd", "src/evil -> ../../outside", "src/parent -> ../.."]
    assert escaping_symlinks(code.path, working_files(code.path, ["src"]), True) == expected
    head = code.commit("links")
    committed = committed_files(code.path, head, ["src"])
    assert escaping_symlinks(code.path, committed, False) == expected
    assert escaping_symlinks(code.path, committed_files(code.path, head, ["lib"]), False) == []


def test_export_files_from_the_commit(code: Repo, tmp_path: Path) -> None:
    head = rev(code, "HEAD")
    code.write("src/a.py", "print('uncommitted')\n")  # must not leak into the export
    dest = tmp_path / "export"
    export_files(code.path, committed_files(code.path, head, ["src", "lib"]), dest,
                 from_working_tree=False)
    assert (dest / "src" / "a.py").read_bytes() == b"print('a')\n"
    assert (dest / "src" / "my file.py").read_bytes() == b"spaces = True\n"
    assert (dest / "lib" / "b.py").read_bytes() == b"B = 1\n"
    assert stat.S_IMODE((dest / "src" / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "src" / "a.py").stat().st_mode) == 0o644
    assert os.readlink(dest / "src" / "link.py") == "a.py"
    assert not (dest / "README").exists() and not (dest / "src2").exists()


def test_export_files_from_the_working_tree(code: Repo, tmp_path: Path) -> None:
    code.write("src/a.py", "print('uncommitted')\n")
    (code.path / "src" / "a.py").chmod(0o755)
    code.write("src/debug.log", "ignored\n")
    dest = tmp_path / "export"
    export_files(code.path, working_files(code.path, ["src"]), dest, from_working_tree=True)
    assert (dest / "src" / "a.py").read_bytes() == b"print('uncommitted')\n"
    assert stat.S_IMODE((dest / "src" / "a.py").stat().st_mode) == 0o755
    assert os.readlink(dest / "src" / "link.py") == "a.py"
    assert not (dest / "src" / "debug.log").exists()
