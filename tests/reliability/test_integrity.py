"""Store integrity: a flipped byte, a truncated or missing object, an edited action-cache
entry. Each is found by `modelspec verify --all` (exit 1, named; objects quarantined,
entries dropped), never served (checkout, export and stages refuse the bad bytes), and the
next build repairs what can be rebuilt.

    raw ──▶ a ──▶ b ──▶ d          (tests/integration/pipeline.py)
     └────▶ c ────────▲
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Repo, states

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))
from pipeline import expected_d, make_pipeline

from modelspec.digest import digest_file

RAW = "first\nmiddle\nlast\n"
GOOD_D = expected_d(RAW)


@dataclass
class Built:
    """A copy of a workspace where the diamond pipeline was built once."""

    repo: Repo
    spec: str
    report: dict[str, Any]

    @property
    def home(self) -> Path:
        return self.repo.path / ".modelspec"

    def output(self, node: str) -> str:
        return str(self.report["specs"]["pipe"]["nodes"][node]["outputs"]["out"]["digest"])

    def object(self, digest: str) -> Path:
        hexpart = digest.removeprefix("blake3:")
        return self.home / "objects" / hexpart[:2] / hexpart

    def quarantined(self, digest: str) -> Path:
        return self.home / "quarantine" / digest.removeprefix("blake3:")

    def entry(self, node: str) -> Path:
        hexpart = str(self.report["specs"]["pipe"]["nodes"][node]["key"]).removeprefix("blake3:")
        return self.home / "ac" / hexpart[:2] / f"{hexpart}.json"

    def cli(self, *args: str) -> Any:
        result = self.repo.modelspec(*args)
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def checkout_d(self) -> str:
        self.repo.modelspec("checkout", self.spec, "--out", "out", check=True)
        return (self.repo.path / "out" / "d" / "d.txt").read_text()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, Any]]:
    repo = Repo(tmp_path_factory.mktemp("pristine") / "repo")
    spec = make_pipeline(repo)
    with pytest.MonkeyPatch.context() as env:  # module scope: conftest's autouse isolation has not run yet
        env.delenv("MODELSPEC_HOME", raising=False)
        report = repo.build_json(spec)
    assert set(states(report).values()) == {"ran"}
    return repo.path, spec, report


@pytest.fixture
def built(pristine: tuple[Path, str, dict[str, Any]], tmp_path: Path) -> Built:
    """Each test damages its own copy (objects keep their read-only modes in the copy)."""
    source, spec, report = pristine
    shutil.copytree(source, tmp_path / "repo", symlinks=True)
    return Built(Repo(tmp_path / "repo"), spec, report)


def flip_byte(path: Path) -> None:
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    path.chmod(0o444)


def truncate(path: Path) -> None:
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    path.chmod(0o444)


@pytest.mark.parametrize(
    ("damage", "node"),
    [
        pytest.param(flip_byte, "pipe:d", id="flipped-artifact"),
        pytest.param(truncate, "pipe:a", id="truncated-upstream"),
    ],
)
def test_verify_all_quarantines_a_damaged_object_and_the_next_build_repairs_it(
    built: Built, damage: Callable[[Path], None], node: str
) -> None:
    digest = built.output(node)
    damage(built.object(digest))
    damaged = built.object(digest).read_bytes()

    verify = built.cli("verify", "--all")
    assert verify.returncode == 1
    assert any(line.startswith("corrupt: ") and digest in line for line in verify.stdout.splitlines())
    assert not built.object(digest).exists()
    assert built.quarantined(digest).read_bytes() == damaged

    rebuilt = built.repo.build_json(built.spec)
    assert states(rebuilt) == {n: "ran" if n == node else "cached" for n in states(rebuilt)}
    assert built.cli("verify", "--all").returncode == 0
    assert digest_file(built.object(digest)) == digest
    assert built.checkout_d() == GOOD_D


def test_verify_all_names_a_missing_object(built: Built) -> None:
    digest = built.output("pipe:a")
    built.object(digest).unlink()
    verify = built.cli("verify", "--all")
    assert verify.returncode == 1
    assert digest in verify.stdout


def test_a_missing_object_is_never_served_and_the_next_build_rebuilds_it(built: Built) -> None:
    artifact, upstream = built.output("pipe:d"), built.output("pipe:a")
    built.object(artifact).unlink()
    built.object(upstream).unlink()

    checkout = built.cli("checkout", built.spec, "--out", "out")
    assert checkout.returncode == 1
    assert f"object {artifact} is missing from the store" in checkout.stderr
    assert not (built.repo.path / "out" / "d" / "d.txt").exists()
    export = built.cli("export", "pipe@1.0.0", "exported")
    assert export.returncode == 1
    assert f"object {artifact} is missing from the store" in export.stderr
    assert not (built.repo.path / "exported" / "d" / "d.txt").exists()
    assert not (built.repo.path / "exported" / "manifest.json").exists()

    rebuilt = built.repo.build_json(built.spec)
    assert states(rebuilt) == {"pipe:a": "ran", "pipe:b": "cached", "pipe:c": "cached", "pipe:d": "ran"}
    assert digest_file(built.object(artifact)) == artifact
    assert digest_file(built.object(upstream)) == upstream
    assert built.cli("verify", "pipe@1.0.0").returncode == 0
    assert built.checkout_d() == GOOD_D


def test_a_corrupt_artifact_is_neither_checked_out_nor_exported(built: Built) -> None:
    digest = built.output("pipe:d")
    flip_byte(built.object(digest))
    damaged = built.object(digest).read_bytes()

    checkout = built.cli("checkout", built.spec, "--out", "out")
    assert checkout.returncode == 1
    assert f"object {digest} is corrupt and was quarantined" in checkout.stderr
    assert not (built.repo.path / "out" / "d" / "d.txt").exists()
    assert built.quarantined(digest).read_bytes() == damaged

    # The same damage again, this time met by export.
    shutil.copyfile(built.quarantined(digest), built.object(digest))
    export = built.cli("export", "pipe@1.0.0", "exported")
    assert export.returncode == 1
    assert f"cannot export pipe@1.0.0: object {digest} is corrupt" in export.stderr
    assert not (built.repo.path / "exported" / "d" / "d.txt").exists()
    assert not (built.repo.path / "exported" / "manifest.json").exists()
    assert not built.object(digest).exists()


def test_a_corrupt_cached_output_is_never_fed_to_a_stage(built: Built) -> None:
    """Stage b must run again (its command changed) and needs a's cached output, whose
    object is corrupt: b must not see those bytes. The build after that repairs a."""
    digest = built.output("pipe:a")
    flip_byte(built.object(digest))
    make_pipeline(built.repo, b_extra="echo b-changed > /dev/null")

    report = built.repo.build_json(built.spec, "--keep-going", check=False)
    rows = {row["node"]: row for row in report["nodes"]}
    assert rows["pipe:b"]["state"] == "failed"
    assert f"object {digest} is corrupt" in rows["pipe:b"]["reason"]
    assert rows["pipe:d"]["state"] == "skipped"
    assert not built.object(digest).exists()

    repaired = built.repo.build_json(built.spec)
    assert states(repaired) == {"pipe:a": "ran", "pipe:b": "ran", "pipe:c": "cached", "pipe:d": "cached"}
    assert built.cli("verify", "--all").returncode == 0
    assert built.checkout_d() == GOOD_D


def test_build_force_replaces_a_corrupt_object_it_reproduces(built: Built) -> None:
    digest = built.output("pipe:a")
    flip_byte(built.object(digest))
    report = built.repo.build_json(built.spec, "--force", check=False)
    assert report["ok"], report["nodes"]
    assert digest_file(built.object(digest)) == digest


def edit_output_digest(entry: Path, digest: str) -> None:
    """Point the entry's output at another existing object; the JSON stays valid."""
    document = json.loads(entry.read_text())
    document["outputs"]["out"]["digest"] = digest
    entry.write_text(json.dumps(document, sort_keys=True))


def test_an_edited_action_cache_entry_is_never_served_and_verify_drops_it(built: Built) -> None:
    entry, other = built.entry("pipe:d"), built.output("pipe:b")
    assert built.object(other).exists()

    edit_output_digest(entry, other)
    rebuilt = built.repo.build_json(built.spec)
    assert states(rebuilt)["pipe:d"] == "ran"  # a miss, not a hit on the edited entry
    assert built.checkout_d() == GOOD_D
    assert json.loads(entry.read_text())["outputs"]["out"]["digest"] == built.output("pipe:d")

    edit_output_digest(entry, other)
    key = str(built.report["specs"]["pipe"]["nodes"]["pipe:d"]["key"])
    verify = built.cli("verify", "--all")
    assert verify.returncode == 1
    assert f"action-cache entry {key}: dropped" in verify.stdout
    assert not entry.exists()
    assert states(built.repo.build_json(built.spec))["pipe:d"] == "ran"
    assert built.cli("verify", "--all").returncode == 0
    assert built.checkout_d() == GOOD_D


def test_the_next_build_restores_a_quarantined_data_snapshot(built: Built) -> None:
    lock = json.loads((built.repo.path / "specs" / "pipe.lock").read_text())
    digest = str(lock["data"]["raw"]["digest"])
    flip_byte(built.object(digest))
    assert built.cli("verify", "--all").returncode == 1
    assert built.quarantined(digest).exists()

    assert built.repo.build_json(built.spec)["ok"]
    verify = built.cli("verify", "pipe@1.0.0")
    assert verify.returncode == 0, verify.stdout


NOISY = """\
modelspec: 1
name: noisy
version: "1.0"
code: {repo: ..}
hermetic: off
stages:
  make:
    cmd: sh -c 'cat /proc/sys/kernel/random/uuid > ${outputs.out}'
    outputs: {out: out.txt}
artifacts: [make.out]
"""


def test_a_force_rebuild_whose_outputs_differ_from_the_registered_version_says_so(repo: Repo) -> None:
    """The same inputs, other bytes (here a stage that is not deterministic; or a changed
    environment): the build must not claim it is the registered version."""
    repo.write("specs/noisy.yaml", NOISY, dedent=False)
    repo.commit()
    first = repo.build_json("specs/noisy.yaml")
    assert first["versions"] == {"noisy": {"ref": "noisy@1.0.0", "new": True}}
    registered = first["specs"]["noisy"]["artifacts"]["make.out"]["digest"][7:17]
    again = repo.modelspec("build", "specs/noisy.yaml", "--force", check=True)
    assert "already registered" not in again.stdout
    assert f"outputs differ from the registered noisy@1.0.0: make.out (registered {registered}, built " in again.stdout
    as_json = repo.build_json("specs/noisy.yaml", "--force")
    assert as_json["versions"]["noisy"]["ref"] == "noisy@1.0.0"
    assert as_json["versions"]["noisy"]["differs"][0].startswith(f"make.out (registered {registered}, built ")
