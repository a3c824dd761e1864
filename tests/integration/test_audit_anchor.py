"""The audit log anchored outside its database (issue 19): whoever can write the database
can rewrite an event and recompute every digest after it, and the store's record of the
head too; the chain then agrees with itself. A signed checkpoint, written by gc, promote,
rollback and `audit checkpoint`, no longer matches such a log, and `audit --verify` says so."""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from conftest import Repo
from test_provenance import cli, make_repo

from modelspec.attest import checkpoint as checkpoints
from modelspec.registry.audit import event_digest
from modelspec.store.blobs import RemoteConfig, open_blobs
from modelspec.store.objects import LocalStore
from modelspec.store.remote import RemoteStore


def rewrite(home: Path, seq: int, **changes: Any) -> None:
    """Edit event `seq` (or, with `drop`, delete every event from it on), then recompute
    the chain after it, the registry's recorded head and the store's record of that head:
    everything an attacker with write access to the database and the store files can do."""
    db = sqlite3.connect(home / "registry.db")
    with db:
        if changes.pop("drop", False):
            db.execute("DELETE FROM events WHERE seq >= ?", (seq,))
        for key, value in changes.items():
            db.execute(f"UPDATE events SET {key} = ? WHERE seq = ?", (value, seq))
        rows = db.execute("SELECT seq, time, kind, actor, subject, payload FROM events ORDER BY seq").fetchall()
        prev = "blake3:" + "0" * 64
        for row_seq, time, kind, actor, subject, payload in rows:
            digest = event_digest(row_seq, time, kind, actor, subject, payload, prev)
            db.execute("UPDATE events SET prev = ?, digest = ? WHERE seq = ?", (prev, digest, row_seq))
            prev = digest
        last = rows[-1][0]
        db.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'", (f"{last} {prev}",))
    db.close()
    head = json.loads((home / "registry-head").read_text())
    (home / "registry-head").write_text(json.dumps({**head, "seq": last, "digest": prev}))


def built(repo: Repo) -> Path:
    """base@1.0.0 built and promoted, then gc: events build, promote, gc; a checkpoint of each
    of the last two."""
    make_repo(repo)
    repo.write("modelspec.yaml", "retention: {grace: 0s}\n")
    cli(repo, "keys", "generate", "--json")
    repo.commit("workspace")
    cli(repo, "build", "specs/base.yaml", "--json")
    cli(repo, "promote", "base@1.0.0", "production", "--json")
    cli(repo, "gc", "--json")
    return repo.path / ".modelspec"


def test_a_rewritten_and_recomputed_log_is_caught_by_the_checkpoint(repo: Repo) -> None:
    home = built(repo)
    intact = cli(repo, "audit", "--verify", "--json")
    assert intact["ok"] is True
    assert [e["kind"] for e in intact["events"]] == ["build", "promote", "gc"]
    assert intact["checkpoint"]["events"] == 3 and intact["checkpoint"]["signed_by"]
    assert len(checkpoints.every_digest(home)) == 2  # after promote, after gc

    rewrite(home, 3, actor="nobody")  # who ran gc, rewritten
    # Without the anchor the rewrite goes unseen: the chain agrees with itself.
    shutil.move(home / "checkpoints", home / "aside")
    assert cli(repo, "audit", "--verify", "--json")["ok"] is True
    shutil.move(home / "aside", home / "checkpoints")
    caught = cli(repo, "audit", "--verify", "--json", code=1)
    assert caught["problems"] == [
        f"event 3 is not the one the checkpoint of {checkpoints.rfc3339(caught['checkpoint']['time'])} recorded"
        " (its digest differs): the audit log was rewritten and its chain recomputed"
    ]
    assert "TAMPERED: event 3 is not the one the checkpoint" in cli(repo, "audit", "--verify", code=1)


def test_removed_events_and_a_forged_checkpoint_are_caught(repo: Repo) -> None:
    home = built(repo)
    rewrite(home, 3, drop=True)  # the gc never happened
    caught = cli(repo, "audit", "--verify", "--json", code=1)
    assert "the audit log ends at event 2, but the checkpoint" in caught["problems"][0]
    assert "events were removed" in caught["problems"][0]
    # The attacker writes a checkpoint of the rewritten log; without the private key it is
    # unsigned, and the workspace trusts a key: refused.
    registry_id = json.loads((home / "registry-head").read_text())["registry"]
    head = sqlite3.connect(home / "registry.db").execute("SELECT digest FROM events WHERE seq = 2").fetchone()[0]
    checkpoints.write(LocalStore(home), home, registry_id, 2, head, None)
    forged = cli(repo, "audit", "--verify", "--json", code=1)
    assert forged["problems"] == [
        f"the audit checkpoint of {checkpoints.rfc3339(forged['checkpoint']['time'])} is not signed by a trusted key:"
        " it may be forged"
    ]


def test_an_altered_or_lost_checkpoint_is_named(repo: Repo) -> None:
    home = built(repo)
    latest = home / "checkpoints" / "latest"
    digest = latest.read_text().strip()
    store = LocalStore(home)
    envelope = json.loads(store.read_bytes(digest))
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[0] ^= 1
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    latest.write_text(store.put_bytes(json.dumps(envelope).encode()) + "\n")
    altered = cli(repo, "audit", "--verify", "--json", code=1)["problems"]
    assert len(altered) == 1 and "was altered: its signature does not verify" in altered[0]
    latest.write_text("blake3:" + "0" * 64 + "\n")
    lost = cli(repo, "audit", "--verify", "--json", code=1)["problems"]
    assert len(lost) == 1 and "the latest audit checkpoint (blake3:000" in lost[0] and "cannot be read" in lost[0]


def test_audit_checkpoint_command_and_rollback(repo: Repo) -> None:
    home = built(repo)
    made = cli(repo, "audit", "checkpoint", "--json")
    assert made["events"] == 3 and made["signed_by"] == [cli(repo, "keys", "list", "--json")["keys"][0]["keyid"]]
    assert (home / "checkpoints" / "latest").read_text().strip() == made["digest"]
    assert "checkpoint of event 3" in cli(repo, "audit", "checkpoint")
    repo.write("data/raw.txt", "q\n")
    repo.commit("new data")
    cli(repo, "build", "specs/base.yaml", "--json")
    cli(repo, "promote", "base@1.0.1", "production", "--json")
    assert cli(repo, "audit", "--verify", "--json")["checkpoint"]["events"] == 5
    cli(repo, "rollback", "base", "production", "--json")
    assert cli(repo, "audit", "--verify", "--json")["checkpoint"]["events"] == 6
    # gc keeps every checkpoint's object.
    cli(repo, "gc", "--json")
    store = LocalStore(home)
    assert all(store.verify(digest) for digest in checkpoints.every_digest(home))
    assert cli(repo, "audit", "--verify", "--json")["ok"] is True


def test_push_keeps_the_checkpoints_on_the_remote(repo: Repo, tmp_path: Path) -> None:
    home = built(repo)
    shared = tmp_path / "shared"
    repo.write("modelspec.yaml", f"retention: {{grace: 0s}}\nremote: '{shared.as_uri()}'\n")
    repo.commit("a remote")
    cli(repo, "push", "--json")
    latest = (home / "checkpoints" / "latest").read_text().strip()
    pointers = list((shared / "checkpoints").iterdir())
    assert [p.read_text().strip() for p in pointers] == [latest]
    remote = RemoteStore(open_blobs(RemoteConfig(shared.as_uri())))  # loose or packed alike
    assert checkpoints.every_digest(home) and remote.missing(checkpoints.every_digest(home)) == set()


def test_with_a_remote_deleting_the_local_checkpoints_does_not_remove_the_anchor(repo: Repo, tmp_path: Path) -> None:
    home = built(repo)
    repo.write("modelspec.yaml", f"retention: {{grace: 0s}}\nremote: '{(tmp_path / 'shared').as_uri()}'\n")
    repo.commit("a remote")
    cli(repo, "push", "--json")
    assert cli(repo, "audit", "--verify", "--json")["ok"] is True
    rewrite(home, 3, actor="nobody")
    shutil.rmtree(home / "checkpoints")  # the attacker also removes the local anchor
    caught = cli(repo, "audit", "--verify", "--json", code=1)
    assert caught["checkpoint"]["events"] == 3
    assert len(caught["problems"]) == 1 and "event 3 is not the one the checkpoint" in caught["problems"][0]
