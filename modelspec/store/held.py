"""Objects this workspace leaves on its remote: what a trusted remote hit named but nobody
here has needed yet (the outputs of intermediate stages whose consumers hit the cache too).

    <home>/remote-held/<remote>.txt   one digest per line, appended; per remote (URL and endpoint)

A digest is added only after the remote was seen to hold it (a remote hit is trusted only
once every object it names is there), and before the local action cache names it, so a
local cache entry whose objects are neither here nor recorded here stays a miss. The file
only grows by appends of whole lines (one `write` on an O_APPEND descriptor), so concurrent
builds do not lose each other's lines and a line torn by a crash is ignored. An object that
arrives later (fetched, pulled, built here) stays listed: being local is checked first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from ..digest import digest_json, hex_of
from .blobs import RemoteConfig

_LINE = re.compile(r"blake3:[0-9a-f]{64}")


class HeldOnRemote:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._known: set[str] | None = None

    @classmethod
    def of(cls, home: Path, config: RemoteConfig) -> HeldOnRemote:
        remote = hex_of(digest_json({"url": config.url, "endpoint": config.endpoint}))[:32]
        return cls(home / "remote-held" / f"{remote}.txt")

    def __contains__(self, digest: object) -> bool:
        return digest in self._read()

    def __len__(self) -> int:
        return len(self._read())

    def add(self, digests: Iterable[str]) -> None:
        new = sorted(set(digests) - self._read())
        if not new:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, "".join(f"{d}\n" for d in new).encode())
        finally:
            os.close(fd)
        self._read().update(new)

    def _read(self) -> set[str]:
        if self._known is None:
            try:
                text = self.path.read_text()
            except FileNotFoundError:
                text = ""
            self._known = {line for line in text.split("\n")[:-1] if _LINE.fullmatch(line)}
        return self._known


def held_on_remote(settings: dict[str, object], home: Path) -> HeldOnRemote | None:
    """The record for the workspace's remote (`remote:` in modelspec.yaml), or None without one."""
    config = RemoteConfig.from_setting(settings.get("remote"))
    return None if config is None else HeldOnRemote.of(home, config)
