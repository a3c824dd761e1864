"""Two profiles compared column by column with Evidently's default tests and thresholds.

By the reference's rows: up to 1,000, the two-sample Kolmogorov-Smirnov test for a
numeric column and the chi-squared test for a categorical one (drift when p < 0.05); above,
the Wasserstein distance divided by the reference's standard deviation (at least 0.001)
and the Jensen-Shannon distance (drift when ≥ 0.1). The dataset drifts when at least half
of the columns compared drift. A column whose type changed drifts; one that is in a
single profile, or has no values in one, is listed and not compared.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from . import stats

SMALL = 1000  # reference rows up to which the tests are statistical tests (p-values)
P_VALUE = 0.05
DISTANCE = 0.1
DATASET_SHARE = 0.5
OTHER = "(other)"  # the categories a profile did not keep, counted together


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    type: str  # numeric | categorical | changed (numeric in one profile, categorical in the other)
    test: str  # ks | chi2 | wasserstein | jensenshannon | type | none
    statistic: float | None
    p_value: float | None
    threshold: float | None
    drifted: bool
    missing: tuple[float, float]  # the share of missing values, reference then current
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "missing": list(self.missing)}


@dataclass(frozen=True)
class DriftReport:
    reference: str  # what each profile is: `fraud@1.0.0 (production)`, a file
    current: str
    input: str  # the data input compared
    columns: tuple[ColumnDrift, ...]
    share_threshold: float = DATASET_SHARE
    ignored: tuple[str, ...] = field(default=())

    @property
    def compared(self) -> list[ColumnDrift]:
        return [c for c in self.columns if c.test != "none"]

    @property
    def drifted(self) -> list[ColumnDrift]:
        return [c for c in self.columns if c.drifted]

    @property
    def share(self) -> float:
        return len(self.drifted) / len(self.compared) if self.compared else 0.0

    @property
    def dataset_drift(self) -> bool:
        return bool(self.compared) and self.share >= self.share_threshold

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "current": self.current,
            "input": self.input,
            "dataset_drift": self.dataset_drift,
            "drifted_columns": len(self.drifted),
            "compared_columns": len(self.compared),
            "share": self.share,
            "share_threshold": self.share_threshold,
            "ignored": list(self.ignored),
            "columns": [c.to_dict() for c in self.columns],
        }


def compare(
    reference: Mapping[str, Any],
    current: Mapping[str, Any],
    labels: tuple[str, str, str],
    ignore: Iterable[str] = (),
    share: float = DATASET_SHARE,
) -> DriftReport:
    """`current` against `reference` (profiles); `labels` are (reference, current, input)."""
    ignored = tuple(sorted(set(ignore)))
    ref_columns = {c["name"]: c for c in reference.get("columns", [])}
    cur_columns = {c["name"]: c for c in current.get("columns", [])}
    rows = int(reference.get("rows", 0))
    found = []
    for name in [*ref_columns, *(n for n in cur_columns if n not in ref_columns)]:
        if name in ignored:
            continue
        ref, cur = ref_columns.get(name), cur_columns.get(name)
        if ref is None or cur is None:
            where = "the current data" if ref is None else "the reference"
            kind = (ref or cur or {}).get("type", "")
            found.append(ColumnDrift(name, kind, "none", None, None, None, False, (0.0, 0.0), f"only in {where}"))
            continue
        found.append(column_drift(name, ref, cur, rows))
    return DriftReport(labels[0], labels[1], labels[2], tuple(found), share, ignored)


def column_drift(name: str, ref: Mapping[str, Any], cur: Mapping[str, Any], rows: int) -> ColumnDrift:
    missing = (_missing_share(ref), _missing_share(cur))
    if ref["type"] != cur["type"]:
        note = f"{ref['type']} in the reference, {cur['type']} now"
        return ColumnDrift(name, "changed", "type", None, None, None, True, missing, note)
    if not ref["count"] or not cur["count"]:
        return ColumnDrift(name, ref["type"], "none", None, None, None, False, missing, "no values to compare")
    if ref["type"] == "numeric":
        if rows <= SMALL:
            statistic = stats.ks_statistic(ref["quantiles"], cur["quantiles"])
            p = stats.ks_p_value(statistic, ref["count"], cur["count"])
            return ColumnDrift(name, "numeric", "ks", statistic, p, P_VALUE, p < P_VALUE, missing)
        distance = stats.wasserstein(ref["quantiles"], cur["quantiles"]) / max(ref["std"], 0.001)
        return ColumnDrift(name, "numeric", "wasserstein", distance, None, DISTANCE, distance >= DISTANCE, missing)
    ref_counts, cur_counts = _aligned(ref, cur)
    if rows <= SMALL:
        scale = sum(cur_counts) / sum(ref_counts)
        statistic, p = stats.chi_square(cur_counts, [n * scale for n in ref_counts])
        return ColumnDrift(name, "categorical", "chi2", statistic, p, P_VALUE, p < P_VALUE, missing)
    distance = stats.jensen_shannon(ref_counts, cur_counts)
    return ColumnDrift(name, "categorical", "jensenshannon", distance, None, DISTANCE, distance >= DISTANCE, missing)


def _aligned(ref: Mapping[str, Any], cur: Mapping[str, Any]) -> tuple[list[float], list[float]]:
    """Both profiles' counts over the union of their kept categories, and the rest."""
    a, b = dict(ref["top"]), dict(cur["top"])
    keys = sorted({*a, *b})
    ref_counts = [float(a.get(k, 0)) for k in keys] + [float(ref.get("other", 0))]
    cur_counts = [float(b.get(k, 0)) for k in keys] + [float(cur.get("other", 0))]
    if not ref_counts[-1] and not cur_counts[-1]:
        ref_counts.pop(), cur_counts.pop()
    return ref_counts, cur_counts


def _missing_share(column: Mapping[str, Any]) -> float:
    total = column["count"] + column["missing"]
    return column["missing"] / total if total else 0.0


def common_bins(
    ref: Mapping[str, Any], cur: Mapping[str, Any], bins: int = 20
) -> tuple[list[str], list[float], list[float]]:
    """Both numeric columns' shares over the same bins (from their quantiles), for a plot;
    or both categorical columns' shares over their categories."""
    if ref["type"] != "numeric" or cur["type"] != "numeric":
        a, b = _aligned(ref, cur) if ref["type"] == cur["type"] == "categorical" else ([], [])
        keys = sorted({*dict(ref.get("top", [])), *dict(cur.get("top", []))})
        labels = keys + ([OTHER] if len(a) > len(keys) else [])
        return labels, _shares(a), _shares(b)
    low, high = min(ref["min"], cur["min"]), max(ref["max"], cur["max"])
    width = (high - low) / bins if high > low else 1.0
    edges = [low + i * width for i in range(bins + 1)]
    labels = [f"{edge:.3g}" for edge in edges[:-1]]

    def masses(quantiles: list[float]) -> list[float]:
        points = [stats.cdf(quantiles, edge) for edge in edges]
        points[-1] = 1.0
        return [max(points[i + 1] - points[i], 0.0) for i in range(bins)]

    return labels, masses(ref["quantiles"]), masses(cur["quantiles"])


def _shares(counts: list[float]) -> list[float]:
    total = sum(counts)
    return [c / total for c in counts] if total else counts
