"""The workspace through the command line (issue 11 §4): `init`, the default schedule,
checkouts under the workspace root, what a stage's environment holds. Real git
repositories, real builds; the commands run in-process (click's CliRunner), and the real
CLI in a subprocess where a test is about what a process does (init from a subdirectory,
a systemd timer for this interpreter, a stage killed mid-print)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Repo

TINY = """\
modelspec: 1
name: tiny
version: "1.0"
hermetic: off
code: {repo: ..}
config: {dir: conf}
stages:
  s:
    cmd: sh src/s.sh ${config.v} ${outputs.out}
    code: [src/s.sh]
    params: [v]
    outputs: {out: out.txt}
artifacts: [s.out]
"""


def tiny(repo: Repo) -> None:
    """A one-stage model, and an environment lock (an input: it must stay committed)."""
    repo.write("specs/tiny.yaml", TINY, dedent=False)
    repo.write("src/s.sh", 'echo "$1" > "$2"\n')
    repo.write("conf/config.yaml", "v: 1\n")
    repo.write("env/requirements.lock", "")
    repo.commit("tiny")


def run(
    repo: Repo,
    *args: str,
    cwd: Path | None = None,
    code: int = 0,
    env: dict[str, str] | None = None,
    real: bool = False,
) -> Any:
    """The CLI from `cwd` (default the repository root): exit `code`, never a traceback.
    In-process (click's CliRunner), or with `real` the real CLI in a subprocess."""
    if real:
        result = subprocess.run(
            [sys.executable, "-m", "modelspec", *args],
            cwd=cwd or repo.path,
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=300,
        )
    else:
        result = repo.cli(*args, env=env, cwd=cwd)
    assert result.returncode == code, f"{args} → {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr
    return result


def uncommented(text: str) -> str:
    """The workspace file with every setting line uncommented (`# key: value` → `key: value`)."""
    return re.sub(r"(?m)^# ( *[a-z_]+:.*)$", r"\1", text)


def schema_keys(schema: dict[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for name, sub in schema.get("properties", {}).items():
        keys.add(prefix + name)
        keys |= schema_keys(sub, f"{prefix}{name}.")
        for form in sub.get("oneOf", []):  # `remote:` is a URL or a mapping
            keys |= schema_keys(form, f"{prefix}{name}.")
    return keys


# -- init ---------------------------------------------------------------------------------------


def test_init_writes_at_the_repository_root_from_a_subdirectory(repo: Repo) -> None:
    tiny(repo)
    (repo.path / "src" / "deep").mkdir()
    result = run(repo, "init", cwd=repo.path / "src" / "deep", real=True)
    assert (repo.path / "modelspec.yaml").is_file() and not (repo.path / "src" / "deep" / "modelspec.yaml").exists()
    assert "wrote ../../modelspec.yaml" in result.stdout
    assert "commit: ../../modelspec.yaml ../../.gitignore" in result.stdout
    lines = (repo.path / ".gitignore").read_text().splitlines()
    assert {"/.modelspec/", "/artifacts/", "/specs/*.lock"} <= set(lines)
    # The file it wrote is a valid workspace file, and so is every setting in it, uncommented.
    assert run(repo, "validate", "modelspec.yaml").stdout.strip() == "modelspec.yaml: ok (workspace file)"
    every = repo.write("u/modelspec.yaml", uncommented((repo.path / "modelspec.yaml").read_text()))
    run(repo, "validate", str(every))
    assert run(repo, "plan", "specs/tiny.yaml").returncode == 0  # and the commands read it as one


def test_init_names_every_workspace_setting_with_the_defaults_the_code_uses(repo: Repo) -> None:
    import yaml

    from modelspec.retention.gc import DEFAULT_GRACE
    from modelspec.retention.schedule import DEFAULT_SCHEDULE
    from modelspec.sandbox.limits import DEFAULTS
    from modelspec.units import parse_duration

    tiny(repo)
    run(repo, "init")

    settings = yaml.safe_load(uncommented((repo.path / "modelspec.yaml").read_text()))
    written = set()
    for key, value in settings.items():
        written.add(key)
        written |= {f"{key}.{sub}" for sub in (value if isinstance(value, dict) else {})}
    schema = json.loads((Path(__file__).parents[2] / "schemas" / "workspace.schema.json").read_text())
    assert written == schema_keys(schema)  # a setting added to the schema must be added to init
    assert settings["store"] == ".modelspec"
    assert settings["retention"]["schedule"] == DEFAULT_SCHEDULE == "0 3 * * *"
    assert parse_duration(settings["retention"]["grace"]) == DEFAULT_GRACE
    assert settings["retention"]["keep_aliased"] is True and settings["retention"]["min_keep"] == 0
    for key in ("timeout", "processes", "tmp"):
        assert settings["limits"][key] == DEFAULTS[key]


def test_init_appends_to_a_gitignore_without_duplicating_and_keeps_environment_locks(repo: Repo) -> None:
    tiny(repo)
    repo.write("env/other.yaml", "modelspec: 1\nname: other\n")  # a spec beside an environment lock
    repo.write(".gitignore", "__pycache__/\n.modelspec/", dedent=False)  # no final newline
    (repo.path / ".gitignore").chmod(0o640)
    first = json.loads(run(repo, "init", "--json").stdout)
    assert first["added"] == ["/artifacts/", "/env/other.lock", "/specs/*.lock"]
    text = (repo.path / ".gitignore").read_text()
    assert text.startswith("__pycache__/\n.modelspec/\n") and text.count("modelspec/") == 1
    assert (repo.path / ".gitignore").stat().st_mode & 0o777 == 0o640
    again = json.loads(run(repo, "init", "--force", "--json").stdout)
    assert again["added"] == [] and again["overwritten"] is True
    assert (repo.path / ".gitignore").read_text() == text
    ignored = subprocess.run(
        [
            "git",
            "check-ignore",
            "--no-index",
            "specs/tiny.lock",
            "env/other.lock",
            "env/requirements.lock",
            ".modelspec/registry.db",
            "artifacts/tiny/s/out.txt",
        ],
        cwd=repo.path,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert ignored == ["specs/tiny.lock", "env/other.lock", ".modelspec/registry.db", "artifacts/tiny/s/out.txt"]


def test_after_init_a_build_and_checkout_leave_nothing_to_commit_but_the_init_files(repo: Repo) -> None:
    tiny(repo)
    run(repo, "init")
    run(repo, "build", "specs/tiny.yaml")
    run(repo, "checkout", "specs/tiny.yaml")
    assert (repo.path / "specs" / "tiny.lock").is_file() and (repo.path / "artifacts" / "tiny").is_dir()
    status = repo.git("status", "--porcelain", "--untracked-files=all").splitlines()
    assert sorted(status) == ["?? .gitignore", "?? modelspec.yaml"]


def test_init_refuses_to_overwrite_a_workspace_file_without_force(repo: Repo) -> None:
    tiny(repo)
    repo.write("modelspec.yaml", "retention: {keep_last: 3}\n")
    result = run(repo, "init", code=2)
    assert "modelspec.yaml already exists" in result.stderr and "modelspec init --force" in result.stderr
    assert (repo.path / "modelspec.yaml").read_text() == "retention: {keep_last: 3}\n"
    assert not (repo.path / ".gitignore").exists()  # nothing written
    refused = json.loads(run(repo, "init", "--json", code=2).stdout)
    assert refused["error"] == "UsageError" and "--force" in refused["hint"]
    run(repo, "init", "--force")
    assert "keep_last: 3" not in (repo.path / "modelspec.yaml").read_text()


# -- schedule install ---------------------------------------------------------------------------

FAKE_CRONTAB = """\
#!/bin/sh
# crontab(1) for tests: the user's table is the file $MODELSPEC_TEST_CRONTAB, never the real one.
case "$1" in
  -l) if [ -f "$MODELSPEC_TEST_CRONTAB" ]; then cat "$MODELSPEC_TEST_CRONTAB"; else echo "no crontab" >&2; exit 1; fi ;;
  -) cat > "$MODELSPEC_TEST_CRONTAB" ;;
  *) exit 2 ;;
esac
"""


def fake_cron(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose `crontab` edits a file, and whose home (systemd units) is a temp dir."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "crontab").write_text(FAKE_CRONTAB)
    (bin_dir / "crontab").chmod(0o755)
    table = tmp_path / "crontab.txt"
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "MODELSPEC_TEST_CRONTAB": str(table), "HOME": str(home)}
    return env, table


def ours(table: Path) -> list[str]:
    return [line for line in table.read_text().splitlines() if "modelspec gc" in line]


def test_schedule_install_without_a_schedule_installs_daily_at_three(repo: Repo, tmp_path: Path) -> None:
    tiny(repo)  # no modelspec.yaml at all
    env, table = fake_cron(tmp_path)
    table.write_text("5 * * * * echo someone else's job\n")
    result = run(repo, "schedule", "install", "--cron", env=env)
    assert ours(table) == [result.stdout.splitlines()[0].removeprefix("installed in crontab: ")]
    assert ours(table)[0].startswith(f"0 3 * * * cd {repo.path} && ")
    assert "schedule: '0 3 * * *' (the default: daily at 03:00" in result.stdout
    assert "5 * * * * echo someone else's job" in table.read_text()
    # --at replaces the line rather than adding one; the other job stays.
    again = run(repo, "schedule", "install", "--cron", "--at", "30 4 * * 1", env=env)
    assert [line.split(" cd ")[0] for line in ours(table)] == ["30 4 * * 1"]
    assert "(from --at)" in again.stdout and "someone else's job" in table.read_text()


def test_schedule_install_uses_the_workspace_schedule_unless_at_says_otherwise(repo: Repo, tmp_path: Path) -> None:
    tiny(repo)
    repo.write("modelspec.yaml", 'retention:\n  schedule: "15 1 * * *"\n')
    env, table = fake_cron(tmp_path)
    result = run(repo, "schedule", "install", "--cron", env=env)
    assert ours(table)[0].startswith("15 1 * * * ") and "retention.schedule in modelspec.yaml" in result.stdout
    run(repo, "schedule", "install", "--cron", "--at", "0 2 * * *", env=env)
    assert [line.split(" cd ")[0] for line in ours(table)] == ["0 2 * * *"]
    printed = run(repo, "schedule", "install", "--cron", "--print", env=env)
    assert printed.stdout.startswith("15 1 * * * cd ") and "modelspec.yaml" in printed.stderr


def test_schedule_install_systemd_default_timer(repo: Repo, tmp_path: Path) -> None:
    tiny(repo)
    env, _table = fake_cron(tmp_path)
    result = run(repo, "schedule", "install", "--systemd", env=env, real=True)
    units = sorted((tmp_path / "home" / ".config" / "systemd" / "user").iterdir())
    assert [unit.suffix for unit in units] == [".service", ".timer"]
    assert "OnCalendar=*-*-* 3:0:00" in units[1].read_text() and "Persistent=true" in units[1].read_text()
    assert "the default: daily at 03:00" in result.stdout and "systemctl --user enable --now" in result.stdout


def test_schedule_install_refuses_a_bad_cron_expression_and_says_where_it_came_from(repo: Repo, tmp_path: Path) -> None:
    tiny(repo)
    env, table = fake_cron(tmp_path)
    for bad in ("61 * * * *", "every day", "0 3 * *"):
        result = run(repo, "schedule", "install", "--cron", "--at", bad, env=env, code=2)
        assert f"error: --at: {bad!r} is not a cron expression" in result.stderr, result.stderr
        assert '"0 3 * * *"' in result.stderr  # the hint shows a valid one
    assert not table.exists()  # nothing installed
    repo.write("modelspec.yaml", 'retention:\n  schedule: "0 25 * * *"\n')
    result = run(repo, "schedule", "install", "--cron", env=env, code=2)
    assert "modelspec.yaml: retention.schedule: '0 25 * * *' is not a cron expression" in result.stderr
    assert not table.exists()


# -- checkout ---------------------------------------------------------------------------------


def test_checkout_from_a_subdirectory_writes_under_the_workspace_root(repo: Repo) -> None:
    tiny(repo)
    run(repo, "build", "specs/tiny.yaml")
    result = run(repo, "checkout", "../specs/tiny.yaml", cwd=repo.path / "src")
    placed = repo.path / "artifacts" / "tiny" / "s" / "out.txt"
    assert placed.read_text() == "1\n" and not (repo.path / "src" / "artifacts").exists()
    assert result.stdout.strip() == "s.out → ../artifacts/tiny/s/out.txt"
    shown = json.loads(run(repo, "checkout", "../specs/tiny.yaml", "--json", cwd=repo.path / "conf").stdout)
    assert shown == {"s.out": str(placed)}
    # --out is a path like any other: relative to where the command runs.
    run(repo, "checkout", "../specs/tiny.yaml", "--out", "here", cwd=repo.path / "src")
    assert (repo.path / "src" / "here" / "s" / "out.txt").read_text() == "1\n"


def test_checkouts_are_read_only_copies_that_cannot_reach_the_store(repo: Repo) -> None:
    tiny(repo)
    run(repo, "build", "specs/tiny.yaml")
    run(repo, "checkout", "specs/tiny.yaml")
    placed = repo.path / "artifacts" / "tiny" / "s" / "out.txt"
    assert placed.stat().st_mode & 0o777 == 0o444  # read-only, so an overwrite is noticed
    assert placed.stat().st_nlink == 1  # a copy: no store object shares its inode
    placed.chmod(0o644)
    placed.write_text("edited\n")  # the user's own copy to change
    assert run(repo, "verify", "--all").returncode == 0
    run(repo, "checkout", "specs/tiny.yaml")
    assert placed.read_text() == "1\n"


def test_a_checkout_again_leaves_the_files_that_hold_the_built_bytes_and_replaces_the_rest(repo: Repo) -> None:
    """A file still as the last checkout left it (read-only, its bytes, no other link) is not
    removed and written again; an edited one, a writable one or one with a second link is."""
    repo.write("specs/four.yaml", FOUR, dedent=False)
    repo.commit("four")
    run(repo, "build", "specs/four.yaml")
    run(repo, "checkout", "specs/four.yaml")
    placed = {s: repo.path / "artifacts" / "four" / s / "out.txt" for s in ("a", "b", "c", "d")}
    os.utime(placed["a"], ns=(10**18, 10**18))  # a time no file written now has
    placed["b"].chmod(0o644)
    placed["b"].write_text("edited\n")
    placed["c"].chmod(0o644)  # the right bytes, but writable
    os.link(placed["d"], repo.path / "elsewhere.txt")  # the right bytes, and a second name
    run(repo, "checkout", "specs/four.yaml")
    assert {s: p.read_text() for s, p in placed.items()} == {s: f"{s}\n" for s in placed}
    assert {s: oct(p.stat().st_mode & 0o777) for s, p in placed.items()} == {s: oct(0o444) for s in placed}
    assert placed["a"].stat().st_mtime_ns == 10**18  # left as it was, not written again
    assert all(placed[s].stat().st_nlink == 1 for s in placed)
    assert (repo.path / "elsewhere.txt").read_text() == "d\n"


FOUR = """\
modelspec: 1
name: four
version: "1.0"
hermetic: off
stages:
  a: {cmd: [sh, -c, "echo a > ${outputs.out}"], outputs: {out: out.txt}}
  b: {cmd: [sh, -c, "echo b > ${outputs.out}"], outputs: {out: out.txt}}
  c: {cmd: [sh, -c, "echo c > ${outputs.out}"], outputs: {out: out.txt}}
  d: {cmd: [sh, -c, "echo d > ${outputs.out}"], outputs: {out: out.txt}}
artifacts: [a.out, b.out, c.out, d.out]
"""


# -- what a stage's process sees ------------------------------------------------------------------

CRASH = """\
modelspec: 1
name: crash
version: "1.0"
hermetic: HERMETIC
code: {repo: ..}
stages:
  train:
    cmd: python3 src/crash.py ${outputs.model}
    code: [src/crash.py]
    outputs: {model: model.bin}
artifacts: [train.model]
"""
# Prints to a file-backed stdout, then dies the way the kernel kills a process (out of
# memory, a segfault in native code): no interpreter shutdown flushes a buffer.
CRASH_PY = """\
import os, signal, sys
for epoch in range(3):
    print(f"epoch {epoch} loss {1 / (epoch + 1):.2f}")
print("saving the model to", sys.argv[1])
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("hermetic", ["strict", "off"])
def test_the_last_lines_a_python_stage_prints_before_it_is_killed_are_in_the_log_tail(
    repo: Repo, hermetic: str
) -> None:
    repo.write("specs/crash.yaml", CRASH.replace("HERMETIC", hermetic), dedent=False)
    repo.write("src/crash.py", CRASH_PY, dedent=False)
    repo.commit("crash")
    result = run(repo, "build", "specs/crash.yaml", code=1, real=True)
    assert "last lines of the log" in result.stdout, result.stdout
    tail = result.stdout.split("last lines of the log", 1)[1]
    assert "epoch 2 loss 0.33" in tail and "saving the model to /" in tail, result.stdout
    log = (repo.path / ".modelspec" / "logs" / "crash" / "train.log").read_text()
    assert log.index("epoch 0") < log.index("saving the model")


HOME_SPEC = """\
modelspec: 1
name: home
version: "1.0"
hermetic: strict
code: {repo: ..}
config: {dir: conf}
stages:
  s:
    cmd: sh src/home.sh ${outputs.out} ${config.v}
    code: [src/home.sh]
    params: [v]
    outputs: {out: out.txt}
artifacts: [s.out]
"""
# A tool that caches under ~ (pip, matplotlib, torch hub): it writes, reads back, and
# reports what an earlier run left there.
HOME_SH = """\
ls -A "$HOME" > "$1.before"
mkdir -p "$HOME/.cache/tool" && echo "cached $2" > "$HOME/.cache/tool/entry"
{ echo "HOME=$HOME"; cat "$HOME/.cache/tool/entry"; echo "left by earlier runs: $(cat "$1.before")"; } > "$1"
rm "$1.before"
"""


def test_the_sandbox_home_is_writable_and_starts_empty(repo: Repo) -> None:
    repo.write("specs/home.yaml", HOME_SPEC, dedent=False)
    repo.write("src/home.sh", HOME_SH, dedent=False)
    repo.write("conf/config.yaml", "v: 1\n")
    repo.commit("home")
    run(repo, "build", "specs/home.yaml")
    run(repo, "build", "specs/home.yaml", "v=2")
    run(repo, "checkout", "specs/home.yaml")
    out = (repo.path / "artifacts" / "home" / "s" / "out.txt").read_text()
    assert out == "HOME=/ms/home\ncached 2\nleft by earlier runs: \n"
