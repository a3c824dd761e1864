"""push, fetch, pull and remote status against a real remote (moto S3 on loopback, and a
shared directory): whole versions, resumable, verified on the way in."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
from conftest import Repo
from pipeline import expected_d, make_pipeline
from test_remote_build import remote_setting
from test_remote_packs import corrupt_packed


def built(repo: Repo, setting: str) -> tuple[str, str]:
    repo.write("modelspec.yaml", setting)
    spec = make_pipeline(repo)
    report = repo.build_json(spec, "--no-push", in_process=True)
    return spec, report["versions"]["pipe"]["ref"]


def push(repo: Repo, *args: str) -> dict:
    result = repo.cli("push", *args, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("kind", ["s3", "file"])
def test_push_then_a_lost_store_is_fetched_back_and_pulled(
    kind: str, repo: Repo, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    _spec, ref = built(repo, remote_setting(kind, tmp_path, request))
    first = push(repo)
    assert first["versions"] == [ref] and first["transferred"] == first["objects"] > 0
    assert first["action_cache_entries"] == 4 and first["bytes"] > 0
    again = push(repo)  # nothing new: every existence check says it is there
    assert again["transferred"] == 0 and again["action_cache_entries"] == 0

    status = json.loads(repo.cli("remote", "status", "--json", check=True).stdout)
    assert status["not_on_remote"] == 0 and status["remote_objects"] >= first["objects"]
    assert [w["objects"] for w in status["workspaces"]] == [status["kept_objects"]]

    # The machine loses its store (the registry is shared, or kept): fetch brings it back.
    objects = repo.path / ".modelspec" / "objects"
    for folder in objects.rglob("*"):
        folder.chmod(folder.stat().st_mode | stat.S_IWUSR)
    shutil.rmtree(objects)
    assert repo.cli("verify", ref).returncode == 1
    fetched = json.loads(repo.cli("fetch", ref, "--json", check=True).stdout)
    assert fetched["transferred"] > 0
    assert repo.cli("verify", ref).returncode == 0

    pulled = json.loads(repo.cli("pull", ref, "--json", check=True).stdout)
    placed = Path(pulled["placed"][f"{ref}:d.out"])
    assert placed == repo.path / "artifacts" / "pipe" / "d" / "d.txt"
    assert placed.read_text() == expected_d("first\nmiddle\nlast\n")
    text = repo.cli("pull", check=True).stdout  # no REF: each model's newest active version
    assert f"pulled {ref}: received 0 of the " in text and "already here" in text and "d.txt" in text
    assert status["action_cache_entries"] == 4


def test_a_corrupt_remote_object_never_enters_the_store(repo: Repo, tmp_path: Path) -> None:
    spec, ref = built(repo, f"remote: '{(tmp_path / 'shared').as_uri()}'\n")
    push(repo)  # the version's small objects travel in a pack
    record = json.loads(repo.cli("show", ref, "--json", check=True).stdout)
    digest = record["artifacts"]["d.out"]["digest"]
    member = corrupt_packed(tmp_path / "shared", digest)
    local = repo.path / ".modelspec" / "objects" / digest[7:9] / digest[7:]
    local.unlink()
    result = repo.cli("fetch", ref)
    assert result.returncode == 1 and "corrupt" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert not local.exists()
    # Marked bad beside its pack (a pack cannot lose part of itself): no longer on the remote.
    assert (tmp_path / "shared" / "packs" / f"{member.pack}.bad" / digest[7:]).exists()
    # The next build runs the stage again (no sound copy anywhere) and repairs the remote.
    rebuilt = json.loads(repo.cli("build", spec, "--json", check=True).stdout)
    assert {row["node"]: row["state"] for row in rebuilt["nodes"]}["pipe:d"] == "ran"
    remote_object = tmp_path / "shared" / "objects" / digest[7:9] / digest[7:]
    assert local.exists() and remote_object.read_bytes() == local.read_bytes()


def test_without_a_remote_the_commands_say_how_to_add_one(repo: Repo) -> None:
    spec = make_pipeline(repo)
    repo.cli("build", spec, check=True)
    for command in (["push"], ["fetch"], ["pull", "pipe@1.0.0"], ["remote", "status"]):
        result = repo.cli(*command)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "remote:" in result.stdout + result.stderr and "Traceback" not in result.stderr
    assert repo.cli("push", "--help", check=True).stdout.count("--json") == 1
    unknown = repo.cli("push", "pipe@9.9.9")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr


NOISY = """\
modelspec: 1
name: noisy
version: "1.0"
code: {repo: ..}
stages:
  draw:
    cmd: sh -c 'head -c 16 /dev/urandom > ${outputs.out}'
    outputs: {out: draw.bin}
artifacts: [draw.out]
"""


def test_verify_remote_reports_a_stage_that_is_not_deterministic(repo: Repo, tmp_path: Path) -> None:
    repo.write("modelspec.yaml", f"remote: '{(tmp_path / 'shared').as_uri()}'\n")
    repo.write("specs/noisy.yaml", NOISY)
    repo.commit("a stage that draws random bytes")
    repo.cli("build", "specs/noisy.yaml", check=True)
    clean = json.loads(repo.cli("verify", "--remote", "--json", check=True).stdout)
    assert clean["ok"] and clean["checked"] >= 2 and clean["nondeterministic"] == {}
    # Another machine runs it too (--no-remote) and uploads its different result.
    forced = repo.cli("build", "specs/noisy.yaml", "--force", check=True)
    assert "noisy:draw gave a different result from the one the remote holds" in forced.stdout
    result = repo.cli("verify", "--remote", "--json")
    assert result.returncode == 1
    found = json.loads(result.stdout)["nondeterministic"]
    assert [item["node"] for item in found.values()] == ["noisy:draw"]
    assert len(next(iter(found.values()))["results"]) == 2
    text = repo.cli("verify", "--remote").stdout
    assert "not deterministic: noisy:draw gave 2 different results" in text
    # The first result stays the one builds use: the entry that arrived first.
    assert len(list((tmp_path / "shared" / "ac").rglob("*.json"))) == 2
    both = repo.cli("verify", "--remote", "--all")
    assert both.returncode == 2 and "Traceback" not in both.stderr
