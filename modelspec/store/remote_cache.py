"""What a remote holds beside its objects: the shared action cache, the leases of running
builds and pushes, and each workspace's roots.

    <remote>/ac/<key hex>/<result hex>.json   one result of a stage, written last, created only
                                              if absent; a second, different result for the
                                              same key is kept too: evidence of a stage that is
                                              not deterministic (`verify --remote` reports it)
    <remote>/leases/<id>.json                 objects a running build or push uses, until `expires`
    <remote>/roots/<workspace id>.json        what a workspace keeps (its kept versions and last
                                              builds, written by its push): remote gc keeps it
    <remote>/gc/condemned.json                objects the last remote gc found unreferenced: the
                                              next gc deletes those still unreferenced

A result's name is the digest of what it produced (outputs and metrics), so the same result
pushed from two machines is one entry, and a different one is a second entry. Every entry
names all the objects it needs; a hit is trusted only once all of them are on the remote
(never a "Missing digest" later: an entry whose objects are gone is a miss).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..digest import canonical_json, digest_json, hex_of
from ..errors import StoreError, UsageError
from .blobs import Blobs, RemoteConfig, open_blobs
from .files import write_atomic
from .remote import RemoteStore
from .remote_packs import cache_dir as pack_cache
from .traces import ActionResult

AC = "ac/"
LEASES = "leases/"
ROOTS = "roots/"
CONDEMNED = "gc/condemned.json"
LEASE_SECONDS = 6 * 3600.0  # longer than the longest build or push; renewed by a new lease


@dataclass(frozen=True)
class Remote:
    """A workspace's remote: its objects, its action cache, and who this workspace is to it."""

    store: RemoteStore
    cache: RemoteActionCache
    workspace_id: str

    @property
    def blobs(self) -> Blobs:
        return self.store.blobs

    @property
    def url(self) -> str:
        return self.store.url


def open_remote(settings: dict[str, Any], home: Path) -> Remote | None:
    """The remote the workspace file names (`remote:`), or None."""
    config = RemoteConfig.from_setting(settings.get("remote"))
    if config is None:
        return None
    store = RemoteStore(open_blobs(config), pack_cache(home, config))
    return Remote(store, RemoteActionCache(store), workspace_id(home))


def require_remote(settings: dict[str, Any], home: Path, root: Path) -> Remote:
    remote = open_remote(settings, home)
    if remote is None:
        raise UsageError(
            f"the workspace {root} has no remote",
            hint="add one to modelspec.yaml: `remote: {url: s3://bucket/prefix, endpoint: ...}` or "
            "`remote: file:///shared/dir`",
        )
    return remote


def workspace_id(home: Path) -> str:
    """This workspace's name on remotes (random, made once): whose roots are whose."""
    path = home / "remote-id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        made = f"{socket.gethostname()}-{secrets.token_hex(8)}"
        home.mkdir(parents=True, exist_ok=True)
        write_atomic(path, made.encode())
        return path.read_text().strip()


@dataclass(frozen=True)
class RemoteResult:
    """One action-cache entry on the remote."""

    name: str  # the blob's name
    result: ActionResult
    objects: tuple[str, ...]  # every object the result needs: outputs (trees and files), log
    modified: float


def outcome_digest(result: ActionResult) -> str:
    """What a stage produced, without when it ran: equal for a deterministic stage."""
    outputs = {name: entry.to_dict() for name, entry in sorted(result.outputs.items())}
    return digest_json({"outputs": outputs, "metrics": dict(result.metrics), "exit_code": result.exit_code})


class RemoteActionCache:
    def __init__(self, store: RemoteStore) -> None:
        self.store = store
        self.blobs: Blobs = store.blobs

    def entries(self, key: str) -> list[RemoteResult]:
        """Every sound entry for the key, oldest first (an edited or foreign one is skipped)."""
        found = []
        for info in self.blobs.scan(f"{AC}{hex_of(key)}/"):
            data = self.blobs.get(info.name)
            parsed = _parse(data, key) if data is not None else None
            if parsed is not None:
                found.append(RemoteResult(info.name, parsed[0], parsed[1], info.modified))
        return sorted(found, key=lambda r: (r.modified, r.name))

    def lookup(self, key: str, jobs: int = 8) -> RemoteResult | None:
        """The oldest entry whose every object is on the remote now; None is a miss."""
        for entry in self.entries(key):
            if not self.store.missing(entry.objects, jobs):
                return entry
        return None

    def put(self, result: ActionResult, objects: Iterable[str]) -> bool:
        """Record a result whose objects are all on the remote already; False if this very
        result was there (a different one for the same key is kept beside it)."""
        document: dict[str, Any] = {"result": result.to_dict(), "objects": sorted(set(objects))}
        document["checksum"] = digest_json(document)
        name = f"{AC}{hex_of(result.key)}/{hex_of(outcome_digest(result))}.json"
        return self.blobs.create(name, canonical_json(document))

    def others(self, result: ActionResult) -> int:
        """How many different results the remote holds for the result's key besides it."""
        mine = f"{hex_of(outcome_digest(result))}.json"
        return sum(1 for info in self.blobs.scan(f"{AC}{hex_of(result.key)}/") if not info.name.endswith(mine))

    def by_key(self) -> Iterator[tuple[str, list[str]]]:
        """Each key's entry names, from one listing of the cache."""
        by_key: dict[str, list[str]] = {}
        for info in self.blobs.scan(AC):
            parts = info.name.split("/")
            if len(parts) >= 3:
                by_key.setdefault(parts[-2], []).append(info.name)
        for key_hex, names in sorted(by_key.items()):
            yield "blake3:" + key_hex, sorted(names)


def _parse(data: bytes, key: str) -> tuple[ActionResult, tuple[str, ...]] | None:
    try:
        document = json.loads(data)
        checksum = document.pop("checksum")
        if checksum != digest_json(document):
            return None
        result = ActionResult.from_dict(document["result"])
        objects = tuple(str(d) for d in document["objects"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return (result, objects) if result.key == key else None


# -- leases ---------------------------------------------------------------------------


class RemoteLease:
    """Objects a build or push is about to reference, kept by remote gc until the lease
    expires. Written before the existence checks it protects; removed at the end (a killed
    process's lease simply expires)."""

    def __init__(self, blobs: Blobs, seconds: float = LEASE_SECONDS) -> None:
        self.blobs = blobs
        self.seconds = seconds
        self.name = f"{LEASES}{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(6)}.json"
        self._objects: set[str] = set()

    def add(self, digests: Iterable[str]) -> None:
        new = set(digests) - self._objects
        if new:
            self._objects |= new
            document = {"expires": time.time() + self.seconds, "objects": sorted(self._objects)}
            self.blobs.replace(self.name, canonical_json(document))

    def release(self) -> None:
        self.blobs.delete([self.name])

    def __enter__(self) -> RemoteLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def live_remote_leased(blobs: Blobs, now: float) -> set[str]:
    """Objects of unexpired leases; expired lease files are removed."""
    leased: set[str] = set()
    for info in blobs.scan(LEASES):
        data = blobs.get(info.name)
        try:
            document = json.loads(data or b"")
            expires = float(document["expires"])
            objects = [str(d) for d in document["objects"]]
        except (ValueError, KeyError, TypeError):
            if info.modified + LEASE_SECONDS < now:
                blobs.delete([info.name])  # unreadable and old: a lease nobody renews
            continue
        if expires < now:
            blobs.delete([info.name])
        else:
            leased.update(objects)
    return leased


# -- roots ----------------------------------------------------------------------------


def write_roots(blobs: Blobs, workspace_id: str, objects: Iterable[str], about: dict[str, Any]) -> None:
    document = {"workspace": workspace_id, "updated": time.time(), **about, "objects": sorted(set(objects))}
    blobs.replace(f"{ROOTS}{workspace_id}.json", canonical_json(document))


def read_roots(blobs: Blobs) -> dict[str, dict[str, Any]]:
    """Every workspace's roots document, by workspace id. An unreadable one is an error:
    gc must not sweep what a workspace keeps because its list could not be read."""
    found = {}
    for info in blobs.scan(ROOTS):
        data = blobs.get(info.name)
        if data is None:
            continue
        try:
            document = json.loads(data)
            if not isinstance(document["objects"], list):
                raise TypeError("its objects are not a list")
            found[str(document["workspace"])] = document
        except (ValueError, KeyError, TypeError) as exc:
            ident = info.name.removeprefix(ROOTS).removesuffix(".json")
            raise StoreError(
                f"the roots of workspace {ident} on the remote ({info.name}) cannot be read: {exc}",
                hint="remote gc keeps nothing it cannot account for: push again from that workspace, or "
                f"`modelspec remote forget {ident}` if it is gone for good",
            ) from None
    return found


def read_condemned(blobs: Blobs) -> dict[str, float]:
    """Objects the last remote gc found unneeded, with when it first did."""
    data = blobs.get(CONDEMNED)
    try:
        return {str(k): float(v) for k, v in json.loads(data or b"{}").items()}
    except (ValueError, TypeError, AttributeError):
        return {}
