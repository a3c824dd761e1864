"""Data profiles and drift, in pure Python: a compact profile of each tabular input (CSV,
Parquet) taken when its snapshot is registered (`profile.py`), the statistics that compare
two profiles (`stats.py`), and the column-by-column comparison with Evidently's default
tests and thresholds (`compare.py`)."""
