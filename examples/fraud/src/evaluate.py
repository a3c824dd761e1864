r"""Score the trained model on the held-out split and write its metrics as JSON.

    python examples/fraud/src/evaluate.py --features f.npz --model model.pkl \
        --config cfg.json --metrics metrics.json

The config JSON holds the `evaluate` section (threshold). The output is a flat JSON object
of floats rounded to 6 decimals, keys sorted: accuracy, auc, f1, precision, recall.
"""

# ruff: noqa: E402  (the imports must come after setting sys.dont_write_bytecode)
import sys

sys.dont_write_bytecode = True  # the sandboxed source tree is read-only: write no .pyc files

import common  # first import: pins native thread pools before numpy is loaded

# isort: split
import argparse
import json
import pickle

from sklearn.metrics import (
    accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", required=True, help=".npz written by featurize.py")
    parser.add_argument("--model", required=True, help="pickle written by train.py")
    parser.add_argument("--config", required=True, help="JSON with the `evaluate` section")
    parser.add_argument("--metrics", required=True, help="output JSON path")
    args = parser.parse_args()
    threshold = common.load_config(args.config, "evaluate")["evaluate"]["threshold"]

    _, _, X_test, y_test = common.load_features(args.features)
    with open(args.model, "rb") as f:
        model = pickle.load(f)  # trusted: produced by train.py in the same pipeline

    proba = model.predict_proba(X_test)[:, 1]
    pred = (proba >= threshold).astype(int)
    metrics = {
        "accuracy": accuracy_score(y_test, pred),
        "auc": roc_auc_score(y_test, proba),
        "f1": f1_score(y_test, pred, zero_division=0),
        "precision": precision_score(y_test, pred, zero_division=0),
        "recall": recall_score(y_test, pred, zero_division=0),
    }
    text = json.dumps({k: round(float(v), 6) for k, v in metrics.items()}, sort_keys=True)
    with open(args.metrics, "w") as f:
        f.write(text + "\n")
    print(f"evaluate: {text}")


if __name__ == "__main__":
    main()
