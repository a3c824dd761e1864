"""Digests and canonical forms: blake3 of bytes, files and Merkle trees; canonical JSON.

A digest prints as `blake3:<64 hex>`. Every document that is hashed goes through
`canonical_json` (sorted keys, no whitespace, UTF-8), so equal values hash equally.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable
from json.encoder import encode_basestring
from typing import Any

import blake3

ALGORITHM = "blake3"
PREFIX = ALGORITHM + ":"
_MMAP_THRESHOLD = 4 << 20  # below this, one read() beats setting up a mapping
TREE_FORMAT = 1


def canonical_json(value: Any) -> bytes:
    """The one serialisation that is hashed: sorted keys, compact, UTF-8, no NaN."""
    if _canonical is None:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    return "".join(_canonical(value, 0)).encode()


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# json's C encoder for canonical JSON, made once: `json.dumps` makes one per call, which was
# most of the cost of hashing a key document (~6 of 8 µs; a build hashes several per stage).
# Without a circular-reference check: what is hashed is built here, never cyclic.
_canonical: Callable[[Any, int], Iterable[str]] | None
try:
    from _json import make_encoder

    _canonical = make_encoder(None, _not_json, encode_basestring, None, ":", ",", True, False, False)
except ImportError:  # Python without json's C accelerator
    _canonical = None


def digest_bytes(data: bytes) -> str:
    return PREFIX + blake3.blake3(data).hexdigest()


def digest_json(value: Any) -> str:
    return digest_bytes(canonical_json(value))


def digest_file(path: str | os.PathLike[str]) -> str:
    """blake3 of a file's bytes; large files are mapped and hashed on every core."""
    size = os.stat(path).st_size
    if size >= _MMAP_THRESHOLD:
        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
        hasher.update_mmap(os.fspath(path))
        return PREFIX + hasher.hexdigest()
    with open(path, "rb") as f:
        return digest_bytes(f.read())


def git_blob_sha1(data: bytes) -> str:
    """The object id git gives a blob, so working files compare with committed ones."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def hex_of(digest: str) -> str:
    """The hex part of `blake3:<hex>`; raises ValueError for anything else."""
    algorithm, _, hexpart = digest.partition(":")
    if algorithm != ALGORITHM or len(hexpart) != 64 or not _is_hex(hexpart):
        raise ValueError(f"not a {ALGORITHM} digest: {digest!r}")
    return hexpart


def short(digest: str, length: int = 10) -> str:
    return digest.partition(":")[2][:length]


_HEX = re.compile(r"[0-9a-f]*")


def _is_hex(text: str) -> bool:
    return _HEX.fullmatch(text) is not None


def tree_document(entries: dict[str, dict[str, Any]]) -> bytes:
    """The bytes of a Merkle tree object.

    `entries` maps a name (no `/`) to `{"type": "file", "digest", "size", "exec"}` or
    `{"type": "tree", "digest"}`; the tree's digest is the digest of these bytes.
    """
    return canonical_json({"format": TREE_FORMAT, "entries": entries})


def parse_tree_document(data: bytes) -> dict[str, dict[str, Any]]:
    document = json.loads(data)
    if not isinstance(document, dict) or document.get("format") != TREE_FORMAT:
        raise ValueError("not a tree object")
    entries: dict[str, dict[str, Any]] = document["entries"]
    return entries
