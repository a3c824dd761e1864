"""Signed provenance end to end (issue 19): builds record an in-toto statement of SLSA
provenance for each version, signed with the workspace's ed25519 key; `show` says whether
it is signed; `export` writes it as NAME@VERSION.intoto.jsonl; `verify --provenance` checks
a version, or an export on a machine without the workspace, and names what was altered."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import blake3
import jsonschema
import pytest
from conftest import Repo

SCHEMA = Path(__file__).parents[1] / "data" / "slsa_provenance_v1.schema.json"

BASE = """\
modelspec: 1
name: base
version: "1.0"
code: {repo: ..}
data: {raw: {path: data/raw.txt}}
stages:
  make:
    cmd: sh -c 'sort ${inputs.raw} > ${outputs.table}'
    inputs: [raw]
    outputs: {table: table.txt}
artifacts: [make.table]
"""
USER = """\
modelspec: 1
name: user
version: "2.1"
code: {repo: ..}
data:
  table: {spec: base, output: make.table}
config: {dir: conf}
stages:
  fit:
    cmd: sh src/fit.sh ${inputs.table} ${config.fit.v} ${outputs.model} ${outputs.metrics}
    code: [src/fit.sh]
    inputs: [table]
    params: [fit]
    outputs: {model: model, metrics: metrics.json}
    metrics: metrics
artifacts: [fit.model]
"""
FIT = """\
mkdir -p "$3/sub"
cat "$1" > "$3/weights"
echo "$2" > "$3/sub/v"
echo '{"auc": 0.9}' > "$4"
"""


def cli(repo: Repo, *args: str, code: int = 0, env: dict[str, str] | None = None) -> Any:
    result = repo.cli(*args, env=env)
    assert result.returncode == code, f"{args} → {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout) if "--json" in args else result.stdout


def make_repo(repo: Repo) -> str:
    repo.write("specs/base.yaml", BASE, dedent=False)
    repo.write("specs/user.yaml", USER, dedent=False)
    repo.write("conf/config.yaml", "fit: {v: 3}\n")
    repo.write("data/raw.txt", "c\nb\na\n")
    repo.write("src/fit.sh", FIT, dedent=False)
    return repo.commit("two specs")


def statement_of(envelope: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(base64.b64decode(envelope["payload"]))
    return value


@pytest.fixture
def signed(repo: Repo) -> tuple[Repo, str, dict[str, Any]]:
    """A workspace with a signing key, both specs built; (repo, commit, the key's info)."""
    make_repo(repo)
    key = cli(repo, "keys", "generate", "--json")
    commit = repo.commit("trust the workspace's key")
    cli(repo, "build", "specs/user.yaml", "--json")
    return repo, commit, key


def test_a_build_records_a_signed_slsa_statement_and_export_verifies_without_the_workspace(
    signed: tuple[Repo, str, dict[str, Any]], tmp_path: Path
) -> None:
    repo, _commit, key = signed
    key_file = repo.path / ".modelspec" / "keys" / "signing.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key["public"] in (repo.path / "modelspec.yaml").read_text()
    listed = cli(repo, "keys", "list", "--json")["keys"]
    assert [(k["keyid"], k["signing"], k["trusted"]) for k in listed] == [(key["keyid"], True, True)]

    shown = cli(repo, "show", "user@2.1.0", "--json")
    assert shown["provenance"]["keyids"] == [key["keyid"]]
    assert f"signed by {key['keyid'][:16]}" in cli(repo, "show", "user@2.1.0")

    out = repo.path / "exported"
    cli(repo, "export", "user@2.1.0", str(out), "--json")
    bundle = out / "user@2.1.0.intoto.jsonl"
    lines = bundle.read_bytes().splitlines()
    assert len(lines) == 1
    envelope = json.loads(lines[0])
    statement = statement_of(envelope)
    jsonschema.validate(statement, json.loads(SCHEMA.read_text()))
    # Every artifact file is a subject, with both digests of its bytes.
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    artifacts = {name: data for name, data in files.items() if name.startswith("fit/")}
    assert set(artifacts) == {"fit/model/weights", "fit/model/sub/v"}
    assert {s["name"]: s["digest"] for s in statement["subject"]} == {
        name: {"sha256": hashlib.sha256(data).hexdigest(), "blake3": blake3.blake3(data).hexdigest()}
        for name, data in artifacts.items()
    }

    # In the workspace, the export is also checked against the registry.
    here = cli(repo, "verify", "--provenance", str(out), "--json")
    assert here["ok"] is True and here["subject"] == f"user@2.1.0 in {out} (and in the registry)"
    # Verified in a fresh directory, with only the export and the public key: no workspace.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    copy = shutil.copytree(out, elsewhere / "user")
    ok = run_real(elsewhere, "verify", "--provenance", str(copy), "--key", key["public"], "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["signed_by"] == [key["keyid"]]
    assert json.loads(ok.stdout)["subject"] == f"user@2.1.0 in {copy}"
    assert not (elsewhere / ".modelspec").exists()
    # Without the key it is not trusted there.
    untrusted = run_real(elsewhere, "verify", "--provenance", str(copy))
    assert untrusted.returncode == 1 and "signed by no trusted key" in untrusted.stdout


def test_the_statement_records_the_build(signed: tuple[Repo, str, dict[str, Any]]) -> None:
    repo, commit, _key = signed
    user = cli(repo, "show", "user@2.1.0", "--json")
    out = repo.path / "exported"
    cli(repo, "export", "user@2.1.0", str(out), "--json")
    exported_statement = statement_of(json.loads((out / "user@2.1.0.intoto.jsonl").read_bytes()))
    assert json.loads(cli(repo, "show", "user@2.1.0", "--statement")) == exported_statement
    predicate = exported_statement["predicate"]
    definition = predicate["buildDefinition"]
    assert definition["buildType"] == "https://modelspec.dev/buildtypes/spec-build/v1"
    assert definition["externalParameters"] == {
        "spec": "specs/user.yaml",
        "name": "user",
        "version": "2.1",
        "overrides": [],
    }
    internal = definition["internalParameters"]
    assert (internal["lock"], internal["contentId"]) == (user["lock"], user["content_id"])
    assert internal["artifacts"]["fit.model"]["digest"] == user["artifacts"]["fit.model"]["digest"]
    dependencies = {d["name"]: d for d in definition["resolvedDependencies"]}
    assert dependencies["source"]["digest"] == {"gitCommit": commit}
    upstream = dependencies["data:table"]
    base = cli(repo, "show", "base@1.0.0", "--json")
    assert upstream["uri"] == "modelspec:base@1.0.0"
    assert "blake3:" + upstream["digest"]["blake3"] == base["artifacts"]["make.table"]["digest"]
    base_statement = statement_of(_envelope(repo, base))
    raw = {d["name"]: d for d in base_statement["predicate"]["buildDefinition"]["resolvedDependencies"]}["data:raw"]
    assert raw["uri"] == "file:data/raw.txt" and raw["digest"]["blake3"] == blake3.blake3(b"c\nb\na\n").hexdigest()
    run = predicate["runDetails"]
    assert run["builder"]["id"] == "https://modelspec.dev/builder/local/v1"
    assert run["metadata"]["invocationId"] == user["content_id"]
    assert run["metadata"]["startedOn"] <= run["metadata"]["finishedOn"]
    byproducts = {b["name"]: b for b in run["byproducts"]}
    assert "blake3:" + byproducts["log:fit"]["digest"]["blake3"] == user["stages"]["fit"]["log"]
    assert byproducts["metrics"]["annotations"] == {"auc": 0.9}
    # The registry's copy verifies too, and a no-op build records nothing new.
    assert cli(repo, "verify", "--provenance", "user@2.1.0", "--json")["ok"] is True
    again = cli(repo, "build", "specs/user.yaml", "--json")
    assert again["versions"]["user"] == {"ref": "user@2.1.0", "new": False}


def _envelope(repo: Repo, info: dict[str, Any]) -> dict[str, Any]:
    digest = info["provenance"]["envelope"].removeprefix("blake3:")
    value: dict[str, Any] = json.loads((repo.path / ".modelspec" / "objects" / digest[:2] / digest).read_bytes())
    return value


def run_real(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MODELSPEC_SIGNING_KEY"}
    return subprocess.run(
        [sys.executable, "-m", "modelspec", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120
    )


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@pytest.mark.parametrize("part", ["artifact", "statement", "signature", "record"])
def test_a_one_byte_tamper_is_named(signed: tuple[Repo, str, dict[str, Any]], tmp_path: Path, part: str) -> None:
    repo, _commit, key = signed
    out = tmp_path / "export"
    cli(repo, "export", "user@2.1.0", str(out), "--json")
    bundle = out / "user@2.1.0.intoto.jsonl"
    envelope = json.loads(bundle.read_bytes())
    if part == "artifact":
        weights = out / "fit" / "model" / "weights"
        weights.chmod(0o644)
        weights.write_bytes(flip(weights.read_bytes(), 0))
        expected = "artifact fit/model/weights was altered: its sha256 and blake3 differ"
    elif part == "statement":
        payload = base64.b64decode(envelope["payload"])
        at = payload.index(b'"2.1"') + 1  # the version line in the external parameters: 2.1 → 3.1
        envelope["payload"] = base64.b64encode(flip(payload, at)).decode()
        expected = "the statement in user@2.1.0.intoto.jsonl was altered"
    elif part == "record":  # the manifest's sha256 of the statement: the signed statement itself is intact
        manifest = json.loads((out / "manifest.json").read_text())
        manifest["provenance"]["statement_sha256"] = flip(
            manifest["provenance"]["statement_sha256"].encode(), 0
        ).decode()
        (out / "manifest.json").chmod(0o644)
        (out / "manifest.json").write_text(json.dumps(manifest))
        expected = (
            "the sha256 recorded for the statement in user@2.1.0.intoto.jsonl was altered (its signature verifies)"
        )
    else:
        sig = base64.b64decode(envelope["signatures"][0]["sig"])
        envelope["signatures"][0]["sig"] = base64.b64encode(flip(sig, 7)).decode()
        expected = f"the signature by key {key['keyid'][:16]} in user@2.1.0.intoto.jsonl was altered"
    bundle.chmod(0o644)
    bundle.write_text(json.dumps(envelope) + "\n")
    result = run_real(tmp_path, "verify", "--provenance", str(out), "--key", key["public"])
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"TAMPERED: {expected}" in result.stdout
    assert "Traceback" not in result.stderr


def test_securesystemslib_verifies_the_envelope(signed: tuple[Repo, str, dict[str, Any]]) -> None:
    """An independent DSSE implementation accepts the envelope and the key (PAE, base64, ed25519)."""
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError
    from securesystemslib.signer import SSlibKey

    repo, _commit, key = signed
    envelope = Envelope.from_dict(_envelope(repo, cli(repo, "show", "user@2.1.0", "--json")))
    public = base64.b64decode(key["public"])
    sslib_key = SSlibKey(key["keyid"], "ed25519", "ed25519", {"public": public.hex()})
    assert set(envelope.verify([sslib_key], 1)) == {key["keyid"]}
    envelope.payload = envelope.payload.replace(b"2.1", b"2.2")
    with pytest.raises(VerificationError):
        envelope.verify([sslib_key], 1)


def test_a_key_is_rotated_then_the_old_one_revoked(signed: tuple[Repo, str, dict[str, Any]]) -> None:
    """`keys generate --force` makes a new signing key (trusted at once) while the old one stays
    trusted; `keys untrust` then revokes the old one: what only it signed no longer verifies."""
    repo, _commit, old = signed
    refused = cli(repo, "keys", "untrust", old["keyid"][:12], "--json", code=2)  # the signing key itself
    assert "is this workspace's signing key" in refused["message"] and "keys generate --force" in refused["hint"]
    new = cli(repo, "keys", "generate", "--force", "--json")
    repo.write("conf/config.yaml", "fit: {v: 4}\n")
    repo.commit("new key, new config")
    cli(repo, "build", "specs/user.yaml", "--json")
    assert cli(repo, "show", "user@2.1.1", "--json")["provenance"]["keyids"] == [new["keyid"]]
    assert cli(repo, "verify", "--provenance", "user@2.1.0", "--json")["ok"] is True  # still trusted

    untrusted = cli(repo, "keys", "untrust", old["keyid"][:12], "--json")
    assert (untrusted["keyid"], untrusted["trusted"]) == (old["keyid"], False)
    workspace_file = (repo.path / "modelspec.yaml").read_text()
    assert old["public"] not in workspace_file and new["public"] in workspace_file
    listed = cli(repo, "keys", "list", "--json")["keys"]
    assert [(k["keyid"], k["signing"], k["trusted"]) for k in listed] == [(new["keyid"], True, True)]
    revoked = cli(repo, "verify", "--provenance", "user@2.1.0", "--json", code=1)
    assert revoked["ok"] is False and any("no trusted key" in p for p in revoked["problems"]), revoked
    assert cli(repo, "verify", "--provenance", "user@2.1.1", "--json")["ok"] is True
    # The audit log is anchored again by a checkpoint the new key signs.
    cli(repo, "audit", "checkpoint", "--json")
    assert repo.cli("audit", "--verify").returncode == 0

    short = cli(repo, "keys", "untrust", new["keyid"][:6], "--json", code=2)
    assert "too short a key id" in short["message"] and "keys list" in short["hint"]
    again = cli(repo, "keys", "untrust", old["keyid"], "--json", code=2)
    assert "is not a trusted key" in again["message"] and new["keyid"][:16] in again["hint"]
    cli(repo, "keys", "untrust", new["public"], "--force", "--json")  # by the key itself
    assert "trusted_keys: {}" in (repo.path / "modelspec.yaml").read_text()
    assert cli(repo, "keys", "list", "--json")["keys"][0]["trusted"] is False


def test_without_a_key_statements_are_unsigned_and_say_so(repo: Repo, tmp_path: Path) -> None:
    make_repo(repo)
    cli(repo, "build", "specs/base.yaml", "--json")
    assert cli(repo, "show", "base@1.0.0", "--json")["provenance"]["keyids"] == []
    assert "provenance   unsigned" in cli(repo, "show", "base@1.0.0")
    refused = cli(repo, "verify", "--provenance", "base@1.0.0", "--json", code=1)
    assert refused["problems"] == ["the provenance of base@1.0.0 is unsigned"]
    assert cli(repo, "verify", "--provenance", "base@1.0.0", "--allow-unsigned", "--json")["ok"] is True
    # A key from the environment signs (CI keeps it in a secret); then it verifies when trusted.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    public = base64.b64encode(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    repo.write("data/raw.txt", "z\ny\n")
    repo.commit("new data")
    cli(repo, "build", "specs/base.yaml", "--json", env={"MODELSPEC_SIGNING_KEY": pem})
    keyid = hashlib.sha256(base64.b64decode(public)).hexdigest()
    assert cli(repo, "show", "base@1.0.1", "--json")["provenance"]["keyids"] == [keyid]
    assert cli(repo, "verify", "--provenance", "base@1.0.1", "--key", public, "--json")["signed_by"] == [keyid]


def test_bad_input_is_a_located_error(repo: Repo, tmp_path: Path) -> None:
    make_repo(repo)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli(repo, "verify", "--provenance", str(empty), "--json", code=2)
    assert "holds no manifest.json" in result["message"]
    assert "--provenance needs" in cli(repo, "verify", "--provenance", "--json", code=2)["message"]
    assert "go with --provenance" in cli(repo, "verify", "--key", "x", "--json", code=2)["message"]
    bad = cli(repo, "keys", "trust", "not-a-key", "--json", code=2)
    assert "not an ed25519 public key" in bad["message"]


LARGE = """\
modelspec: 1
name: large
version: "1.0"
hermetic: off
code: {repo: ..}
stages:
  make:
    cmd: sh -c 'head -c 6000000 /dev/urandom > ${outputs.blob}'
    outputs: {blob: blob.bin}
artifacts: [make.blob]
"""


def test_a_cold_artifact_kept_only_as_chunks_verifies(repo: Repo) -> None:
    """A large artifact gc cooled (its whole copy gone, its chunks kept) is reassembled to be
    re-hashed; one whose bytes are gone altogether is named missing."""
    from modelspec.store.objects import LocalStore

    repo.write("specs/large.yaml", LARGE, dedent=False)
    repo.commit("large")
    cli(repo, "build", "specs/large.yaml", "--json")
    digest = cli(repo, "show", "large@1.0.0", "--json")["artifacts"]["make.blob"]["digest"]
    store = LocalStore(repo.path / ".modelspec")
    assert store.cool(digest) and not store.path_of(digest).exists()
    checked = cli(repo, "verify", "--provenance", "large@1.0.0", "--allow-unsigned", "--json")
    assert checked["ok"] is True and checked["bytes"] == 6000000
    store.delete(digest)
    gone = cli(repo, "verify", "--provenance", "large@1.0.0", "--allow-unsigned", "--json", code=1)
    assert gone.get("problems") == ["artifact make/blob.bin is missing"], gone


def test_a_new_version_hashes_only_the_artifacts_that_changed(
    signed: tuple[Repo, str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retrain that keeps an artifact file takes its sha256 from the earlier version's
    statement (a 1 GiB file paid a second for it); the new statement is as exact."""
    from modelspec.build import provenance

    repo, _commit, _key = signed
    hashed: list[str] = []

    def counting(path: Any) -> Any:
        hashed.append(Path(path).name)
        return real_hash(path)

    real_hash = provenance.hash_file
    monkeypatch.setattr(provenance, "hash_file", counting)
    repo.write("conf/config.yaml", "fit: {v: 4}\n")  # model/sub/v changes, model/weights does not
    repo.commit("a new value")
    cli(repo, "build", "specs/user.yaml", "--json")
    assert len(hashed) == 1  # sub/v's object: weights was attested by user@2.1.0's statement

    out = tmp_path / "exported"
    cli(repo, "export", "user@2.1.1", str(out), "--json")
    statement = statement_of(json.loads((out / "user@2.1.1.intoto.jsonl").read_bytes()))
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in (out / "fit").rglob("*") if p.is_file()}
    assert files["fit/model/sub/v"] == b"4\n"
    assert {s["name"]: s["digest"] for s in statement["subject"]} == {
        name: {"sha256": hashlib.sha256(data).hexdigest(), "blake3": blake3.blake3(data).hexdigest()}
        for name, data in files.items()
    }
    assert cli(repo, "verify", "--provenance", "user@2.1.1", "--json")["ok"] is True
