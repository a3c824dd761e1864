"""A compact profile of a table (a few KB whatever its size): per column its type, count,
missing values, mean and standard deviation, 101 quantiles, a histogram, and the counts of
its most frequent categories.

A file up to `FULL_BYTES` is read whole, in one pass. A larger one is profiled from
`BLOCKS` blocks read at evenly spaced offsets: the profile says `"sampled"` with the rows
it read, its rows are estimated from the file's size and the sample's bytes per row, and
its counts are scaled up from the sample. So profiling a 1 GiB CSV reads and parses 1 MiB
of it, in pure Python (parsing costs about 0.25 s a MiB).
"""

from __future__ import annotations

import bisect
import collections
import csv
import io
import itertools
import math
import operator
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

PROFILE_FORMAT = 1
FULL_BYTES = 4 << 20
BLOCKS, BLOCK_BYTES = 32, 32 << 10
QUANTILES = 101  # 0%, 1%, ..., 100%
BINS = 20
TOP = 50  # categories whose counts are kept; the rest are counted together as `other`
# What pandas reads as a missing value, so a profile agrees with what a stage sees.
MISSING = frozenset({"", "NA", "N/A", "n/a", "NaN", "nan", "-NaN", "-nan", "null", "NULL", "None", "#N/A", "<NA>"})
TABULAR = (".csv", ".parquet")


def is_tabular(path: str) -> bool:
    return path.lower().endswith(TABULAR)


def profile_file(path: Path, shown: str) -> dict[str, Any]:
    """The profile of a CSV or Parquet file; `shown` names it in the profile."""
    if path.name.lower().endswith(".parquet"):
        return profile_parquet(path, shown)
    size = path.stat().st_size
    if size <= FULL_BYTES:
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as text:  # a BOM is no header
            header, rows = _rows(text)
        return profile_rows(header, rows, shown, "csv")
    with open(path, "rb") as handle:
        return _sampled_csv(handle, size, shown)


def profile_rows(
    header: Sequence[str], rows: Sequence[Sequence[str]], shown: str, kind: str, total: int | None = None
) -> dict[str, Any]:
    """The profile of rows of text cells; `total` (the rows of the whole file) when `rows`
    are a sample of it."""
    cells_of = list(itertools.zip_longest(*rows, fillvalue="")) if rows else []  # columns, at C speed
    columns = []
    for index, name in enumerate(header):
        cells = cells_of[index] if index < len(cells_of) else ("",) * len(rows)
        columns.append({"name": name, **profile_column(cells, total)})
    profile: dict[str, Any] = {"format": PROFILE_FORMAT, "file": shown, "kind": kind, "rows": total or len(rows)}
    if total is not None:
        method = f"{BLOCKS} blocks of {BLOCK_BYTES >> 10} KiB; rows estimated from the size"
        profile["sampled"] = {"rows": len(rows), "method": method}
    profile["columns"] = columns
    return profile


def profile_column(cells: Sequence[Any], total: int | None = None, text: bool = True) -> dict[str, Any]:
    """One column: numeric when every present cell reads as a finite number, else categorical.
    `text` cells (CSV) take the fast path: set lookups and C-level maps, no per-cell Python;
    others (Parquet) may be None, numbers, booleans, dates."""
    if text:
        present = [c for c in cells if c not in MISSING]
    else:
        present = [c for c in cells if c is not None and (not isinstance(c, str) or c not in MISSING)]
    scale = (total / len(cells)) if total and cells else 1.0
    missing = round((len(cells) - len(present)) * scale)
    numbers = _numbers(present, text)
    if numbers:
        return {"type": "numeric", "count": round(len(numbers) * scale), "missing": missing, **numeric_summary(numbers)}
    counts = collections.Counter(present if text else map(str, present))
    top = counts.most_common(TOP)
    other = len(present) - sum(n for _, n in top)
    return {
        "type": "categorical",
        "count": round(len(present) * scale),
        "missing": missing,
        "distinct": len(counts),
        "top": [[value, round(n * scale)] for value, n in top],
        "other": round(other * scale),
    }


def numeric_summary(numbers: list[float]) -> dict[str, Any]:
    numbers.sort()
    n = len(numbers)
    mean = sum(numbers) / n
    # Population variance (numpy's default), summed around the mean, at C speed.
    variance = sum(map(pow, map(operator.sub, numbers, itertools.repeat(mean)), itertools.repeat(2))) / n
    low, high = numbers[0], numbers[-1]
    return {
        "mean": _round(mean),
        "std": _round(math.sqrt(variance)),
        "min": low,
        "max": high,
        "quantiles": [_round(_quantile(numbers, i / (QUANTILES - 1))) for i in range(QUANTILES)],
        "histogram": histogram(numbers, low, high),
    }


def histogram(ordered: Sequence[float], low: float, high: float, bins: int = BINS) -> dict[str, Any]:
    """Counts in `bins` equal bins between low and high (the last one closed), of sorted values."""
    width = (high - low) / bins if high > low else 1.0
    edges = [low + i * width for i in range(bins + 1)]
    cuts = [bisect.bisect_left(ordered, edge) for edge in edges[1:-1]]
    bounds = [0, *cuts, len(ordered)]
    return {"edges": [_round(e) for e in edges], "counts": [bounds[i + 1] - bounds[i] for i in range(bins)]}


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default method)."""
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def _numbers(cells: list[Any], text: bool) -> list[float] | None:
    """The cells as floats, or None when one is not a finite number (a bool is not one)."""
    try:
        if text:
            numbers = list(map(float, cells))
        elif any(isinstance(c, bool) for c in cells):
            return None
        else:
            numbers = [float(c) for c in cells]
    except (TypeError, ValueError):
        return None
    return numbers if all(map(math.isfinite, numbers)) else None


def _round(x: float) -> float:
    """Seven significant digits: the profile stays a few KB; drift needs no more."""
    return float(f"{x:.7g}")


def _rows(text: IO[str]) -> tuple[list[str], list[list[str]]]:
    reader = csv.reader(text)
    header = next(reader, [])
    return header, list(reader)


def _sampled_csv(handle: IO[bytes], size: int, shown: str) -> dict[str, Any]:
    """A large CSV profiled from blocks at even offsets (each block's first partial line
    dropped); its rows estimated from the size and the sample's bytes per row. Counting
    them would read the whole file again: about as long as snapshotting it."""
    header = next(csv.reader([handle.readline().decode("utf-8-sig", "replace")]), [])
    start = handle.tell()
    rows: list[list[str]] = []
    sampled_bytes = 0
    step = (size - start) / BLOCKS
    for i in range(BLOCKS):
        at = start + int(i * step)
        handle.seek(at)
        block = handle.read(BLOCK_BYTES)
        if i:  # the first block starts at the first row; the others mid-line
            block = block.partition(b"\n")[2]
        if at + BLOCK_BYTES < size:  # complete lines only
            block = block[: block.rfind(b"\n") + 1]
        sampled_bytes += len(block)
        rows.extend(r for r in csv.reader(io.StringIO(block.decode("utf-8", "replace"), newline="")) if r)
    estimate = round((size - start) * len(rows) / sampled_bytes) if sampled_bytes else 0
    return profile_rows(header, rows, shown, "csv", total=max(estimate, len(rows)))


def profile_parquet(path: Path, shown: str) -> dict[str, Any]:
    """A Parquet file, read through pyarrow (the `parquet` extra) a batch at a time."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        return {
            "format": PROFILE_FORMAT,
            "file": shown,
            "kind": "parquet",
            "unprofiled": "reading Parquet needs pyarrow: pip install 'modelspec[parquet]'",
        }
    table = pq.ParquetFile(path)
    names = table.schema_arrow.names
    total = table.metadata.num_rows
    keep = max(1, math.ceil(total / 200_000))  # at most ~200,000 rows of each column in memory
    values: dict[str, list[Any]] = {name: [] for name in names}
    seen = 0
    for batch in table.iter_batches(batch_size=65_536):
        for name, column in zip(names, batch.columns, strict=True):
            cells = column.to_pylist()
            values[name].extend(cells[(-seen) % keep :: keep] if keep > 1 else cells)
        seen += batch.num_rows
    sampled = len(next(iter(values.values()), [])) if names else 0
    columns = [{"name": n, **profile_column(values[n], total if keep > 1 else None, text=False)} for n in names]
    profile: dict[str, Any] = {"format": PROFILE_FORMAT, "file": shown, "kind": "parquet", "rows": total}
    if keep > 1:
        profile["sampled"] = {"rows": sampled, "method": f"every {keep}th row"}
    profile["columns"] = columns
    return profile
