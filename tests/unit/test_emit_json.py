"""`emit_json`: every command's `--json`; with `depth`, only the outer levels are indented."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelspec.cli import emit_json

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids, max_size=3),
    max_leaves=15,
)


@given(JSON, st.integers(0, 4))
def test_any_depth_writes_the_same_value(value: object, depth: int) -> None:
    with pytest.MonkeyPatch.context() as patch:
        written: list[str] = []
        patch.setattr("click.echo", written.append)
        emit_json(value, depth=depth)
        emit_json(value)
    assert json.loads(written[0]) == json.loads(written[1]) == value


def test_deep_enough_is_the_fully_indented_text(capsys: pytest.CaptureFixture[str]) -> None:
    value = {"b": [1, {"d": [], "c": {}}], "a": {"x": [True, None]}}
    emit_json(value, depth=10)
    assert capsys.readouterr().out == json.dumps(value, indent=2, sort_keys=True) + "\n"


def test_each_node_of_a_build_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    nodes = [{"node": f"m:s{i}", "state": "cached", "outputs": {"out": {"digest": "b3:00"}}} for i in range(3)]
    emit_json({"ok": True, "nodes": nodes, "specs": {"m": {"stages": {"s0": {"x": 1}}}}}, depth=2)
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line.strip().rstrip(",")) for line in lines if '"node"' in line] == nodes
    assert '    "m": {"stages": {"s0": {"x": 1}}}' in lines
