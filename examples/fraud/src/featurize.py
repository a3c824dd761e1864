"""Turn the raw transactions CSV into a numeric train/test split.

    python examples/fraud/src/featurize.py --data transactions.csv --config cfg.json --out f.npz

The config JSON holds the `features` section (seed, test_fraction, log_amount, hour_cyclic).
Writes one .npz with X_train, y_train, X_test, y_test.
"""

# ruff: noqa: E402  (the imports must come after setting sys.dont_write_bytecode)
import sys

sys.dont_write_bytecode = True  # the sandboxed source tree is read-only: write no .pyc files

import common  # first import: pins native thread pools before numpy is loaded

# isort: split
import argparse
import csv

import numpy as np

# Raw CSV columns parsed as numbers (merchant_category is one-hot encoded separately).
NUMERIC_COLUMNS = (
    "amount",
    "hour",
    "day_of_week",
    "card_present",
    "distance_km",
    "customer_age",
    "account_age_days",
    "txn_count_24h",
)


def read_csv(path):
    """Return the CSV as a dict of column name -> list of string values."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        columns = list(zip(*reader, strict=True))
    return {name: list(values) for name, values in zip(header, columns, strict=True)}


def build_features(cols, cfg):
    """Return the feature matrix (float64, fixed column order) for the options in `cfg`."""
    num = {name: np.array(cols[name], dtype=float) for name in NUMERIC_COLUMNS}
    amount = np.log1p(num["amount"]) if cfg["log_amount"] else num["amount"]
    if cfg["hour_cyclic"]:
        angle = 2 * np.pi * num["hour"] / 24
        hour = [np.sin(angle), np.cos(angle)]
    else:
        hour = [num["hour"]]
    # One-hot merchant category; sorted so the column order never depends on row order.
    category = np.array(cols["merchant_category"])
    one_hot = [(category == c).astype(float) for c in sorted(set(cols["merchant_category"]))]
    features = [
        amount,
        *hour,
        (num["day_of_week"] >= 5).astype(float),  # weekend flag
        num["card_present"],
        np.log1p(num["distance_km"]),
        num["customer_age"],
        np.log1p(num["account_age_days"]),
        num["txn_count_24h"],
        *one_hot,
    ]
    return np.column_stack(features)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="transactions CSV")
    parser.add_argument("--config", required=True, help="JSON with the `features` section")
    parser.add_argument("--out", required=True, help="output .npz path")
    args = parser.parse_args()
    cfg = common.load_config(args.config, "features")["features"]

    cols = read_csv(args.data)
    X = build_features(cols, cfg)
    y = np.array(cols["is_fraud"], dtype=np.int64)

    # Seeded shuffle, then the first test_fraction of rows become the test set.
    order = np.random.default_rng(cfg["seed"]).permutation(len(y))
    n_test = round(len(y) * cfg["test_fraction"])
    test, train = order[:n_test], order[n_test:]

    # Writing through a file handle stops numpy from appending ".npz" to the path.
    with open(args.out, "wb") as f:
        np.savez(f, X_train=X[train], y_train=y[train], X_test=X[test], y_test=y[test])
    print(f"featurize: {X.shape[1]} features, {len(train)} train / {len(test)} test rows")


if __name__ == "__main__":
    main()
