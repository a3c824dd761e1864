"""Data profiles and drift in-process: profiles of CSV and Parquet files with missing values
and categoricals (whole, and sampled when large), the drift statistics against scipy's on
known distributions (a shifted normal drifts, a resample does not), and the column-by-
column comparison with Evidently's default tests and thresholds."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats
from scipy.spatial.distance import jensenshannon

from modelspec.digest import canonical_json
from modelspec.drift import profile as profiling
from modelspec.drift import stats
from modelspec.drift.compare import compare
from modelspec.drift.profile import profile_column, profile_file
from modelspec.errors import UsageError
from modelspec.plots import Bars, Figure, Lines, save


def write_csv(path: Path, n: int, shift: float = 0.0, seed: int = 1, shares: tuple[float, ...] = (5, 3, 2)) -> Path:
    rng = random.Random(seed)
    lines = ["id,x,c,flag"]
    for i in range(n):
        x = "" if i % 20 == 0 else f"{rng.gauss(shift, 1):.5f}"
        c = "NA" if i % 50 == 0 else rng.choices(["a", "b", "c"], shares)[0]
        lines.append(f"{i},{x},{c},{rng.choice(['yes', 'no'])}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_csv_profile_has_types_counts_missing_quantiles_and_categories(tmp_path: Path) -> None:
    profile = profile_file(write_csv(tmp_path / "t.csv", 1000), "t.csv")
    assert (profile["format"], profile["file"], profile["kind"], profile["rows"]) == (1, "t.csv", "csv", 1000)
    assert "sampled" not in profile
    columns = {c["name"]: c for c in profile["columns"]}
    assert [c["name"] for c in profile["columns"]] == ["id", "x", "c", "flag"]
    x = columns["x"]
    assert (x["type"], x["count"], x["missing"]) == ("numeric", 950, 50)
    cells = [line.split(",")[1] for line in (tmp_path / "t.csv").read_text().splitlines()[1:]]
    values = np.array([float(v) for v in cells if v])
    assert x["quantiles"] == pytest.approx(list(np.percentile(values, range(101))), rel=1e-6, abs=1e-6)
    assert x["mean"] == pytest.approx(values.mean(), rel=1e-6) and x["std"] == pytest.approx(values.std(), rel=1e-6)
    assert sum(x["histogram"]["counts"]) == 950 and len(x["histogram"]["edges"]) == 21
    c = columns["c"]
    assert (c["type"], c["count"], c["missing"], c["distinct"], c["other"]) == ("categorical", 980, 20, 3, 0)
    assert [value for value, _ in c["top"]] == ["a", "b", "c"] and sum(n for _, n in c["top"]) == 980
    assert columns["id"]["quantiles"][50] == pytest.approx(499.5)
    assert len(canonical_json(profile)) < 12_000  # a few KB


def test_a_large_csv_is_profiled_from_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_csv(tmp_path / "big.csv", 60_000)
    whole = profile_file(path, "big.csv")
    monkeypatch.setattr(profiling, "FULL_BYTES", 100_000)
    monkeypatch.setattr(profiling, "BLOCK_BYTES", 16 << 10)
    sampled = profile_file(path, "big.csv")
    assert sampled["rows"] == pytest.approx(60_000, rel=0.01)  # estimated from the size
    assert 5000 < sampled["sampled"]["rows"] < 60_000
    a, b = whole["columns"][1], sampled["columns"][1]
    assert a["type"] == b["type"] == "numeric"
    assert b["count"] + b["missing"] == pytest.approx(60_000, rel=0.01)
    assert b["missing"] == pytest.approx(3000, rel=0.1)
    assert stats.ks_statistic(a["quantiles"], b["quantiles"]) < 0.03  # a sample describes the whole
    report = compare(whole, sampled, ("whole", "sampled", "t"), ignore=["id"])
    assert not report.dataset_drift and report.drifted == []


def test_a_parquet_profile_matches_the_csv_one(tmp_path: Path) -> None:
    csv_profile = profile_file(write_csv(tmp_path / "t.csv", 500), "t.csv")
    rows = [line.split(",") for line in (tmp_path / "t.csv").read_text().splitlines()[1:]]
    table = pa.table(
        {
            "id": [int(r[0]) for r in rows],
            "x": [float(r[1]) if r[1] else None for r in rows],
            "c": [None if r[2] == "NA" else r[2] for r in rows],
            "flag": [r[3] for r in rows],
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    profile = profile_file(tmp_path / "t.parquet", "t.parquet")
    assert (profile["kind"], profile["rows"]) == ("parquet", 500)
    assert profile["columns"] == csv_profile["columns"]  # the same numbers, missing values and categories


def test_parquet_without_pyarrow_is_recorded_as_unprofiled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pq.write_table(pa.table({"x": [1.0, 2.0]}), tmp_path / "t.parquet")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # an import of it raises ImportError
    profile = profile_file(tmp_path / "t.parquet", "t.parquet")
    assert "pip install 'modelspec[parquet]'" in profile["unprofiled"] and "columns" not in profile


def test_a_byte_order_mark_and_an_empty_file(tmp_path: Path) -> None:
    (tmp_path / "bom.csv").write_bytes("\ufeffa,b\n1,x\n".encode())
    assert [c["name"] for c in profile_file(tmp_path / "bom.csv", "bom.csv")["columns"]] == ["a", "b"]
    (tmp_path / "empty.csv").write_text("a,b\n")
    empty = profile_file(tmp_path / "empty.csv", "empty.csv")
    assert empty["rows"] == 0 and [(c["name"], c["count"]) for c in empty["columns"]] == [("a", 0), ("b", 0)]
    assert compare(empty, empty, ("x", "y", "t")).compared == []


def test_a_column_of_numbers_booleans_or_infinities() -> None:
    assert profile_column(["1", "2.5", "", "1e3"])["type"] == "numeric"
    assert profile_column(["1", "two"])["type"] == "categorical"
    assert profile_column([True, False], text=False)["type"] == "categorical"  # Parquet's booleans
    assert profile_column([1, None, 2.5], text=False)["type"] == "numeric"
    assert profile_column(["1", "inf"])["type"] == "categorical"
    empty = profile_column(["", "NA", None], text=False)
    assert (empty["type"], empty["count"], empty["missing"]) == ("categorical", 0, 3)


# -- the statistics against scipy ------------------------------------------------------------


def normal(n: int, shift: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(shift, 1) for _ in range(n)]


def quantiles(values: list[float]) -> list[float]:
    return profile_column([str(v) for v in values])["quantiles"]


@pytest.mark.parametrize("n", [300, 1000, 5000])
def test_ks_and_wasserstein_agree_with_scipy(n: int) -> None:
    base = normal(n, 0, 1)
    for other, drifts in ((normal(n, 0.4, 2), True), (normal(n, 0, 4), False)):
        statistic = stats.ks_statistic(quantiles(base), quantiles(other))
        expected = scipy_stats.ks_2samp(base, other, method="asymp")
        assert statistic == pytest.approx(expected.statistic, abs=0.02)
        p = stats.ks_p_value(statistic, n, n)
        assert (p < 0.05) == (expected.pvalue < 0.05) == drifts
        distance = stats.wasserstein(quantiles(base), quantiles(other))
        assert distance == pytest.approx(scipy_stats.wasserstein_distance(base, other), rel=0.1, abs=0.01)
        if n > 1000:  # where the distance decides (below, the KS test does)
            assert (distance / np.std(base) >= 0.1) == drifts


@settings(max_examples=50, deadline=None)
@given(z=st.floats(0, 3), x=st.floats(0, 200), freedom=st.integers(1, 60))
def test_the_distributions_agree_with_scipy(z: float, x: float, freedom: int) -> None:
    assert stats.kolmogorov_sf(z) == pytest.approx(scipy_stats.kstwobign.sf(z), abs=1e-9)
    assert stats.chi2_sf(x, freedom) == pytest.approx(scipy_stats.chi2.sf(x, freedom), rel=1e-7, abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(
    counts=st.lists(st.tuples(st.integers(1, 500), st.integers(0, 500)), min_size=2, max_size=8),
)
def test_chi_square_and_jensen_shannon_agree_with_scipy(counts: list[tuple[int, int]]) -> None:
    expected, observed = [float(a) for a, _ in counts], [float(b) for _, b in counts]
    if not sum(observed):
        return
    scaled = [e * sum(observed) / sum(expected) for e in expected]
    statistic, p = stats.chi_square(observed, scaled)
    theirs = scipy_stats.chisquare(observed, scaled)
    assert statistic == pytest.approx(theirs.statistic, rel=1e-9) and p == pytest.approx(theirs.pvalue, abs=1e-9)
    assert stats.jensen_shannon(expected, observed) == pytest.approx(jensenshannon(expected, observed), abs=1e-9)


# -- comparing profiles ----------------------------------------------------------------------


def profile_of(path: Path) -> dict[str, Any]:
    return profile_file(path, path.name)


@pytest.mark.parametrize("n", [800, 4000])  # the statistical tests, then the distances
def test_a_shifted_dataset_drifts_and_a_resample_does_not(tmp_path: Path, n: int) -> None:
    reference = profile_of(write_csv(tmp_path / "ref.csv", n, seed=1))
    resample = profile_of(write_csv(tmp_path / "same.csv", n, seed=2))
    shifted = profile_of(write_csv(tmp_path / "new.csv", n, shift=0.6, seed=3, shares=(2, 3, 5)))
    same = compare(reference, resample, ("ref", "same", "t"), ignore=["id"])
    tests = {c.column: c.test for c in same.columns}
    assert tests == ({"x": "ks", "c": "chi2", "flag": "chi2"} if n <= 1000 else
                     {"x": "wasserstein", "c": "jensenshannon", "flag": "jensenshannon"})  # fmt: skip
    assert not same.dataset_drift and same.drifted == [] and same.ignored == ("id",)
    moved = compare(reference, shifted, ("ref", "new", "t"), ignore=["id"])
    assert [c.column for c in moved.drifted] == ["x", "c"] and moved.share == pytest.approx(2 / 3)
    assert moved.dataset_drift
    assert moved.to_dict()["dataset_drift"] and moved.to_dict()["drifted_columns"] == 2


def test_changed_types_and_columns_that_only_one_side_has(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x,y\n1,1\n2,2\n3,3\n")
    (tmp_path / "b.csv").write_text("x,z\n1,1\nlow,2\n3,3\n")
    report = compare(profile_of(tmp_path / "a.csv"), profile_of(tmp_path / "b.csv"), ("a", "b", "t"))
    found = {c.column: (c.type, c.test, c.drifted, c.note) for c in report.columns}
    assert found == {
        "x": ("changed", "type", True, "numeric in the reference, categorical now"),
        "y": ("numeric", "none", False, "only in the reference"),
        "z": ("numeric", "none", False, "only in the current data"),
    }
    assert report.share == 1.0 and report.dataset_drift


def test_a_plot_needs_a_known_suffix_and_matplotlib_for_png(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figure = Figure("t", [Bars("x", ["a", "b"], [("ref", [0.5, 0.5]), ("new", [0.2, 0.8])])])
    assert save(figure, tmp_path / "f.svg").read_text().startswith("<svg")
    with pytest.raises(UsageError, match=r"\.svg or \.png"):
        save(figure, tmp_path / "f.jpg")
    # Column and category names are user strings: a `$` is text, not matplotlib's math.
    hostile = Figure("$t", [Bars("a$^$b", ["$1", "x$"], [("r$", [1, 2])]), Lines("m$", ["v"], [1.0], {0: "p$"})])
    assert save(hostile, tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "h.png").unlink()
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(UsageError, match="writing a PNG needs matplotlib") as raised:
        save(figure, tmp_path / "f.png")
    assert "pip install 'modelspec[plot]'" in (raised.value.hint or "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.svg"]  # nothing half-written
