"""What a spec's valid-specs marker is: the proof that these exact bytes passed every check
before (the schema, `check_semantics`, resolution), and their values kept as canonical JSON, so
that the next load neither parses the YAML nor checks it again.

    <home>/cache/valid-specs/<digest of the bytes, the schema and CHECKS>
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from ..digest import canonical_json, digest_bytes, hex_of
from .schema import spec_schema_bytes
from .yamlsource import Document


def marker_path(cache_dir: Path, raw: bytes) -> Path:
    return cache_dir / "valid-specs" / hex_of(digest_bytes(raw + spec_schema_bytes() + CHECKS))


# Part of a valid-specs marker's name: change it when `check_semantics` (or what the marker
# keeps) changes, so that bytes an older modelspec passed are checked again.
CHECKS = b"\0checks 2"


def known_valid(marker: Path | None) -> Any:
    """None if the spec's bytes have not passed every check before; else what the marker kept
    of them: their values as JSON (a dict), or nothing (b"", parse them again)."""
    if marker is None:
        return None
    try:
        kept = marker.read_bytes()
    except FileNotFoundError:
        return None
    with contextlib.suppress(ValueError):
        if kept:
            return json.loads(kept)
    return b""


def marker_content(document: Document) -> bytes:
    """What a valid spec's marker keeps: its values as canonical JSON, when JSON holds them
    exactly (a 10,000-stage spec then loads in a tenth of LibYAML's time), else nothing."""
    try:
        kept = canonical_json(document.data)
    except (TypeError, ValueError):  # a date, a set, binary: not JSON
        return b""
    return kept if json.loads(kept) == document.data else b""
