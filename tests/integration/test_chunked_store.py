"""Large artifacts through the chunk layer on a real workspace: versions whose weights change
a little each time are stored as little more than one copy once gc cools them; the aliased
version and the last build stay whole; a cold version exports bit for bit; a corrupt chunk
is quarantined and `verify` names the file that needs it."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

from conftest import Repo

from modelspec.build.provenance import subjects
from modelspec.digest import digest_file
from modelspec.spec.model import Lock
from modelspec.store.blobs import RemoteConfig, open_blobs
from modelspec.store.objects import LocalStore
from modelspec.store.remote import RemoteStore
from modelspec.store.remote_objects import object_name
from modelspec.store.remote_recipes import recipe_name

SIZE = 6 << 20  # over the 4 MiB threshold
SPEC = """\
modelspec: 1
name: big
version: "1.0"
code: {repo: ..}
data:
  base: {path: data/base.bin}
config: {dir: conf}
stages:
  train:
    cmd: >-
      sh -c 'cp ${inputs.base} ${outputs.model} && chmod u+w ${outputs.model} &&
      yes ${config.train.v} | head -c 65536 |
      dd of=${outputs.model} bs=65536 seek=${config.train.v} conv=notrunc 2>/dev/null &&
      printf "{\\"auc\\": 0.${config.train.v}}" > ${outputs.metrics}'
    inputs: [base]
    params: [train]
    outputs: {model: model.bin, metrics: metrics.json}
    metrics: metrics
artifacts: [train.model, train.metrics]
retention:
  keep_last: 10
"""


def _make(repo: Repo) -> bytes:
    base = random.Random(1).randbytes(SIZE)
    repo.write("specs/big.yaml", SPEC, dedent=False)
    repo.write("data/base.bin", base)
    repo.write("conf/config.yaml", "train: {v: 1}\n")
    repo.write("modelspec.yaml", "retention:\n  grace: 0s\n")
    repo.commit("a large model")
    return base


def _build(repo: Repo, v: int) -> str:
    return str(repo.build_json("specs/big.yaml", f"train.v={v}", in_process=True)["versions"]["big"]["ref"])


def _model(repo: Repo, ref: str) -> str:
    shown = json.loads(repo.cli("show", ref, "--json", check=True).stdout)
    return str(shown["artifacts"]["train.model"]["digest"])


def test_versions_that_change_a_little_are_stored_once_and_cold_ones_read_back(repo: Repo, tmp_path: Path) -> None:
    base = _make(repo)
    refs = [
        repo.build_json("specs/big.yaml", f"train.v={v}", in_process=True)["versions"]["big"]["ref"]
        for v in range(1, 5)
    ]
    repo.cli("promote", refs[1], "production", check=True)
    assert "would cool 2 large objects" in repo.cli("gc", "--dry-run", check=True).stdout
    gc = json.loads(repo.cli("gc", "--json", check=True).stdout)
    assert gc["chunks"]["cooled"] == 2, gc  # v1.0.0 and 1.0.2: not aliased, not the last build

    store = LocalStore(repo.path / ".modelspec")
    models = [_model(repo, ref) for ref in refs]
    assert [store.is_whole(d) for d in models] == [False, True, False, True]
    packed = sum(p.stat().st_size for p in store.chunks.packs.glob("*.pack"))
    assert packed < 1.2 * SIZE, packed  # four 6 MiB versions: one copy and their changed chunks

    usage = json.loads(repo.cli("du", "--json", check=True).stdout)
    big = usage["models"]["big"]
    # Logical: four models and the data snapshot. Stored: the chunks (about one copy) and three
    # hot whole copies (the aliased and the last build's models, and the last build's input).
    assert big["bytes"] > 5 * SIZE and big["stored"] < 1.2 * SIZE + 3 * SIZE, big
    assert big["dedup"] == round(big["bytes"] / big["stored"], 2) > 1.2 and usage["dedup"] > 1.2, usage
    added = [big["versions"][ref.split("@")[1]]["added"] for ref in refs]
    assert added[2] < SIZE / 4 < SIZE < added[3] < 1.25 * SIZE, added  # its changed chunks (+ a hot whole copy)
    assert "logical" in repo.cli("du", check=True).stdout
    shown = json.loads(repo.cli("show", refs[0], "--json", check=True).stdout)["stored"]["train.model"]
    assert shown["form"] == "cold" and 0.8 * SIZE < shown["bytes"] < 1.1 * SIZE, shown
    assert "chunks only" in repo.cli("show", refs[0], check=True).stdout

    repo.cli("export", refs[0], str(tmp_path / "v0"), check=True)
    expected = bytearray(base)
    expected[65536 : 2 * 65536] = (b"1\n" * 32768)[:65536]
    assert (tmp_path / "v0" / "train" / "model.bin").read_bytes() == bytes(expected)
    assert not store.is_whole(models[0])  # an export leaves a cold version cold
    assert repo.cli("verify", refs[0]).returncode == 0
    # Its provenance verifies, and a statement about a cold artifact hashes it from its chunks.
    verified = repo.cli("verify", "--provenance", refs[0], "--allow-unsigned")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    store.cool(models[0])
    shown = json.loads(repo.cli("show", refs[0], "--json", check=True).stdout)
    lock = Lock.from_dict(json.loads(store.read_bytes(shown["lock"])))
    model = {"train.model": shown["artifacts"]["train.model"]}
    assert not store.is_whole(models[0])
    (subject,) = subjects(store, model, lock)
    assert subject.sha256 == hashlib.sha256(bytes(expected)).hexdigest()

    # A cold version is pushed as its recipe and chunks (never reassembled), and stays cold.
    remote = tmp_path / "remote"
    with open(repo.path / "modelspec.yaml", "a") as settings:
        settings.write(f"remote: {remote.as_uri()}\n")
    repo.cli("push", refs[0], check=True)
    assert not (remote / object_name(models[0])).exists() and (remote / recipe_name(models[0])).exists()
    assert not store.is_whole(models[0])
    pulled = LocalStore(tmp_path / "pulled")
    pulled.tmp.mkdir(parents=True)
    RemoteStore(open_blobs(RemoteConfig(remote.as_uri()))).download(pulled, [models[0]])
    assert pulled.read_bytes(models[0]) == bytes(expected)

    # Promoted once cold: deploy-config hands out a path that is there, and gc warms it.
    repo.cli("promote", refs[2], "staging", check=True)
    config = json.loads(repo.cli("deploy-config", "big", "staging", check=True).stdout)
    path = Path(config["aliases"]["staging"][0]["artifacts"]["train.model"]["path"])
    assert digest_file(path) == models[2]
    store.cool(models[2])  # as if it had been promoted while nothing read it
    assert json.loads(repo.cli("gc", "--json", check=True).stdout)["chunks"]["warmed"] == 1
    assert store.is_whole(models[2])


def test_a_corrupt_chunk_is_quarantined_and_verify_names_its_file(repo: Repo) -> None:
    _make(repo)
    refs = [
        repo.build_json("specs/big.yaml", f"train.v={v}", in_process=True)["versions"]["big"]["ref"] for v in (1, 2)
    ]
    repo.cli("gc", check=True)
    store = LocalStore(repo.path / ".modelspec")
    cold = _model(repo, refs[0])
    assert not store.is_whole(cold)
    for pack in store.chunks.packs.glob("*.pack"):  # damage every pack a little
        os.chmod(pack, 0o644)
        with open(pack, "r+b") as f:
            f.seek(1000)
            f.write(b"\0" * 8)
    result = repo.modelspec("verify", "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    corrupt = {row["digest"]: row["what"] for row in report["corrupt"]}
    assert corrupt[cold] == f"the output train.model of {refs[0]}", report
    assert list(store.chunks.quarantine_dir.iterdir())
