"""Fit the classifier selected by `model.name` and pickle it.

    python examples/fraud/src/train.py --features f.npz --config cfg.json --model model.pkl

The config JSON holds the `model` section (name plus hyperparameters) and the `train`
section (seed, class_weight). Supported models: logreg, gbt.
"""

# ruff: noqa: E402  (the imports must come after setting sys.dont_write_bytecode)
import sys

sys.dont_write_bytecode = True  # the sandboxed source tree is read-only: write no .pyc files

import common  # first import: pins native thread pools before numpy is loaded

# isort: split
import argparse
import pickle

from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def build_model(model_cfg, train_cfg):
    """Return an unfitted estimator for the model config."""
    name = model_cfg["name"]
    seed, class_weight = train_cfg["seed"], train_cfg["class_weight"]
    if name == "logreg":
        # Features have very different scales, so standardise before the linear model.
        return make_pipeline(
            StandardScaler(),
            LogisticRegression(
                C=model_cfg["C"],
                max_iter=model_cfg["max_iter"],
                class_weight=class_weight,
                random_state=seed,
            ),
        )
    if name == "gbt":
        # Early stopping would carve a random validation split out of the training data;
        # keep the number of boosting rounds fixed by the config instead.
        return HistGradientBoostingClassifier(
            learning_rate=model_cfg["learning_rate"],
            max_iter=model_cfg["max_iter"],
            max_depth=model_cfg["max_depth"],
            class_weight=class_weight,
            early_stopping=False,
            random_state=seed,
        )
    raise SystemExit(f"unknown model.name {name!r} (expected 'logreg' or 'gbt')")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", required=True, help=".npz written by featurize.py")
    parser.add_argument("--config", required=True, help="JSON with `model` and `train` sections")
    parser.add_argument("--model", required=True, help="output pickle path")
    args = parser.parse_args()
    config = common.load_config(args.config, "model", "train")

    X_train, y_train, _, _ = common.load_features(args.features)
    model = build_model(config["model"], config["train"]).fit(X_train, y_train)

    with open(args.model, "wb") as f:
        pickle.dump(model, f, protocol=5)
    print(f"train: fitted {config['model']['name']} on {len(y_train)} rows")


if __name__ == "__main__":
    main()
