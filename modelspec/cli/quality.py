"""Commands on the quality of versions: `gate` (quality gates judged again), `metrics`
(metrics over versions) and `drift` (data profiles compared); and how gate verdicts read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from ..errors import UsageError
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


@main.command()
@click.argument("name")
@click.option("--metric", help="Only this metric (default: every metric the model recorded).")
@click.option("--since", help="Only versions created at or after this date (2026-11-30, 2026-11-30T14:00; UTC).")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a chart of each metric over the versions, aliases marked: .svg, or .png (needs matplotlib).",
)
@json_option
@handle_errors
def metrics(name: str, metric: str | None, since: str | None, plot_path: Path | None, as_json: bool) -> None:
    """Metrics of model NAME over its versions: each value with its change from the version
    before, the aliases serving each version, and a sparkline per metric."""
    from ..api import metric_history, write_metrics_plot
    from ..text import printable
    from . import metric_text, parse_when

    start = parse_when(since) if since else None
    with open_catalog_here(read_only=True) as catalog:
        history = metric_history(catalog, name, metric, start)
    written = write_metrics_plot(history, plot_path) if plot_path is not None else None
    if as_json:
        emit_json({**history.to_dict(), "plot": str(written) if written else None}, depth=2)
        return
    rows = [["version", "created (UTC)", "status", *history.metrics, "aliases"]]
    for p in history.points:
        values = []
        for m in history.metrics:
            value = p.metrics.get(m)
            delta = f" ({metric_text(p.deltas[m], '+.4g')})" if m in p.deltas else ""
            values.append("" if value is None else metric_text(value, ".4g") + delta)
        rows.append([p.version, when(p.created), p.status, *values, printable(", ".join(p.aliases))])
    # Plain aligned columns, not a rich table: 10,000 versions print in a blink. Only the
    # metric names and aliases are user strings (shown escaped); the rest is ours.
    rows[0] = [printable(text) for text in rows[0]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    click.echo("\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows))
    width = max((len(m) for m in history.metrics), default=0)
    for m in history.metrics:
        s = history.summary(m)
        if s["count"]:
            low, high, last = (metric_text(s[k], ".4g") for k in ("min", "max", "last"))
            echo(f"{m:<{width}}  {s['sparkline']}  min {low}  max {high}  last {last}")
    if not history.points:
        echo(f"no version of {name} was created since {since}")
    if written is not None:
        echo(f"wrote {written}")


@main.command()
@click.argument("ref")
@click.argument("baseline", required=False)
@click.option(
    "--data",
    "data_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Compare this CSV or Parquet file (new traffic, say) with REF's training data instead.",
)
@click.option("--input", "input_name", help="The data input to compare, when there are several.")
@click.option("--ignore", multiple=True, help="A column not to compare (an id, a timestamp); repeatable.")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the histograms of the most drifted columns: .svg, or .png (needs matplotlib).",
)
@json_option
@handle_errors
def drift(
    ref: str,
    baseline: str | None,
    data_path: Path | None,
    input_name: str | None,
    ignore: tuple[str, ...],
    plot_path: Path | None,
    as_json: bool,
) -> None:
    """How the data of version REF drifted from BASELINE's (default: NAME@production), column
    by column, from the profiles recorded at their builds; with --data FILE, how FILE drifted
    from REF's training data. Exit 1 when a dataset drifted (for a cron job to alert on)."""
    from ..api import drift as find_drift
    from ..api import write_drift_plot

    if data_path is not None and baseline is not None:
        raise UsageError("give BASELINE or --data, not both", hint="--data compares a file with REF's training data")
    with open_catalog_here(read_only=True) as catalog:
        found = find_drift(catalog, ref, baseline, data_path, input_name, ignore)
    written = write_drift_plot(found, plot_path) if plot_path is not None else None
    drifted = any(item.report.dataset_drift for item in found)
    if as_json:
        emit_json({"dataset_drift": drifted, "inputs": [item.report.to_dict() for item in found],
                   "plot": str(written) if written else None})  # fmt: skip
    else:
        for item in found:
            for line in drift_lines(item.report):
                echo(line)
        if written is not None:
            echo(f"wrote {written}")
    raise SystemExit(1 if drifted else 0)


def drift_lines(report: Any) -> list[str]:
    """The verdict, then one aligned row per column."""
    compared, drifted = len(report.compared), len(report.drifted)
    verdict = "DATASET DRIFT" if report.dataset_drift else "no dataset drift"
    head = (
        f"{report.current} vs {report.reference}, input {report.input}: {drifted} of {compared} columns drifted "
        f"({report.share:.0%}): {verdict} (at {report.share_threshold:.0%})"
    )
    rows = [["column", "type", "test", "statistic", "p-value", "threshold", "drift", "missing"]]
    for c in report.columns:
        rows.append(
            [
                c.column,
                c.type,
                c.test,
                "" if c.statistic is None else f"{c.statistic:.4g}",
                "" if c.p_value is None else f"{c.p_value:.3g}",
                "" if c.threshold is None else f"{c.threshold:g}",
                "DRIFT" if c.drifted else ("-" if c.test == "none" else "no"),
                f"{c.missing[0]:.0%} → {c.missing[1]:.0%}" + (f"  ({c.note})" if c.note else ""),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [head] + ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
