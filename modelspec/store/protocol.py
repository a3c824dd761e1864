"""What a store of objects is, whatever keeps the bytes: the `ObjectStore` protocol and the
`Entry` (a file or a Merkle tree, by digest) it stores and restores. `objects.LocalStore`
implements it in a local directory; a remote or a chunked store implements it beside it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Entry:
    """What a path holds: a file or a tree, with its digest and total size in bytes."""

    type: str  # "file" | "tree"
    digest: str
    size: int

    def to_dict(self) -> dict[str, object]:
        return {"type": self.type, "digest": self.digest, "size": self.size}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Entry:
        return cls(str(d["type"]), str(d["digest"]), int(d["size"]))  # type: ignore[call-overload]


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What gc and `du` ask of a stored object: its stored size in bytes and when it was
    stored (seconds since the epoch; a store that refreshes it on reuse may say later)."""

    size: int
    stored_at: float


@runtime_checkable
class ObjectStore(Protocol):
    """What everything that reads or writes objects may ask of a store: files and Merkle
    trees by blake3 digest. `LocalStore` is one implementation; a remote or chunked store is
    another. Every implementation keeps these promises:

    - complete before visible: an object is seen (`has`, `iter`, a read) only once all of
      its bytes are stored, so a reader never sees half an object;
    - never overwritten: a digest names one content for ever; writing an object that is
      already there stores nothing new (a corrupt copy is replaced by sound bytes);
    - verified on read: bytes handed out match their digest, else `CorruptObjectError`
      (and the corrupt object is no longer served);
    - a missing object is a `StoreError` with a hint, never a bare OSError or KeyError.

    Local mechanics (object paths for hardlinks, temp files beside the objects, the
    quarantine directory) are `LocalStore`'s own and not part of this protocol.
    """

    def has(self, digest: str) -> bool:
        """Is the object there (complete)? Not verified: `verify` re-hashes it."""
        ...

    def iter(self) -> Iterator[str]:
        """Every digest the store holds, each once."""
        ...

    def stat(self, digest: str) -> ObjectInfo | None:
        """The object's size and age, or None when it is not there (gone meanwhile, say)."""
        ...

    def put_bytes(self, data: bytes) -> str:
        """Store `data`; its digest. Visible only once complete; an existing object is kept."""
        ...

    def put_file(self, path: Path, *, move: bool = False, digest: str | None = None) -> str:
        """Store a file's bytes; their digest. `move` hands the file over (it is gone after);
        `digest` is what the caller knows the file holds: a file that turns out to differ is
        a `StoreError`, and nothing is stored under the wrong digest."""
        ...

    def put_path(self, path: Path, *, move: bool = False, known: Callable[[Path], str] | None = None) -> Entry:
        """Store a file or a directory (as a Merkle tree of tree documents and file objects);
        its entry. `known` may supply file digests (the stat cache). Symlinks are refused."""
        ...

    def read_bytes(self, digest: str) -> bytes:
        """The object's bytes, verified against its digest."""
        ...

    def read_tree(self, digest: str) -> dict[str, dict[str, object]]:
        """A tree document, verified; `CorruptObjectError` if the object is not a tree."""
        ...

    def open(self, digest: str) -> BinaryIO:
        """The object's bytes as a stream, verified before it is handed out (a store may
        remember the objects it has already verified in this process)."""
        ...

    def verify(self, digest: str) -> bool:
        """Re-hash an object: False if it is missing, or corrupt (then it is no longer served)."""
        ...

    def tree_objects(self, entry: Entry) -> Iterator[str]:
        """Every object an entry needs: the entry's own digest, then for a tree each tree
        document and file object below it (tree documents read verified)."""
        ...

    def restore(self, entry: Entry, dest: Path, *, link: bool = True) -> None:
        """Materialize an entry at `dest` as read-only files, verified as `open` is. `link`
        lets a store that can hardlink do so; `link=False` always gives independent copies."""
        ...

    def delete(self, digest: str) -> None:
        """Remove an object (gc only); an object already gone is not an error."""
        ...
