"""Counts in messages: one of a thing is singular, any other number plural."""

from __future__ import annotations

import pytest

from modelspec.errors import Location, Problem, SpecError
from modelspec.text import plural


@pytest.mark.parametrize(
    ("count", "word", "many", "shown"),
    [
        (0, "stage", "", "0 stages"),
        (1, "stage", "", "1 stage"),
        (2, "stage", "", "2 stages"),
        (1, "byte", "", "1 byte"),
        (1, "action-cache entry", "action-cache entries", "1 action-cache entry"),
        (3, "action-cache entry", "action-cache entries", "3 action-cache entries"),
    ],
)
def test_plural(count: int, word: str, many: str, shown: str) -> None:
    assert plural(count, word, many) == shown


def test_one_problem_is_one_problem() -> None:
    problem = Problem(Location("s.yaml", 1, 1), "name", "bad")
    assert SpecError([problem]).message.startswith("1 problem found\n")
    assert SpecError([problem, problem]).message.startswith("2 problems found\n")
