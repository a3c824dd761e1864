"""What an artifact takes in the store, for `show`: whole copies and chunks."""

from __future__ import annotations

from typing import Any

from ..errors import ModelspecError
from .objects import LocalStore
from .protocol import Entry


def footprint(store: LocalStore, entry: Entry) -> dict[str, Any]:
    """What an artifact takes in the store (`show`): its whole copies' bytes and its chunks'
    (each chunk once, though other files may share it), and its form: `whole` (no chunks),
    `hot` (whole copies and chunks), `cold` (chunks only) or `missing`."""
    whole, cold = 0, False
    chunks: dict[bytes, int] = {}
    try:
        digests = list(store.tree_objects(entry))
    except ModelspecError:
        return {"bytes": 0, "whole": 0, "chunks": 0, "form": "missing"}
    for digest in digests:
        if store.is_whole(digest):
            whole += info.size if (info := store.stat(digest)) else 0
        elif store.chunks.has(digest):
            cold = True
        else:
            return {"bytes": 0, "whole": 0, "chunks": 0, "form": "missing"}  # retired, say
        chunks.update(store.chunks.footprint(digest))
    chunked = sum(chunks.values())
    form = "cold" if cold else ("hot" if chunked else "whole")
    return {"bytes": whole + chunked, "whole": whole, "chunks": chunked, "form": form}
