"""Nested documents as dotted keys: a stage's config subtree (params) and its metrics."""

from __future__ import annotations

import math
from typing import Any


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys to leaves; an empty mapping below the top stays a leaf, an empty top is nothing."""
    if isinstance(value, dict) and (value or not prefix):
        flat: dict[str, Any] = {}
        for k, v in value.items():
            flat.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return flat
    return {prefix: value}


def flatten_metrics(document: dict[str, object]) -> dict[str, float]:
    """A metrics document's numbers under dotted keys, as the registry records them."""
    flat: dict[str, float] = {}
    _flatten(document, "", flat)
    return flat


def _flatten(value: object, prefix: str, into: dict[str, float]) -> None:
    """Numbers only (true/false are not metrics). An integer stays one (epochs 12, not 12.0)
    while a float holds it exactly, as the registry compares it; past 2**53 it is a float."""
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), into)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) <= _EXACT_INTEGERS:
        into[prefix] = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            into[prefix] = float(value)
        except OverflowError:  # an integer beyond every float: not a usable metric either
            into[prefix] = math.inf


_EXACT_INTEGERS = 2**53  # every integer up to this is a float exactly
