"""The action cache (constructive traces): action key → the result of running the stage.

    <home>/ac/ab/<hex>.json

An entry is written atomically and only after every output, the metrics and the log are
in the object store, so a hit can always be restored. Each entry carries the digest of its
own content: an entry that does not parse, was edited, or whose recorded key is not its
name is treated as a miss (and `modelspec verify` drops it).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..digest import canonical_json, digest_json, hex_of
from .objects import Entry, write_atomic

RESULT_FORMAT = 2


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
        self.temp_dir = temp_dir

    def _path(self, key: str) -> Path:
        hexpart = hex_of(key)
        return self.root / hexpart[:2] / f"{hexpart}.json"

    def get(self, key: str) -> ActionResult | None:
        try:
            document = json.loads(self._path(key).read_bytes())
            checksum = document.pop("checksum")
            if checksum != digest_json(document):
                return None
            result = ActionResult.from_dict(document)
        except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return result if result.key == key else None

    def put(self, result: ActionResult) -> None:
        document = result.to_dict()
        document["checksum"] = digest_json(document)
        # Not fsynced: an entry checks itself (checksum) and its outputs are checked to be in
        # the store, so one lost to a power cut is only a miss; the objects are durable.
        write_atomic(self._path(result.key), canonical_json(document), self.temp_dir, durable=False)

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
            for name in sorted(os.listdir(self.root / fan)):
                if name.endswith(".json"):
                    yield "blake3:" + name.removesuffix(".json")
