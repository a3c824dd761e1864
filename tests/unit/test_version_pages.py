"""What the web view reads at scale, against what the CLI reads whole: pages of versions by
keyset (in version order and by a metric, both ways, filtered) put together are exactly
`list_versions`; the newest N of a metric series are the tail of the whole series, with
two models' versions interleaved in the tables; the best value of a metric."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from modelspec.registry.queries import Page
from modelspec.registry.registry import Registry, VersionDraft
from modelspec.registry.series import best_value, metric_series
from modelspec.spec.refs import parse_where


def draft(name: str, n: int, auc: float, spec_version: str = "1.0") -> VersionDraft:
    return VersionDraft(
        name=name, spec_version=spec_version, content_id="blake3:" + f"{n:064x}", lock="blake3:" + "1" * 64,
        commit="c" * 40, environment=None, hermetic=True, author="ana", host="h", tool_version="0.1.0",
        record={"params": {}, "data": {}, "stages": {}, "environment": None, "dirty": False}, artifacts={},
        metrics={"auc": auc, "f1": round(1 - auc, 6)} if n % 7 else {"f1": 0.5}, lineage=[],
    )  # fmt: skip


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """Two models registered in turn (their ids interleave), 1.1.x after 1.0.x, and a
    1.0.x patch registered last (its id is the highest, its version is not)."""
    found = Registry.at(Path(tmp_path_factory.mktemp("pages")) / "registry.db")
    rng = random.Random(7)
    for n in range(1, 120):
        found.register(draft("a", n, round(rng.random(), 4), "1.0" if n < 80 else "1.1"))
        if n % 3 == 0:
            found.register(draft("b", 1000 + n, round(rng.random(), 4)))
    found.register(draft("a", 5000, 0.25, "1.0.900"))
    return found


def every_page(registry: Registry, where: str, metric: str | None, descending: bool, size: int) -> list[str]:
    conditions = parse_where(where) if where else None
    seen, after = [], None
    while True:
        found, _before, more = registry.versions_page("a", conditions, None, Page(after=after, size=size), metric,
                                                      descending)  # fmt: skip
        seen += [v.version for v in found]
        if not more:
            return seen
        after = found[-1].version


@pytest.mark.parametrize("where", ["", "auc>0.5", "f1<=0.3, auc>0.2"])
@pytest.mark.parametrize("descending", [True, False])
def test_pages_put_together_are_the_whole_list(registry: Registry, where: str, descending: bool) -> None:
    whole = registry.list_versions("a", parse_where(where) if where else None)
    in_order = [v.version for v in whole]
    assert every_page(registry, where, None, descending, 7) == (in_order[::-1] if descending else in_order)
    assert registry.count_versions("a", parse_where(where) if where else None) == len(whole)
    auc = {v.version: registry.metrics_of([v.id])[v.id].get("auc") for v in whole}
    by_auc = every_page(registry, where, "auc", descending, 9)
    values = [auc[v] for v in by_auc]
    assert sorted(by_auc) == sorted(v for v in in_order if auc[v] is not None)  # those without auc left out
    assert values == sorted(values, reverse=descending)


def test_a_page_backwards_and_the_last_page(registry: Registry) -> None:
    whole = [v.version for v in registry.list_versions("a")][::-1]
    found, before, after = registry.versions_page("a", None, None, Page(before=whole[20], size=5))
    assert [v.version for v in found] == whole[15:20] and before and after
    found, before, after = registry.versions_page("a", None, None, Page(last=True, size=5))
    assert [v.version for v in found] == whole[-5:] and before and not after
    found, before, after = registry.versions_page("a", None, None, Page(size=5))
    assert [v.version for v in found] == whole[:5] and not before and after


def test_the_newest_of_a_series_are_the_tail_of_the_whole(registry: Registry) -> None:
    whole = registry.read(metric_series, "a")
    for last in (1, 10, 50, 500):
        assert registry.read(metric_series, "a", None, last) == whole[-last:]
        only_auc = registry.read(metric_series, "a", "auc", last)
        assert [v.metrics for v in only_auc] == [
            {k: x for k, x in v.metrics.items() if k == "auc"} for v in whole[-last:]
        ]
    assert registry.read(metric_series, "nobody", None, 10) == []


def test_the_best_value_of_a_metric(registry: Registry) -> None:
    whole = registry.read(metric_series, "a")
    values = [(v.metrics["auc"], v.version) for v in whole if "auc" in v.metrics]
    assert registry.read(best_value, "a", "auc", True)[1] == max(values)[0]
    assert registry.read(best_value, "a", "auc", False)[1] == min(values)[0]
    assert registry.read(best_value, "a", "nothing", True) is None


def test_pages_on_every_backend(registry_url: str) -> None:
    """Row-value comparisons (keyset) and the id range read the same on PostgreSQL."""
    with Registry(registry_url) as registry:
        rng = random.Random(3)
        for n in range(1, 30):
            registry.register(draft("a", n, round(rng.random(), 4), "1.0" if n < 20 else "1.1"))
            registry.register(draft("b", 1000 + n, 0.5))
        whole = [v.version for v in registry.list_versions("a")]
        assert every_page(registry, "", None, True, 4) == whole[::-1]
        assert every_page(registry, "auc>0.3", "auc", False, 4) == [
            v for v, _ in sorted(((s.version, s.metrics["auc"]) for s in registry.read(metric_series, "a")
                                  if s.metrics.get("auc", 0) > 0.3), key=lambda p: p[1])
        ]  # fmt: skip
        assert registry.read(metric_series, "a", None, 5) == registry.read(metric_series, "a")[-5:]
