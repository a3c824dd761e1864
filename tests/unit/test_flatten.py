"""Params are shown as dotted keys: `flatten` of the composed config subtree a stage uses."""

from __future__ import annotations

from modelspec.flat import flatten


def test_nested_keys_are_dotted() -> None:
    assert flatten({"train": {"lr": 0.1, "opt": {"name": "sgd"}}}) == {"train.lr": 0.1, "train.opt.name": "sgd"}


def test_no_params_is_nothing_not_an_empty_key() -> None:
    assert flatten({}) == {}


def test_an_empty_mapping_below_the_top_is_kept_as_a_value() -> None:
    assert flatten({"extra": {}, "n": 1}) == {"extra": {}, "n": 1}
