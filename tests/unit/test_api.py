"""The library without click (issue 12 item 6): what the CLI does beyond parsing and printing,
called in-process on a real workspace with a SQLite registry; and the import contract that
keeps the CLI on `api`."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import time
import tomllib
from pathlib import Path

import pytest

import modelspec
from modelspec import api
from modelspec.build.loading import open_registry
from modelspec.build.registration import actor
from modelspec.errors import SpecError, UsageError
from modelspec.registry.versions import VersionDraft
from modelspec.store.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
CLI_MAY_IMPORT = {"api", "errors", "events", "text", "indented"}


def draft(n: int) -> VersionDraft:
    cid = "blake3:" + f"{n:02x}" * 32
    return VersionDraft(
        name="fraud",
        spec_version="1.0",
        content_id=cid,
        lock="blake3:" + "1" * 64,
        commit="c" * 40,
        environment=None,
        hermetic=True,
        author="ana",
        host="build-1",
        tool_version="0.1.0",
        record={"params": {}, "data": {}, "stages": {}, "environment": None, "dirty": False},
        artifacts={"train.model": {"type": "file", "digest": "blake3:" + f"{n + 100:03x}" * 21 + "a", "size": 3}},
        metrics={"auc": 0.5 + n / 100},
        lineage=[],
    )


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """A workspace (not a git repository) whose registry holds fraud@1.0.0, 1.0.1 and 1.0.2;
    retention keeps the newest only."""
    found = Workspace(tmp_path, tmp_path / ".modelspec", {"retention": {"keep_last": 1, "grace": "0s"}})
    registry = open_registry(found)
    try:
        for n in range(3):
            registry.register(draft(n))
    finally:
        registry.close()
    return found


def test_the_cli_contract_names_every_module_the_cli_must_not_import() -> None:
    """A module added to modelspec is either one the CLI (and the web view beside it) may
    import or forbidden to them: the contract cannot silently miss it."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    fronts = ["modelspec.cli", "modelspec.web"]
    forbidden = next(c for c in contracts if c.get("source_modules") == fronts)["forbidden_modules"]
    modules = {info.name for info in pkgutil.iter_modules(modelspec.__path__)} - {"__main__", "cli", "web"}
    assert {name.removeprefix("modelspec.") for name in forbidden} == modules - CLI_MAY_IMPORT
    assert forbidden == sorted(forbidden)


def test_a_catalog_closes_its_registry_however_the_block_ends(workspace: Workspace) -> None:
    with pytest.raises(RuntimeError), api.open_catalog(workspace, read_only=True) as catalog:
        assert [row["version"] for row in catalog.versions("fraud")] == ["1.0.0", "1.0.1", "1.0.2"]
        assert catalog.registry.engine.pool.checkedin() == 1  # the connection the query used, kept
        raise RuntimeError("the command failed")
    assert catalog.registry.engine.pool.checkedin() == 0


def test_catalog_actions_record_who_acted(workspace: Workspace) -> None:
    who = actor(workspace.root)  # the git user, else the OS user
    with api.open_catalog(workspace) as catalog:
        assert catalog.promote("fraud@1.0.1", "production") == ("fraud", [["1.0.1", 1.0]])
        assert catalog.promote("fraud@1.0.2", "production", 0.25)[1] == [["1.0.1", 0.75], ["1.0.2", 0.25]]
        assert catalog.rollback("fraud", "production") == [["1.0.1", 1.0]]
        version, changed = catalog.pin("fraud@1.0.0")
        assert (version.ref, changed) == ("fraud@1.0.0", True)
        assert catalog.pin("fraud@1.0.0")[1] is False
        version, tags = catalog.tag("fraud@1.0.0", {"stage": "approved", "team": "risk"})
        assert (version.ref, tags) == ("fraud@1.0.0", {"stage": "approved", "team": "risk"})
        assert catalog.remove_alias("fraud", "production") == [["1.0.1", 1.0]]
        events = catalog.registry.events()
    acts = [e for e in events if e["kind"] != "build"]
    assert [e["kind"] for e in acts] == ["promote", "promote", "rollback", "pin", "tag", "tag", "alias.rm"]
    assert {e["actor"] for e in acts} == {who}


def test_gc_without_a_registry_says_to_build_first(tmp_path: Path) -> None:
    empty = Workspace(tmp_path, tmp_path / ".modelspec")
    for run in (api.gc, api.du):
        with pytest.raises(UsageError, match="no registry in") as caught:
            run(empty)
        assert "modelspec build" in caught.value.hint
    assert not (tmp_path / ".modelspec" / "registry.db").exists()


def test_gc_dry_run_changes_nothing_and_du_says_what_gc_would_free(workspace: Workspace) -> None:
    planned = api.gc(workspace, dry_run=True)
    assert sorted(planned.retention.to_dict()["retire"]) == ["fraud@1.0.0", "fraud@1.0.1"]
    usage = api.du(workspace)
    assert set(usage["models"]["fraud"]["versions"]) == {"1.0.0", "1.0.1", "1.0.2"}
    assert usage["gc_would_free"] == planned.bytes
    done = api.gc(workspace)
    assert sorted(done.retention.to_dict()["retire"]) == ["fraud@1.0.0", "fraud@1.0.1"]
    with api.open_catalog(workspace, read_only=True) as catalog:
        assert [row["status"] for row in catalog.versions("fraud")] == ["retired", "retired", "active"]
        assert [e["kind"] for e in catalog.registry.events()].count("gc") == 1  # the dry run left no trace


def test_the_gc_daemon_runs_when_due_by_its_clock(workspace: Workspace) -> None:
    """The daemon's job with a fake clock: a new daemon starts counting from now; after missed
    fire times, one catch-up run that gc audits as a "schedule" event."""
    schedule = api.gc_schedule(workspace)  # the default: daily at 03:00
    now = [time.time()]
    runs: list[tuple[float, int]] = []

    def ran(at: float, report: api.GcReport) -> None:
        runs.append((at, len(report.retention.retire)))

    assert api.gc_daemon(workspace, schedule, ran, once=True, clock=lambda: now[0]) == 0
    assert json.loads((workspace.home / "schedule.json").read_text()) == {"last_run": now[0]}
    now[0] += 3 * 86400  # three fire times missed
    assert api.gc_daemon(workspace, schedule, ran, once=True, clock=lambda: now[0]) == 1
    assert runs == [(now[0], 2)]
    assert api.gc_daemon(workspace, schedule, ran, once=True, clock=lambda: now[0]) == 0  # caught up
    with api.open_catalog(workspace, read_only=True) as catalog:
        scheduled = [e for e in catalog.registry.events() if e["kind"] == "schedule"]
    assert len(scheduled) == 1 and scheduled[0]["actor"] == "daemon"


def test_systemd_units_are_written_where_asked(workspace: Workspace, tmp_path: Path) -> None:
    units = api.systemd_units("30 4 * * 1", workspace)
    written = api.install_systemd_units(units, tmp_path / "systemd")
    assert sorted(p.name for p in written) == sorted(units)
    timer = next(p for p in written if p.suffix == ".timer")
    assert "OnCalendar=Mon *-*-* 4:30:00" in timer.read_text()


def test_validate_paths_reports_every_problem_of_workspace_files_and_specs_once(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "modelspec.yaml").write_text("retention:\n  keep_last: many\n")
    repo = tmp_path / "b"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "fraud.yaml").write_text("name: fraud\n")
    with pytest.raises(SpecError) as caught:
        api.validate_paths([tmp_path / "a" / "modelspec.yaml", repo / "fraud.yaml"])
    assert {Path(p.location.file).name for p in caught.value.problems} == {"modelspec.yaml", "fraud.yaml"}
    # A workspace file given and also read for the spec beside it: its problem once.
    (repo / "modelspec.yaml").write_text("retention:\n  keep_last: many\n")
    with pytest.raises(SpecError) as caught:
        api.validate_paths([repo / "modelspec.yaml", repo / "fraud.yaml"])
    assert [p.message for p in caught.value.problems] == ["'many' is not of type integer"]
    assert "modelspec.yaml" in caught.value.hint
