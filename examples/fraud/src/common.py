"""Helpers shared by the fraud pipeline scripts.

Import this module before numpy/scikit-learn: it pins the native thread pools to a single
thread so that floating-point reductions happen in a fixed order and every stage produces
byte-identical outputs from identical inputs.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import json

import numpy as np


def load_config(path, *sections):
    """Read the stage's JSON config and return it, checking the given sections are present."""
    with open(path) as f:
        config = json.load(f)
    missing = [s for s in sections if s not in config]
    if missing:
        raise SystemExit(f"{path}: missing config section(s): {', '.join(missing)}")
    return config


def load_features(path):
    """Return (X_train, y_train, X_test, y_test) from a featurize.py .npz output."""
    with np.load(path, allow_pickle=False) as npz:
        return npz["X_train"], npz["y_train"], npz["X_test"], npz["y_test"]
