"""The workspace: where the store, action cache, environments and registry live.

Found by walking up from a spec to the first directory holding a workspace file
(`modelspec.yaml`) or a `.modelspec/` directory, else the spec's git repository root.
`MODELSPEC_HOME` overrides where the store directory is.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..digest import digest_bytes, hex_of
from ..errors import Location, Problem, SpecError
from ..spec.schema import WORKSPACE_FILE, validate_workspace, workspace_schema_bytes
from ..spec.yamlsource import Document, parse_document, read_spec_bytes
from .files import write_atomic
from .objects import LocalStore

STORE_DIR = ".modelspec"
CHECKOUT_DIR = "artifacts"  # where `modelspec checkout` copies artifacts, under the workspace root


@dataclass(frozen=True)
class Workspace:
    root: Path
    home: Path
    settings: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def store(self) -> LocalStore:
        """One store per workspace value, so what it verified once is not hashed again."""
        return LocalStore(self.home)

    @property
    def action_cache_dir(self) -> Path:
        return self.home / "ac"

    @property
    def locks_dir(self) -> Path:
        return self.home / "locks"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def envs_dir(self) -> Path:
        return self.home / "envs"

    @property
    def builds_dir(self) -> Path:
        return self.home / "builds"

    @property
    def snapshots_dir(self) -> Path:
        """Code digest → tree digest of the exported code snapshot."""
        return self.home / "snapshots"

    @property
    def cache_dir(self) -> Path:
        """Derived data that may be deleted at any time (stat cache, composed configs)."""
        return self.home / "cache"


def find_workspace(start: Path, fallback_root: Path | None = None) -> Workspace:
    start = Path(os.path.abspath(start))
    root = None
    for candidate in (start, *start.parents):
        # Anything named like the workspace file counts: a FIFO there is refused, not skipped.
        if os.path.lexists(candidate / WORKSPACE_FILE) or (candidate / STORE_DIR).is_dir():
            root = candidate
            break
    if root is None:
        root = fallback_root or start
    document, raw = _read_workspace_file(root / WORKSPACE_FILE)
    settings = document.data if document is not None and isinstance(document.data, dict) else {}
    home_env = os.environ.get("MODELSPEC_HOME")
    store = settings.get("store")
    home = Path(os.path.abspath(home_env)) if home_env else root / (store if isinstance(store, str) else STORE_DIR)
    if document is not None:
        _check_settings(document, raw, home / "cache")
    return Workspace(root=root, home=home, settings=dict(settings))


def check_workspace_file(path: Path) -> dict[str, Any]:
    """The settings of a workspace file; every problem at once, as a located `SpecError`."""
    document, raw = _read_workspace_file(path)
    if document is None:
        raise SpecError([Problem(Location(os.path.relpath(path)), "", "file not found")])
    _check_settings(document, raw, None)
    return dict(document.data or {})


def _read_workspace_file(path: Path) -> tuple[Document | None, bytes]:
    if not os.path.lexists(path):
        return None, b""
    shown = os.path.relpath(path)
    raw = read_spec_bytes(path, shown)
    return parse_document(raw, shown), raw


def _check_settings(document: Document, raw: bytes, cache_dir: Path | None) -> None:
    """Validate against the workspace schema. With `cache_dir`, a file whose bytes passed
    once is not validated again (importing jsonschema would slow every command down)."""
    if document.data is None:
        return
    marker = cache_dir / "valid-specs" / hex_of(digest_bytes(raw + workspace_schema_bytes())) if cache_dir else None
    if marker is not None and marker.exists():
        return
    problems = validate_workspace(document)
    if problems:
        raise SpecError(
            problems,
            hint=f"fix {document.file} (the workspace file); `modelspec validate {document.file}` checks it",
        )
    if marker is not None and marker.parent.parent.parent.is_dir():  # never create a store to say so
        write_atomic(marker, b"")
