"""Digests and canonical forms, checked against blake3 and git themselves."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import blake3
import pytest

from modelspec.digest import (
    canonical_json,
    digest_bytes,
    digest_file,
    digest_json,
    git_blob_sha1,
    hex_of,
    parse_tree_document,
    short,
    tree_document,
)

# The BLAKE3 reference test vector for the empty input.
EMPTY_BLAKE3 = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
SAMPLES = [b"", b"hello\n", b"\x00\xff\xfe binary \x00", "café ☕".encode(), bytes(range(256)) * 17]


def test_canonical_json_exact_bytes() -> None:
    value = {"b": 1, "a": [1, {"d": 2.5, "c": "é"}], "e": None, "f": True}
    assert canonical_json(value) == (
        b'{"a":[1,{"c":"\xc3\xa9","d":2.5}],"b":1,"e":null,"f":true}'
    )


def test_canonical_json_ignores_insertion_order_only() -> None:
    one = {"x": {"b": 2, "a": 1}, "y": [3, 1, 2]}
    two = {"y": [3, 1, 2], "x": {"a": 1, "b": 2}}
    assert canonical_json(one) == canonical_json(two)
    assert canonical_json({"y": [1, 2, 3]}) != canonical_json({"y": [3, 2, 1]})


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_canonical_json_refuses_non_finite_numbers(bad: float) -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": bad})


@pytest.mark.parametrize("data", SAMPLES)
def test_digest_bytes_is_blake3(data: bytes) -> None:
    assert digest_bytes(data) == "blake3:" + blake3.blake3(data).hexdigest()


def test_digest_of_empty_input_is_the_reference_vector() -> None:
    assert digest_bytes(b"") == "blake3:" + EMPTY_BLAKE3


def test_digest_json_hashes_the_canonical_bytes() -> None:
    value = {"z": [1, "two"], "a": {"k": None}}
    expected = blake3.blake3(b'{"a":{"k":null},"z":[1,"two"]}').hexdigest()
    assert digest_json(value) == f"blake3:{expected}"


@pytest.mark.parametrize("size", [0, 1, 4096, (4 << 20) - 1, 4 << 20, (5 << 20) + 3])
def test_digest_file_small_and_mapped(tmp_path: Path, size: int) -> None:
    data = (bytes(range(251)) * (size // 251 + 1))[:size]
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert digest_file(path) == "blake3:" + blake3.blake3(data).hexdigest()
    assert digest_file(str(path)) == digest_bytes(data)


@pytest.mark.parametrize("data", SAMPLES)
def test_git_blob_sha1_matches_git_hash_object(data: bytes) -> None:
    out = subprocess.run(["git", "hash-object", "--stdin"], input=data, capture_output=True,
                         check=True).stdout
    assert git_blob_sha1(data) == out.decode().strip()


def test_hex_of_and_short() -> None:
    digest = digest_bytes(b"x")
    assert hex_of(digest) == digest[len("blake3:"):]
    assert short(digest) == digest[7:17]
    assert short(digest, 4) == digest[7:11]


@pytest.mark.parametrize(
    "bad",
    ["", "blake3:", "sha256:" + "0" * 64, "blake3:" + "0" * 63, "blake3:" + "G" * 64,
     "blake3:" + "A" * 64, "0" * 64],
)
def test_hex_of_refuses_other_strings(bad: str) -> None:
    with pytest.raises(ValueError):
        hex_of(bad)


def test_tree_documents_round_trip_and_are_canonical() -> None:
    entries = {
        "b.txt": {"type": "file", "digest": digest_bytes(b"b"), "size": 1, "exec": False},
        "a": {"type": "tree", "digest": digest_bytes(b"tree")},
    }
    data = tree_document(entries)
    assert data == tree_document(dict(reversed(list(entries.items()))))
    assert data.index(b'"a"') < data.index(b'"b.txt"')
    assert parse_tree_document(data) == entries


@pytest.mark.parametrize("bad", [b"[]", b'{"format": 2, "entries": {}}', b'{"entries": {}}'])
def test_parse_tree_document_refuses_other_documents(bad: bytes) -> None:
    with pytest.raises(ValueError):
        parse_tree_document(bad)
