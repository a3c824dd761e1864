"""`versions` prints its table without rich when the output is not a terminal: the text must
be exactly what rich prints for the same cells, and rich must still print what does not fit."""

from __future__ import annotations

import io
import random

import pytest
from rich.cells import cell_len
from rich.console import Console

from modelspec.cli.render import listing, plain_table
from modelspec.text import printable

ALPHABET = "abcxyz0123456789.-_ ,()[]/:=" + "é漢字🙂" + "\x1b\u202e\n\t"


def rich_text(header: list[str], rows: list[list[str]], width: int) -> str:
    """What the CLI's fallback prints: rich's rendering of the same listing."""
    console = Console(file=io.StringIO(), width=width, highlight=False, soft_wrap=True, emoji=False)
    console.print(listing(header, rows))
    return console.file.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize("seed", range(40))
def test_the_plain_table_is_what_rich_prints_or_nothing(seed: int) -> None:
    rng = random.Random(seed)
    columns = rng.randint(1, 8)

    def word(longest: int) -> str:
        return printable("".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, longest))))

    header = [word(12) or "x" for _ in range(columns)]
    rows = [[word(rng.choice([3, 10, 30])) for _ in range(columns)] for _ in range(rng.randint(0, 12))]
    width = rng.choice([40, 80, 160])
    plain = plain_table(header, rows, width)
    if plain is None:  # it would not fit: rich wraps, and prints it
        assert rich_text(header, rows, width) != ""
        assert sum(max(cell_len(c) for c in col) for col in zip(header, *rows, strict=True)) + 2 * (columns - 1) > width
    else:
        assert plain == rich_text(header, rows, width)


def test_a_row_too_wide_for_the_width_is_left_to_rich() -> None:
    assert plain_table(["a", "b"], [["x" * 100, "y" * 100]], 160) is None
    assert plain_table(["a", "b"], [["x" * 70, "y" * 70]], 160) == rich_text(["a", "b"], [["x" * 70, "y" * 70]], 160)
