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

from .errors import UsageError
from .limits import LIMIT_KEYS, effective_limits
from .store import LocalStore

WORKSPACE_FILE = "modelspec.yaml"
STORE_DIR = ".modelspec"


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
        if (candidate / WORKSPACE_FILE).is_file() or (candidate / STORE_DIR).is_dir():
            root = candidate
            break
    if root is None:
        root = fallback_root or start
    settings = _read_settings(root / WORKSPACE_FILE)
    home_env = os.environ.get("MODELSPEC_HOME")
    home = Path(os.path.abspath(home_env)) if home_env else root / str(settings.get("store", STORE_DIR))
    return Workspace(root=root, home=home, settings=settings)


def _read_settings(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    from .yamlsource import load_document

    document = load_document(path, os.path.relpath(path))
    if document.data is None:
        return {}
    if not isinstance(document.data, dict):
        raise UsageError(f"{path}: the workspace file must be a mapping of settings")
    retention = document.data.get("retention") or {}
    allowed = {"keep_last", "keep_best", "max_age", "keep_aliased", "min_keep", "schedule", "grace"}
    for key in retention if isinstance(retention, dict) else ():
        if key not in allowed:
            problem = document.problem(("retention", key), "unknown retention setting", key=True)
            raise UsageError(str(problem), hint=f"allowed: {', '.join(sorted(allowed))}")
    limits = document.data.get("limits") or {}
    for key, value in limits.items() if isinstance(limits, dict) else ():
        if key not in LIMIT_KEYS:
            problem = document.problem(("limits", key), "unknown limit", key=True)
            raise UsageError(str(problem), hint=f"allowed: {', '.join(LIMIT_KEYS)}")
        try:
            effective_limits({key: value}, None)
        except (UsageError, ValueError, TypeError) as exc:
            raise UsageError(str(document.problem(("limits", key), str(exc)))) from None
    unknown = set(document.data) - {"store", "registry", "retention", "limits"}
    if unknown:
        problem = document.problem((sorted(unknown)[0],), "unknown workspace setting", key=True)
        raise UsageError(str(problem), hint="allowed settings: store, registry, retention, limits")
    return dict(document.data)
