"""modelspec.indented.dumps writes exactly what json.dumps(indent=2, sort_keys=True) writes."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelspec import indented

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text()
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=40,
)


@given(values, st.booleans())
def test_the_same_bytes_as_json(value: Any, ascii_only: bool) -> None:
    expected = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=ascii_only)
    assert indented.dumps(value, ensure_ascii=ascii_only) == expected


def test_default_keys_that_are_not_strings_and_errors_as_json() -> None:
    value = {"path": Path("a/b"), "nested": [Path("c")], "nan": math.nan}
    assert indented.dumps(value, default=str) == json.dumps(value, indent=2, sort_keys=True, default=str)
    assert indented.dumps({1: "a", 2: "b"}) == json.dumps({1: "a", 2: "b"}, indent=2, sort_keys=True)
    with pytest.raises(TypeError):
        indented.dumps({"path": Path("a")})
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match="Circular"):
        indented.dumps(cycle)
