"""The workspace through the command line (issue 11 §4): `init`, the default schedule,
checkouts under the workspace root, what a stage's environment holds. Real git
repositories, real builds; every command is the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def run(repo: Repo, *args: str, cwd: Path | None = None, code: int = 0, env: dict[str, str] | None = None) -> Any:
    """The real CLI from `cwd` (default the repository root): exit `code`, never a traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "modelspec", *args],
        cwd=cwd or repo.path,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )
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
    return keys


# -- init ---------------------------------------------------------------------------------------


def test_init_writes_at_the_repository_root_from_a_subdirectory(repo: Repo) -> None:
    tiny(repo)
    (repo.path / "src" / "deep").mkdir()
    result = run(repo, "init", cwd=repo.path / "src" / "deep")
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

    from modelspec.gc import DEFAULT_GRACE
    from modelspec.limits import DEFAULTS
    from modelspec.schedule import DEFAULT_SCHEDULE
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
