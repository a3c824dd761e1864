"""Commands on the quality of versions: `gate` (quality gates judged again), `metrics`
(metrics over versions) and `drift` (data profiles compared); and how gate verdicts read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from . import echo, emit_json, handle_errors, json_option, main, open_catalog_here, when

_VERDICT_WORDS = {
    "passed": "passed",
    "failed": "FAILED: the version is rejected",
    "overridden": "failed, overridden by a forced promotion",
}


def gate_lines(verdict: str, results: Sequence[Mapping[str, Any]], indent: str = "  ") -> list[str]:
    """One line per gate: `FAILED  auc ≥ 0.8: 0.7925 < 0.8`."""
    return [f"{indent}{'passed' if r['passed'] else 'FAILED'}  {r['shown']}: {r['why']}" for r in results]


def verdict_text(verdict: str) -> str:
    return _VERDICT_WORDS.get(verdict, verdict)


def recorded_gate_lines(found: Mapping[str, Any], indent: str = "    ") -> list[str]:
    """A recorded verdict (as `show` has it): when, by whom, each gate, and an override's reason."""
    details = found["details"]
    head = f"{indent}{verdict_text(found['verdict'])}  {when(found['time'])} UTC by {found['actor']}"
    lines = [head]
    if found["verdict"] == "overridden":
        lines.append(f"{indent}  reason: {details.get('reason', '')} (promoted to {details.get('alias', '?')})")
    return lines + gate_lines(found["verdict"], details.get("results", []), indent + "  ")


@main.command()
@click.argument("ref")
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Judge by this spec's gates (default: the gates the version was last judged by).",
)
@json_option
@handle_errors
def gate(ref: str, spec_path: Path | None, as_json: bool) -> None:
    """Judge version REF's quality gates again, against the baselines' current metrics, and
    record the verdict (a failed gate makes REF rejected; exit 1)."""
    from ..api import judge_gates

    with open_catalog_here() as catalog:
        verdict = judge_gates(catalog, ref, spec_path)
    shown = verdict.to_dict()
    if as_json:
        emit_json(shown)
    else:
        echo(f"gates of {verdict.ref}: {verdict_text(verdict.verdict)}")
        for line in gate_lines(verdict.verdict, shown["results"]):
            echo(line)
    raise SystemExit(1 if verdict.rejected else 0)
