"""The action cache (constructive traces): action key → the result of running the stage.

    <home>/ac/ab/<hex>.json          one entry per action key
    <home>/ac/index/<targets>.json   the entries the last build of these targets used

An entry is written atomically and only after every output, the metrics and the log are
in the object store, so a hit can always be restored. Each entry carries the digest of its
own content: an entry that does not parse, was edited, or whose recorded key is not its
name is treated as a miss (and `modelspec verify` drops it).

The index spares a no-op build reading and checking one small file per stage: the build of
the same targets reads it in one go, and writes it once at its end. It is only a faster way to
the same entries: beside each entry it keeps the stat of the entry's own file, and an entry
whose file is gone or changed since (edited, dropped by `verify` or gc) is read from its file
again, or is a miss; the index checks itself as a whole (a damaged one is ignored), and a hit
is trusted only as far as any entry is (its outputs are in the store).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..digest import canonical_json, digest_bytes, digest_json, hex_of
from .files import write_atomic
from .objects import Entry

RESULT_FORMAT = 2
INDEX_FORMAT = 2  # 2: each entry with the stat of its file


@dataclass(frozen=True)
class ActionResult:
    key: str
    node: str
    outputs: Mapping[str, Entry]
    log: str
    exit_code: int
    started: float
    ended: float
    hermetic: bool
    metrics: Mapping[str, float] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.ended - self.started

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RESULT_FORMAT,
            "key": self.key,
            "node": self.node,
            "outputs": {name: entry.to_dict() for name, entry in sorted(self.outputs.items())},
            "metrics": dict(self.metrics),
            "log": self.log,
            "exit_code": self.exit_code,
            "started": self.started,
            "ended": self.ended,
            "hermetic": self.hermetic,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ActionResult:
        if d.get("format") != RESULT_FORMAT:
            raise ValueError("unknown action result format")
        return cls(
            key=d["key"],
            node=d["node"],
            outputs={name: Entry.from_dict(e) for name, e in d["outputs"].items()},
            metrics=d["metrics"],
            log=d["log"],
            exit_code=d["exit_code"],
            started=d["started"],
            ended=d["ended"],
            hermetic=d["hermetic"],
        )


class ActionCache:
    def __init__(self, root: Path, temp_dir: Path | None = None) -> None:
        self.root = root
        self._root = os.fspath(root)
        self.temp_dir = temp_dir
        # key → [entry, the stat of its file then]: from the index read, and what this process used
        self._indexed: dict[str, list[Any]] = {}
        self._used: dict[str, list[Any]] = {}

    def _path(self, key: str) -> Path:
        return Path(self._file(key))

    def _file(self, key: str) -> str:
        """`_path` as a string: a no-op build of 1,000 stages looks up 1,000 entries."""
        hexpart = hex_of(key)
        return f"{self._root}/{hexpart[:2]}/{hexpart}.json"

    def get(self, key: str) -> ActionResult | None:
        path = self._file(key)
        indexed = self._indexed.get(key)
        found = indexed if indexed is not None and indexed[1] == _stamp(path) else self._read(path)
        if found is None:
            return None
        try:
            result = ActionResult.from_dict(found[0])
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if result.key != key:
            return None
        self._used[key] = found
        return result

    def _read(self, path: str) -> list[Any] | None:
        try:
            stamp = _stamp(path)
            with open(path, "rb") as handle:
                document = json.loads(handle.read())
            checksum = document.pop("checksum")
        except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return [document, stamp] if checksum == digest_json(document) else None

    def put(self, result: ActionResult) -> None:
        document = result.to_dict()
        # Not fsynced: an entry checks itself (checksum) and its outputs are checked to be in
        # the store, so one lost to a power cut is only a miss; the objects are durable.
        path = self._path(result.key)
        checked = canonical_json({**document, "checksum": digest_json(document)})
        write_atomic(path, checked, self.temp_dir, durable=False)
        self._indexed.pop(result.key, None)
        self._used[result.key] = [document, _stamp(path)]

    # -- the index of one set of targets ---------------------------------------------------

    def _index_path(self, targets: str) -> Path:
        return self.root / "index" / f"{hex_of(targets)}.json"

    def read_index(self, targets: str) -> None:
        """Read the entries the last build of `targets` (a digest naming them) used."""
        try:
            header, _, body = self._index_path(targets).read_bytes().partition(b"\n")
            if json.loads(header) != {"format": INDEX_FORMAT, "body": digest_bytes(body)}:
                return
            self._indexed = json.loads(body)
        except (FileNotFoundError, ValueError):
            return

    def write_index(self, targets: str) -> None:
        """Keep the entries this build used for the next build of `targets` (unless they are
        exactly those the index it read holds: a no-op build writes nothing)."""
        if self._used.keys() == self._indexed.keys() and all(self._indexed[k] is e for k, e in self._used.items()):
            return
        body = canonical_json(self._used)
        header = canonical_json({"format": INDEX_FORMAT, "body": digest_bytes(body)})
        with contextlib.suppress(OSError):  # a full or read-only disk: it is only a faster way to the same entries
            write_atomic(self._index_path(targets), header + b"\n" + body, self.temp_dir, durable=False)

    def drop_indexes(self) -> None:
        """Forget every index (gc, when it drops entries: an index must not outlive them)."""
        folder = self.root / "index"
        for path in folder.glob("*.json") if folder.is_dir() else ():
            path.unlink(missing_ok=True)

    def drop_invalid(self) -> list[str]:
        """Delete entries that fail their checksum or do not parse; returns their keys."""
        bad = [key for key in self.keys() if self._path(key).exists() and self.get(key) is None]
        for key in bad:
            self.delete(key)
        return bad

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def keys(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for fan in sorted(os.listdir(self.root)):
            if len(fan) != 2:
                continue  # index/
            for name in sorted(os.listdir(self.root / fan)):
                if name.endswith(".json"):
                    yield "blake3:" + name.removesuffix(".json")


def _stamp(path: str | Path) -> list[int] | None:
    """What changes when a file is replaced or edited: its size, mtime and inode."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return [info.st_size, info.st_mtime_ns, info.st_ino]
