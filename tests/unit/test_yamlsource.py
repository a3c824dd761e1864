"""Safe YAML loading with locations: what it keeps, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from modelspec.errors import Location, SpecError
from modelspec.spec.yamlsource import (
    MAX_BYTES,
    MAX_DEPTH,
    dotted,
    load_document,
    parse_document,
)

SPEC = b"""\
# a comment
name: demo
stages:
  train:
    cmd: python train.py
    code: [src, lib]
"""


def only_problem(raw: bytes) -> tuple[int, int, str]:
    with pytest.raises(SpecError) as raised:
        parse_document(raw, "s.yaml")
    (problem,) = raised.value.problems
    assert problem.location.file == "s.yaml"
    return problem.location.line, problem.location.column, problem.message


def test_values_and_keys_are_located() -> None:
    document = parse_document(SPEC, "s.yaml")
    assert document.data == {
        "name": "demo",
        "stages": {"train": {"cmd": "python train.py", "code": ["src", "lib"]}},
    }
    assert document.values[()] == (2, 1)
    assert document.keys[("name",)] == (2, 1)
    assert document.values[("name",)] == (2, 7)
    assert document.keys[("stages", "train", "cmd")] == (5, 5)
    assert document.values[("stages", "train", "cmd")] == (5, 10)
    assert document.values[("stages", "train", "code", 1)] == (6, 17)


def test_locate_falls_back_to_the_nearest_located_ancestor() -> None:
    document = parse_document(SPEC, "s.yaml")
    assert document.locate(("stages", "train", "outputs")) == Location("s.yaml", 5, 5)
    assert document.locate(("stages", "train", "cmd"), key=True) == Location("s.yaml", 5, 5)
    assert document.locate(("nothing", "here")) == Location("s.yaml", 2, 1)
    problem = document.problem(("stages", "train", "code", 0), "bad")
    assert str(problem) == "s.yaml:6:12: stages.train.code[0]: bad"


def test_dotted_paths() -> None:
    assert dotted(()) == ""
    assert dotted(("stages", "train", "outputs")) == "stages.train.outputs"
    assert dotted(("artifacts", 0)) == "artifacts[0]"
    assert dotted(("stages", "t", "code", 2, "x")) == "stages.t.code[2].x"


def test_empty_and_comment_only_documents_are_none() -> None:
    assert parse_document(b"", "s.yaml").data is None
    assert parse_document(b"# nothing\n", "s.yaml").data is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hermetic: off", "off"),
        ("hermetic: on", "on"),
        ("shell: yes", "yes"),
        ("shell: No", "No"),
        ("shell: true", True),
        ("shell: False", False),
        ("shell: TRUE", True),
    ],
)
def test_only_true_and_false_are_booleans(text: str, expected: object) -> None:
    value = parse_document(text.encode(), "s.yaml").data
    assert value == {text.split(":")[0]: expected}
    assert type(next(iter(value.values()))) is type(expected)


def test_numbers_keep_yaml_typing() -> None:
    data = parse_document(b"a: 1.10\nb: 3\nc: '1.10'\n", "s.yaml").data
    assert data == {"a": 1.1, "b": 3, "c": "1.10"}


def test_scalar_keys_keep_their_source_text() -> None:
    data = parse_document(b"1: a\nnull: b\noff: c\n", "s.yaml").data
    assert data == {"1": "a", "null": "b", "off": "c"}


def test_duplicate_key_names_both_lines() -> None:
    line, column, message = only_problem(b"a: 1\nb:\n  c: 1\n  c: 2\n")
    assert (line, column) == (4, 3)
    assert "b.c: duplicate key (first defined on line 3)" in message


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (b"a: &x 1\nb: *x\n", (1, 4)),
        (b"a: 1\nb: &x [1]\n", (2, 4)),
        (b"a: 1\nb: *x\n", (2, 4)),  # an alias whose anchor does not even exist
    ],
)
def test_anchors_and_aliases_are_refused(raw: bytes, where: tuple[int, int]) -> None:
    line, column, message = only_problem(raw)
    assert (line, column) == where
    assert "anchors and aliases are not allowed" in message


def test_merge_keys_are_refused() -> None:
    line, column, message = only_problem(b"a:\n  <<: {b: 1}\n  c: 2\n")
    assert (line, column) == (2, 3)
    assert "merge keys (<<) are not allowed" in message


def test_complex_keys_are_refused() -> None:
    _line, _column, message = only_problem(b"? [a, b]\n: 1\n")
    assert "mapping keys must be plain scalars" in message


def test_a_second_document_is_refused() -> None:
    line, column, message = only_problem(b"a: 1\n---\nb: 2\n")
    assert (line, column) == (2, 1)
    assert "only one YAML document" in message


@pytest.mark.parametrize(
    "raw",
    [
        b"a: !!python/object/apply:os.system [true]\n",
        b"a: !!python/name:os.system\n",
        b"a: !include other.yaml\n",
        b"a: !include {file: other.yaml}\n",
        b"a: !!set {x, y}\n",
    ],
)
def test_tags_beyond_plain_yaml_are_refused(raw: bytes) -> None:
    line, column, message = only_problem(raw)
    assert (line, column) == (1, 4)
    assert "tag" in message


def test_nesting_limit_is_exact() -> None:
    # the root mapping is level 1, so MAX_DEPTH - 1 brackets reach exactly MAX_DEPTH levels
    ok = b"a: " + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"\n"
    assert parse_document(ok, "s.yaml").data is not None
    deep = b"a: " + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"\n"
    line, column, message = only_problem(deep)
    assert (line, column) == (1, 3 + MAX_DEPTH)
    assert f"nested deeper than {MAX_DEPTH} levels" in message


def test_non_utf8_bytes_are_located() -> None:
    line, column, message = only_problem(b"a: 1\nb: caf\xe9\n")
    assert (line, column) == (2, 7)
    assert "not valid UTF-8" in message


def test_utf8_text_and_bom_are_fine() -> None:
    data = parse_document("\ufeffa: café — ok\n".encode(), "s.yaml").data
    assert data == {"a": "café — ok"}


def test_too_large_a_file_is_refused_before_parsing() -> None:
    raw = b"a: '" + b"x" * MAX_BYTES + b"'\n"
    _line, _column, message = only_problem(raw)
    assert f"at most {MAX_BYTES}" in message


def test_syntax_error_is_located() -> None:
    line, column, message = only_problem(b"a: 1\nb: [1, 2\nc: 3\n")
    assert line >= 2 and column >= 1
    assert message.startswith("invalid YAML:")


def test_load_document_reads_files_and_reports_missing_ones(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(SPEC)
    assert load_document(path, "specs/s.yaml").data["name"] == "demo"
    with pytest.raises(SpecError) as raised:
        load_document(tmp_path / "absent.yaml", "specs/absent.yaml")
    (problem,) = raised.value.problems
    assert str(problem) == "specs/absent.yaml: file not found"


# -- bytes that passed every check before: one fast pass, located on demand ---------------------

TRICKY = b"""\
on: yes
off: [no, On, true, False, ~, null]
1: one
2.5: two and a half
null: key
true: key
when: 2024-02-03
stamp: 2024-02-03T04:05:06Z
numbers: [0x1f, 0o17, 1_000, .inf, -.Inf, .nan, 1e3, "12"]
text: |
  two
  lines
folded: >-
  one
  line
nested: {a: [1, {b: {c: [x, "y", 'z']}}], empty: {}, none: []}
tagged: !!str 123
"""


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True  # nan
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def test_a_checked_document_has_the_same_values_and_locates_lazily() -> None:
    fraud = (Path(__file__).parents[2] / "specs" / "fraud.yaml").read_bytes()
    for raw in (SPEC, TRICKY, b"", b"# only a comment\n", fraud):
        eager = parse_document(raw, "s.yaml")
        fast = parse_document(raw, "s.yaml", checked=True)
        assert _same(fast.data, eager.data), raw
        for path in list(eager.values)[:50]:
            assert fast.locate(path) == eager.locate(path)
        for path in list(eager.keys)[:50]:
            assert fast.locate(path, key=True) == eager.locate(path, key=True)


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.sampled_from(["on", "off", "yes", "no", "y", "n", "~", "null", "1.5", "0x10", "2024-01-02"]),
)
_keys = st.one_of(st.text(max_size=6), st.integers(), st.booleans(), st.sampled_from(["on", "no", "null", "3"]))
_trees = st.recursive(_scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(_keys, kids, max_size=4))


@given(_trees, st.booleans())
def test_a_checked_document_reads_any_yaml_as_the_full_parse_does(tree: object, flow: bool) -> None:
    raw = yaml.safe_dump({"root": tree}, default_flow_style=flow, allow_unicode=True).encode()
    try:
        eager = parse_document(raw, "s.yaml")
    except SpecError:
        return  # not something that could have passed the checks
    assert _same(parse_document(raw, "s.yaml", checked=True).data, eager.data)


def test_a_spec_that_passed_before_loads_from_its_marker_and_is_still_located(tmp_path: Path) -> None:
    """The valid-specs marker keeps the spec's values as JSON: the next load reads them
    instead of the YAML, builds the same Spec, and still locates a problem in the YAML."""
    import subprocess

    from modelspec.spec.load import load_spec
    from modelspec.spec.markers import marker_content

    repo = tmp_path / "repo"
    (repo / "specs").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    spec_path = repo / "specs" / "fraud.yaml"
    spec_path.write_bytes((Path(__file__).parents[2] / "specs" / "fraud.yaml").read_bytes())
    (repo / "specs" / "fraud.lock").touch()
    cache = tmp_path / "cache"
    first = load_spec(spec_path, cache)
    assert first.schema_marker is not None and not first.schema_marker.exists()
    first.schema_marker.parent.mkdir(parents=True)
    first.schema_marker.write_bytes(marker_content(first.document))
    assert first.schema_marker.read_bytes().startswith(b"{")
    again = load_spec(spec_path, cache)
    assert again == first and again.document.data == first.document.data
    assert again.document.source is not None  # not parsed: read from the marker
    path = ("stages", "train", "cmd")
    assert again.document.locate(path) == parse_document(spec_path.read_bytes(), first.shown).locate(path)
