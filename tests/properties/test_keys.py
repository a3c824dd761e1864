"""Properties of canonical JSON and action keys (DESIGN.md §4.2).

An action key must change if and only if something it is defined over changes: the
interpolated argv, the stage's config subtree, the code digest, the environment digest,
the platform, the sandbox actually used, an input (basename or digest) or the declared outputs.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelspec.build.keys import InputDigest, action_key, key_document
from modelspec.digest import canonical_json
from modelspec.spec.lockdata import StageLock

KEYS = settings(deadline=None, max_examples=80)  # each example builds a whole stage

identifiers = st.text("abcdefgh_", min_size=1, max_size=6)
file_names = st.text("abcxyz019_.-", min_size=1, max_size=8).filter(lambda n: n not in (".", ".."))
relative_paths = st.lists(file_names, min_size=1, max_size=3).map("/".join)
digests = st.binary(min_size=32, max_size=32).map(lambda b: "blake3:" + b.hex())
literal_tokens = st.text("abc -=/.é'\"", min_size=1, max_size=8)
json_scalars = st.none() | st.booleans() | st.integers() | st.text("abé\"\\ ", max_size=5) | (
    st.floats(allow_nan=False, allow_infinity=False)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text("abcd", max_size=3), inner,
                                                                max_size=3),
    max_leaves=8,
)
config_trees = st.dictionaries(identifiers, json_values, max_size=4)
platforms = st.fixed_dictionaries({
    "os": st.sampled_from(["linux", "darwin", "win32"]),
    "arch": st.sampled_from(["x86_64", "aarch64", "arm64"]),
    "python": st.sampled_from(["3.10", "3.11", "3.12"]),
})
ISOLATION = ["bwrap", "none"]


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    """A stage lock entry plus everything else `key_document` takes."""
    inputs = draw(st.dictionaries(identifiers, st.builds(InputDigest, file_names, digests),
                                  max_size=4))
    outputs = draw(st.dictionaries(identifiers, relative_paths, min_size=1, max_size=3))
    placeholders = (
        [f"${{inputs.{name}}}" for name in inputs]
        + [f"--out=${{outputs.{name}}}" for name in outputs]
        + ["${config}"]
    )
    literals = draw(st.lists(literal_tokens, min_size=1, max_size=4))
    argv = draw(st.permutations(literals + draw(st.lists(st.sampled_from(placeholders),
                                                          max_size=4))))
    stage = {
        "argv": argv,
        "shell": False,
        "code": {"paths": draw(st.lists(relative_paths, max_size=2)), "digest": draw(digests)},
        "params": draw(config_trees),
        "inputs": {name: {"data": name} for name in inputs},
        "outputs": outputs,
        "metrics": None,
    }
    return {
        "stage": stage,
        "inputs": inputs,
        "environment": draw(st.none() | digests),
        "platform": draw(platforms),
        "isolation": draw(st.sampled_from(ISOLATION)),
    }


def key_of(case: dict[str, Any]) -> str:
    return action_key(key_document(StageLock.from_dict(case["stage"]), case["inputs"], case["environment"],
                                   case["platform"], case["isolation"]))


def reordered(value: Any) -> Any:
    """The same value with every dict's insertion order reversed."""
    if isinstance(value, dict):
        return {k: reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(v) for v in value]
    return value


@st.composite
def shuffled(draw: st.DrawFn, value: Any) -> Any:
    if isinstance(value, dict):
        keys = draw(st.permutations(list(value)))
        return {k: draw(shuffled(value[k])) for k in keys}
    if isinstance(value, list):
        return [draw(shuffled(v)) for v in value]
    return value


# -- canonical JSON --------------------------------------------------------------------------


@given(st.data(), json_values)
def test_canonical_json_is_independent_of_insertion_order(data: st.DataObject, value: Any) -> None:
    other = data.draw(shuffled(value))
    assert canonical_json(other) == canonical_json(value)
    assert canonical_json(reordered(value)) == canonical_json(value)


@given(json_values)
def test_canonical_json_round_trips_and_is_compact(value: Any) -> None:
    text = canonical_json(value)
    assert json.loads(text) == value
    assert canonical_json(json.loads(text)) == text
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False).encode()


def test_canonical_json_refuses_what_json_refuses() -> None:
    for value in (float("nan"), {"a": [float("inf")]}):
        with pytest.raises(ValueError):
            canonical_json(value)
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        canonical_json({"a": {1, 2}})
    assert canonical_json("é\n") == json.dumps("é\n", ensure_ascii=False).encode()


# -- action keys: only if ----------------------------------------------------------------------


@KEYS
@given(cases())
def test_key_ignores_dict_order_and_copies(case: dict[str, Any]) -> None:
    key = key_of(case)
    assert key_of(copy.deepcopy(case)) == key
    assert key_of(reordered(case)) == key
    assert key.startswith("blake3:")


@KEYS
@given(cases(), st.lists(relative_paths, max_size=2), st.sampled_from([None, "metrics"]))
def test_key_ignores_fields_it_is_not_defined_over(case: dict[str, Any], paths: list[str],
                                                   metrics: str | None) -> None:
    """Code paths are covered by the code digest; the metrics name does not affect a run."""
    key = key_of(case)
    stage = case["stage"]
    stage["code"]["paths"] = paths
    stage["metrics"] = metrics
    stage["inputs"] = {}
    assert key_of(case) == key


@KEYS
@given(cases())
def test_key_holds_no_host_path(case: dict[str, Any]) -> None:
    document = key_document(StageLock.from_dict(case["stage"]), case["inputs"], case["environment"],
                            case["platform"], case["isolation"])
    interpolated = [t for t in document["argv"] if "/ms/" in t]
    assert all("/ms/in/" in t or "/ms/out/" in t or t.endswith("/ms/config.json")
               for t in interpolated)
    assert not any("${" in t for t in document["argv"] if t not in case["stage"]["argv"])


# -- action keys: if -------------------------------------------------------------------------

FIELDS = ["argv", "params", "code", "environment", "platform", "isolation", "input", "outputs"]


def mutate(data: st.DataObject, case: dict[str, Any], field: str) -> None:
    """Change exactly one keyed field to a different value, in place."""
    stage = case["stage"]
    if field == "argv":
        argv = stage["argv"]
        literal = [i for i, t in enumerate(argv) if "${" not in t]
        if literal and data.draw(st.booleans()):
            i = data.draw(st.sampled_from(literal))
            argv[i] = data.draw(literal_tokens.filter(lambda t: t != argv[i]))
        else:
            argv.insert(data.draw(st.integers(0, len(argv))), data.draw(literal_tokens))
    elif field == "params":
        old = stage["params"]
        stage["params"] = data.draw(config_trees.filter(lambda p: canonical_json(p)
                                                        != canonical_json(old)))
    elif field == "code":
        old = stage["code"]["digest"]
        stage["code"]["digest"] = data.draw(digests.filter(lambda d: d != old))
    elif field == "environment":
        old = case["environment"]
        case["environment"] = data.draw((st.none() | digests).filter(lambda d: d != old))
    elif field == "platform":
        part = data.draw(st.sampled_from(["os", "arch", "python"]))
        old = case["platform"][part]
        case["platform"][part] = data.draw(st.text(min_size=1, max_size=8).filter(
            lambda v: v != old))
    elif field == "isolation":
        case["isolation"] = data.draw(st.sampled_from([h for h in ISOLATION
                                                       if h != case["isolation"]]))
    elif field == "input":
        inputs = case["inputs"]
        if not inputs:
            name = data.draw(identifiers)
            inputs[name] = InputDigest("new.csv", "blake3:" + "0" * 64)
            return
        name = data.draw(st.sampled_from(sorted(inputs)))
        old = inputs[name]
        if data.draw(st.booleans()):
            inputs[name] = InputDigest(old.basename, data.draw(digests.filter(
                lambda d: d != old.digest)))
        else:
            inputs[name] = InputDigest(data.draw(file_names.filter(lambda b: b != old.basename)),
                                       old.digest)
    elif field == "outputs":
        outputs = stage["outputs"]
        name = data.draw(st.sampled_from(sorted(outputs)))
        old = outputs[name]
        if data.draw(st.booleans()):
            outputs[name] = data.draw(relative_paths.filter(lambda p: p != old))
        else:
            outputs[data.draw(identifiers.filter(lambda n: n not in outputs))] = "extra.bin"
    else:  # pragma: no cover
        raise AssertionError(field)


@KEYS
@given(st.data(), cases(), st.sampled_from(FIELDS))
def test_key_changes_when_any_keyed_field_changes(data: st.DataObject, case: dict[str, Any],
                                                  field: str) -> None:
    before = key_of(case)
    mutate(data, case, field)
    assert key_of(case) != before


@KEYS
@given(st.data(), cases(), st.sampled_from(FIELDS))
def test_key_changes_back_when_the_field_is_restored(data: st.DataObject, case: dict[str, Any],
                                                     field: str) -> None:
    """A key is a function of its fields: no hidden state (time, counters, host)."""
    original = copy.deepcopy(case)
    before = key_of(case)
    mutate(data, case, field)
    assert key_of(original) == before
    assert key_of(copy.deepcopy(original)) == before
