"""Generate the synthetic card-transaction dataset used by the fraud example.

The output (data/transactions.csv) is committed; this script documents how it was made
and regenerates it byte for byte:

    python examples/fraud/make_data.py

Each row is one transaction. The fraud label is drawn from a logistic model of the
features with a few deliberate non-linearities (night-time hours, tiny "card-testing"
amounts, purchases far from home, large card-not-present online purchases) so that tree
models have something to find beyond what a linear model can. day_of_week is pure noise.
"""

import argparse
import csv
from pathlib import Path

import numpy as np

# Merchant category -> (share of transactions, fraud log-odds offset).
CATEGORIES = {
    "electronics": (0.06, 1.0),
    "entertainment": (0.08, 0.2),
    "gas": (0.12, -0.3),
    "grocery": (0.25, -0.8),
    "online_retail": (0.16, 0.6),
    "pharmacy": (0.07, -0.6),
    "restaurant": (0.18, -0.4),
    "travel": (0.08, 0.8),
}
# Legitimate activity peaks in the daytime and evening; relative weight per hour 0..23.
HOUR_WEIGHTS = np.array(
    [1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 8, 9, 10, 9, 8, 8, 8, 9, 10, 9, 7, 5, 3, 2], dtype=float
)
COLUMNS = [
    "transaction_id",
    "day_of_week",
    "hour",
    "amount",
    "merchant_category",
    "card_present",
    "distance_km",
    "customer_age",
    "account_age_days",
    "txn_count_24h",
    "is_fraud",
]


def generate(n_rows, seed):
    """Return a dict of column name -> numpy array with n_rows synthetic transactions."""
    rng = np.random.default_rng(seed)
    names = list(CATEGORIES)
    shares = np.array([CATEGORIES[c][0] for c in names])
    cat_idx = rng.choice(len(names), size=n_rows, p=shares / shares.sum())
    hour = rng.choice(24, size=n_rows, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    day = rng.integers(0, 7, size=n_rows)
    amount = np.round(np.exp(rng.normal(3.5, 1.1, size=n_rows)), 2).clip(0.5, 20000.0)
    online = np.array(names)[cat_idx] == "online_retail"
    card_present = (rng.random(n_rows) < np.where(online, 0.02, 0.85)).astype(int)
    distance = np.round(rng.lognormal(1.8, 1.2, size=n_rows), 3)
    age = rng.integers(18, 90, size=n_rows)
    account_age = rng.integers(1, 3650, size=n_rows)
    txn_count = rng.poisson(2.5, size=n_rows)

    # Fraud log-odds: mostly smooth effects, plus the non-linear ones described above.
    logit = (
        -4.5
        + np.array([CATEGORIES[c][1] for c in names])[cat_idx]
        + 0.3 * (np.log(amount) - 3.5)
        + 1.6 * (hour <= 4)
        + 1.5 * (amount < 5.0)
        + 0.2 * np.log1p(distance)
        + 1.0 * (distance > 60.0)
        - 0.9 * card_present
        + 1.2 * ((card_present == 0) & online & (amount > 200))
        + 0.25 * txn_count
        - 0.25 * (np.log1p(account_age) - 7.0)
        + 0.6 * (age >= 75)
    )
    is_fraud = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-logit))).astype(int)

    return {
        "transaction_id": np.arange(1, n_rows + 1),
        "day_of_week": day,
        "hour": hour,
        "amount": amount,
        "merchant_category": np.array(names)[cat_idx],
        "card_present": card_present,
        "distance_km": distance,
        "customer_age": age,
        "account_age_days": account_age,
        "txn_count_24h": txn_count,
        "is_fraud": is_fraud,
    }


def main():
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=75_000)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--out", type=Path, default=here / "data" / "transactions.csv")
    args = parser.parse_args()

    data = generate(args.rows, args.seed)
    # Fixed float formatting and "\n" line endings keep the file byte-identical across runs.
    fmt = {"amount": "{:.2f}", "distance_km": "{:.3f}"}
    with open(args.out, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        for i in range(args.rows):
            writer.writerow([fmt.get(c, "{}").format(data[c][i]) for c in COLUMNS])
    print(f"wrote {args.rows} rows, fraud rate {data['is_fraud'].mean():.4f} -> {args.out}")


if __name__ == "__main__":
    main()
