"""The quality of versions, on top of the catalog: quality gates judged again (`modelspec
gate`), metrics over versions (`modelspec metrics`), data drift between versions or
against a new file (`modelspec drift`), and their charts. Values in, values
out; nothing prints."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from .catalog import Catalog
from .drift.compare import DISTANCE, P_VALUE, ColumnDrift, DriftReport, common_bins, compare
from .drift.profile import is_tabular, profile_file
from .errors import UsageError, did_you_mean
from .registry.gates import GateVerdict, latest
from .registry.series import metric_series
from .spec.gates import Gate


def judge_gates(catalog: Catalog, ref: str, spec_path: Path | None = None) -> GateVerdict:
    """Judge REF's gates again against the baselines' current metrics and record the verdict:
    the gates of `spec_path`, else those REF was last judged by."""
    from .build.profiles import drift_results  # the build package, only when gates are judged

    version = catalog.resolve(ref).version
    if spec_path is not None:
        from .spec.load import load_spec

        spec = load_spec(spec_path)
        if spec.name != version.name:
            raise UsageError(f"{spec.shown} is the spec of {spec.name}, not of {version.name}")
        if not spec.gates:
            raise UsageError(f"{spec.shown} has no gates", hint="add gates: to the spec (see README, Quality gates)")
        checks = drift_results(catalog.store, catalog.registry, version, spec.gates)
        return catalog.registry.judge_gates(version, checks, catalog.actor, always=True)
    found = catalog.registry.read(latest, [version.id]).get(version.id)
    if found is not None and found["details"].get("results"):
        gates = [Gate.from_dict(r["gate"]) for r in found["details"]["results"]]
        checks = drift_results(catalog.store, catalog.registry, version, gates)
        return catalog.registry.judge_gates(version, checks, catalog.actor, always=True)
    raise UsageError(
        f"{version.ref} was never judged by quality gates",
        hint=f"name the spec whose gates to use: modelspec gate {ref} --spec specs/{version.name}.yaml",
    )


# -- metrics over versions -----------------------------------------------------------------------

SPARKS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 60  # at most this many characters: a longer series is sampled evenly


class MetricPoint(NamedTuple):
    """One version's metrics (a NamedTuple, immutable and cheap: a listing builds 10,000)."""

    version: str
    created: float
    status: str  # as `versions` shows it: active, rejected, retired
    aliases: tuple[str, ...]
    metrics: Mapping[str, float]
    deltas: Mapping[str, float]  # each metric's change from the previous version that recorded it

    def to_dict(self) -> dict[str, Any]:
        shown = self._asdict()
        shown["aliases"] = list(self.aliases)
        return shown


@dataclass(frozen=True)
class MetricHistory:
    name: str
    metrics: tuple[str, ...]  # the metrics shown, sorted
    points: tuple[MetricPoint, ...]  # in version order

    def series(self, metric: str) -> list[float | None]:
        return [p.metrics.get(metric) for p in self.points]

    def summary(self, metric: str) -> dict[str, Any]:
        values = [v for v in self.series(metric) if v is not None]
        return {
            "count": len(values),
            "min": min(values, default=None),
            "max": max(values, default=None),
            "last": values[-1] if values else None,
            "sparkline": sparkline(self.series(metric)),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "metrics": list(self.metrics),
            "versions": [p.to_dict() for p in self.points],
            "summary": {m: self.summary(m) for m in self.metrics},
        }


def metric_history(
    catalog: Catalog, name: str, metric: str | None = None, since: float | None = None, last: int | None = None
) -> MetricHistory:
    """Every version of model NAME (created at or after `since`; the newest `last` only, if
    given) with its metrics (or only `metric`), each one's change from the version before
    that recorded it (none for the first of the `last`), and its aliases."""
    registry = catalog.registry
    versions = registry.read(metric_series, name, metric, last)
    if not versions:
        catalog.versions(name)  # raises: no model named NAME, listing those there are
    known = sorted({k for v in versions for k in v.metrics})
    if metric is not None and not known:
        known = registry.metric_names(name)
        raise UsageError(
            f"no version of {name} has a metric {metric!r}{did_you_mean(metric, known)}",
            hint=f"the metrics of {name}: {', '.join(known) or 'none'}",
        )
    aliases = registry.aliases_of(name)
    previous: dict[str, float] = {}
    points = []
    for v in versions:
        deltas = {k: x - previous[k] for k, x in v.metrics.items() if k in previous}
        previous.update(v.metrics)
        if since is None or v.created >= since:  # an older one is still the base of the next delta
            points.append(MetricPoint(v.version, v.created, v.status, tuple(aliases.get(v.id, [])), v.metrics, deltas))
    return MetricHistory(name, tuple(known), tuple(points))


def sparkline(values: Sequence[float | None], width: int = SPARK_WIDTH) -> str:
    """`▁▃█▅`: each value's height between the series' min and max; a space where a
    version did not record it. A series longer than `width` is sampled evenly."""
    if len(values) > width:
        values = [values[round(i * (len(values) - 1) / (width - 1))] for i in range(width)]
    present = [v for v in values if v is not None]
    if not present:
        return ""
    low, high = min(present), max(present)
    span = high - low
    top = len(SPARKS) - 1
    return "".join(
        " " if v is None else SPARKS[round((v - low) / span * top) if span else top // 2] for v in values
    )


def write_metrics_plot(history: MetricHistory, target: Path) -> Path:
    """A chart of each metric over the versions, aliases marked: SVG written directly, PNG
    with matplotlib (the `plot` extra)."""
    from .plots import save

    return save(metrics_figure(history), target)


def metrics_svg(history: MetricHistory) -> str:
    """The chart `metrics --plot x.svg` writes, as text (what the web view shows)."""
    from .plots import svg

    if not history.metrics:
        raise UsageError(f"{history.name} recorded no metrics: there is nothing to plot")
    return svg(metrics_figure(history))


def metrics_figure(history: MetricHistory) -> Any:
    from .plots import line_charts

    charts = [(m, history.series(m)) for m in history.metrics]
    labels = [p.version for p in history.points]
    marks = {i: ", ".join(p.aliases) for i, p in enumerate(history.points) if p.aliases}
    return line_charts(f"{history.name}: metrics over versions", labels, charts, marks)


# -- data drift ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drift:
    """One input's drift with the two profiles compared (for a plot)."""

    report: DriftReport
    reference: Mapping[str, Any]
    current: Mapping[str, Any]


def drift(
    catalog: Catalog,
    ref: str,
    baseline: str | None = None,
    data: Path | None = None,
    input_name: str | None = None,
    ignore: Sequence[str] = (),
) -> list[Drift]:
    """How the data of version REF drifted from that of `baseline` (default NAME@production),
    input by input; with `data`, how that file drifted from REF's own training data."""
    version = catalog.resolve(ref).version
    mine = _profiles(catalog, version.ref, version.record)
    if data is not None:
        name = _one_input(version.ref, mine, input_name)
        shown = str(data)
        if not data.is_file():
            raise UsageError(f"--data {shown}: no such file")
        if not is_tabular(data.name):
            raise UsageError(f"--data {shown}: a data file is profiled as CSV (.csv) or Parquet (.parquet)")
        current = profile_file(data, shown)
        reference = _loaded(catalog, mine[name])
        labels = (f"{version.ref} ({name})", shown, name)
        return [Drift(compare(reference, current, labels, ignore), reference, current)]
    other = catalog.resolve(baseline).version if baseline else _production(catalog, version.name, ref)
    theirs = _profiles(catalog, other.ref, other.record)
    names = [n for n in mine if n in theirs and (input_name is None or n == input_name)]
    if not names:
        wanted = f"input {input_name!r}" if input_name else "profiled input"
        raise UsageError(
            f"{version.ref} and {other.ref} have no {wanted} in common",
            hint=f"profiled inputs of {version.ref}: {', '.join(mine)}; of {other.ref}: {', '.join(theirs)}",
        )
    found = []
    for name in names:
        reference, current = _loaded(catalog, theirs[name]), _loaded(catalog, mine[name])
        report = compare(reference, current, (other.ref, version.ref, name), ignore)
        found.append(Drift(report, reference, current))
    return found


def _production(catalog: Catalog, name: str, ref: str) -> Any:
    if not catalog.registry.alias_targets(name, "production"):
        raise UsageError(
            f"{name} has no production alias to compare {ref} with",
            hint=f"name the version to compare with: modelspec drift {ref} {name}@VERSION",
        )
    return catalog.resolve(f"{name}@production").version


def _profiles(catalog: Catalog, ref: str, record: Mapping[str, Any]) -> dict[str, str]:
    profiles = dict(record.get("profiles") or {})
    if not profiles:
        raise UsageError(
            f"{ref} has no data profiles: it has no CSV or Parquet file input, or was built before "
            "modelspec recorded profiles",
            hint="profiles are taken when a version is registered: build it again with this modelspec",
        )
    return profiles


def _one_input(ref: str, profiles: Mapping[str, str], input_name: str | None) -> str:
    if input_name is not None:
        if input_name not in profiles:
            raise UsageError(f"{ref} has no profiled input {input_name!r}", hint=f"profiled: {', '.join(profiles)}")
        return input_name
    if len(profiles) > 1:
        raise UsageError(f"{ref} has several profiled inputs", hint=f"name one with --input: {', '.join(profiles)}")
    return next(iter(profiles))


def _loaded(catalog: Catalog, digest: str) -> dict[str, Any]:
    profile: dict[str, Any] = json.loads(catalog.store.read_bytes(digest))
    if profile.get("unprofiled"):
        raise UsageError(f"{profile.get('file')} was not profiled: {profile['unprofiled']}")
    return profile


def write_drift_plot(found: Sequence[Drift], target: Path, most: int = 4) -> Path:
    """The histograms of the most drifted columns, reference beside current."""
    from .plots import save

    return save(drift_figure(found, most), target)


def drift_svg(found: Sequence[Drift], most: int = 4) -> str:
    """The chart `drift --plot x.svg` writes, as text (what the web view shows)."""
    from .plots import svg

    return svg(drift_figure(found, most))


def drift_figure(found: Sequence[Drift], most: int = 4) -> Any:
    from .plots import Bars, Figure

    ranked = []
    for item in found:
        ref = {c["name"]: c for c in item.reference.get("columns", [])}
        cur = {c["name"]: c for c in item.current.get("columns", [])}
        for column in item.report.compared:
            ranked.append((_severity(column), item.report, ref[column.column], cur[column.column]))
    ranked.sort(key=lambda r: -r[0])
    panels = []
    for _, report, ref_column, cur_column in ranked[:most]:
        labels, a, b = common_bins(ref_column, cur_column)
        title = f"{report.input}.{ref_column['name']}"
        panels.append(Bars(title, labels, [(report.reference, a), (report.current, b)]))
    title = f"drift: {found[0].report.current} vs {found[0].report.reference}" if found else "drift"
    return Figure(title, panels)


def _severity(column: ColumnDrift) -> float:
    """How far past (or short of) its threshold a column is: > 1 drifted."""
    if column.p_value is not None:
        return (column.threshold or P_VALUE) / max(column.p_value, 1e-300)
    if column.statistic is None:
        return math.inf if column.drifted else 0.0
    return column.statistic / (column.threshold or DISTANCE)
