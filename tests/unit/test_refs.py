"""Model references, version numbers, ranges and metric conditions (pure functions)."""

from __future__ import annotations

import pytest

from modelspec.errors import UsageError
from modelspec.spec.refs import (
    Ref,
    matches_range,
    parse_ref,
    parse_short_form,
    parse_version,
    parse_where,
    short_content_id,
    too_short_prefix,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1.3", (1, 3, None)), ("1.3.2", (1, 3, 2)), ("0.0.0", (0, 0, 0)), ("10.20.300", (10, 20, 300))],
)
def test_parse_version(text: str, expected: tuple[int, int, int | None]) -> None:
    assert parse_version(text) == expected


@pytest.mark.parametrize("text", ["1", "1.3.2.1", "01.3", "1.03", "1.3.02", "v1.3", "1.x", "", "1.3."])
def test_parse_version_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="is not a version"):
        parse_version(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fraud", Ref("fraud", "latest")),
        ("fraud@latest", Ref("fraud", "latest")),
        ("fraud@1.3.2", Ref("fraud", "version", "1.3.2")),
        ("fraud@1.3", Ref("fraud", "minor", "1.3")),
        ("fraud@production", Ref("fraud", "alias", "production")),
        ("fraud@canary-eu_2", Ref("fraud", "alias", "canary-eu_2")),
        ("fraud@3f2a9c", Ref("fraud", "content", "3f2a9c")),
        ("fraud@dead", Ref("fraud", "content", "dead")),  # four hex digits: a content prefix
        ("fraud@fraud-3f2a9c01be", Ref("fraud", "content", "3f2a9c01be")),
        ("fraud-v2@1.0.0", Ref("fraud-v2", "version", "1.0.0")),
    ],
)
def test_parse_ref(text: str, expected: Ref) -> None:
    assert parse_ref(text) == expected


@pytest.mark.parametrize("text", ["Fraud@1.3", "fraud@", "@1.3", "fraud@1.3@2", "9fraud", "fraud@a/b", ""])
def test_parse_ref_rejects_what_is_not_a_reference(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_ref(text)
    assert info.value.exit_code == 2
    assert "NAME@VERSION" in info.value.hint


@pytest.mark.parametrize("selector", ["a b", "1.3.2.1", "^2.0"])
def test_parse_ref_rejects_selectors_that_are_nothing_known(selector: str) -> None:
    with pytest.raises(UsageError, match="neither a version, an alias nor a content-id prefix"):
        parse_ref(f"fraud@{selector}")


@pytest.mark.parametrize("selector", ["3f2", "0", "00a"])
def test_a_content_id_prefix_too_short_says_the_minimum(selector: str) -> None:
    with pytest.raises(UsageError, match="a content-id prefix has at least 4 hex digits"):
        parse_ref(f"fraud@{selector}")


@pytest.mark.parametrize(
    ("text", "digits"),
    [("fraud@abc", "abc"), ("fraud@fraud-ab", "ab"), ("fraud-3f2", "3f2"), ("fraud@prod", ""), ("fraud", "")],
)
def test_too_short_prefix_names_hex_digits_too_few_to_be_a_prefix(text: str, digits: str) -> None:
    assert too_short_prefix(parse_ref(text)) == digits


def test_ref_prints_as_written() -> None:
    assert str(parse_ref("fraud")) == "fraud@latest"
    assert str(parse_ref("fraud@1.3.2")) == "fraud@1.3.2"
    assert str(parse_ref("fraud@production")) == "fraud@production"
    assert str(parse_ref("fraud@3f2a9c")) == "fraud@3f2a9c"


def test_short_form_is_what_short_content_id_prints() -> None:
    content = "blake3:3f2a9c01be" + "7" * 54
    short = short_content_id("fraud", content)
    assert short == "fraud-3f2a9c01be"
    assert parse_short_form(short) == Ref("fraud", "content", "3f2a9c01be")
    # A hyphenated model name keeps its hyphens; the hex is the last part.
    assert parse_short_form(short_content_id("fraud-eu-v2", content)) == Ref("fraud-eu-v2", "content", "3f2a9c01be")
    assert short_content_id("fraud", "3f2a9c01be77") == "fraud-3f2a9c01be"  # without the algorithm prefix too


@pytest.mark.parametrize("text", ["fraud", "fraud-", "fraud-xyz123", "fraud-3f2", "fraud@3f2a9c01be", "-3f2a9c01be"])
def test_short_form_needs_name_dash_hex(text: str) -> None:
    assert parse_short_form(text) is None


@pytest.mark.parametrize(
    ("version", "spec", "expected"),
    [
        ((2, 0, 0), "^2.0", True),
        ((2, 9, 9), "^2.0", True),
        ((3, 0, 0), "^2.0", False),
        ((1, 9, 9), "^2.0", False),
        ((0, 2, 5), "^0.2", True),
        ((0, 3, 0), "^0.2", False),
        ((1, 3, 0), "~1.3", True),
        ((1, 4, 0), "~1.3", False),
        ((1, 3, 7), "1.3", True),
        ((1, 4, 0), "1.3", False),
        ((1, 3, 2), "1.3.2", True),
        ((1, 3, 3), "1.3.2", False),
        ((1, 3, 2), "==1.3.2", True),
        ((1, 5, 0), ">=1.2,<2.0", True),
        ((2, 0, 0), ">=1.2,<2.0", False),
        ((1, 1, 9), ">=1.2 <2.0", False),
        ((1, 2, 1), ">1.2.0", True),
        ((1, 2, 0), "<=1.2.0", True),
        ((7, 7, 7), "*", True),
        ((7, 7, 7), "latest", True),
    ],
)
def test_matches_range(version: tuple[int, int, int], spec: str, expected: bool) -> None:
    assert matches_range(version, spec) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("auc>0.9", [("auc", ">", 0.9)]),
        ("auc > 0.9, f1>=0.5", [("auc", ">", 0.9), ("f1", ">=", 0.5)]),
        ("auc>0.9 and loss<1e-3", [("auc", ">", 0.9), ("loss", "<", 0.001)]),
        ("auc=0.5", [("auc", "==", 0.5)]),
        ("auc==0.5", [("auc", "==", 0.5)]),
        ("auc!=0.5", [("auc", "!=", 0.5)]),
        ("delta>=-0.25", [("delta", ">=", -0.25)]),
        ("eval.auc<=1", [("eval.auc", "<=", 1.0)]),
        ("android>1, brand<2", [("android", ">", 1.0), ("brand", "<", 2.0)]),  # `and` only as a word
        ("auc>0.9,", [("auc", ">", 0.9)]),
        ("", []),
    ],
)
def test_parse_where(text: str, expected: list[tuple[str, str, float]]) -> None:
    assert parse_where(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("auc", "cannot read the condition 'auc'"),
        ("auc>>0.9", "cannot read the condition"),
        ("auc>high", "cannot read the condition"),
        ("0auc>1", "cannot read the condition"),
        ("auc>1.2.3", "'1.2.3' in 'auc>1.2.3' is not a number"),
    ],
)
def test_parse_where_rejects(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(")) as info:
        parse_where(text)
    assert info.value.exit_code == 2
