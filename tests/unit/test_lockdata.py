"""The typed data entries of a lock read and write the exact JSON the lock holds."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from modelspec.digest import canonical_json
from modelspec.spec.lockdata import (
    FromData,
    FromStage,
    PathData,
    RegisteredData,
    SpecOutputData,
    lock_data,
    stage_input,
)
from modelspec.spec.model import LOCK_FORMAT, Lock

DIGEST = "blake3:" + "ab" * 32
ENTRY = {"type": "file", "digest": DIGEST, "size": 12}
LOCK: dict[str, Any] = {
    "lock_format": LOCK_FORMAT,
    "name": "consumer",
    "version": "1.0",
    "spec": "specs/consumer.yaml",
    "code": {"ref": "HEAD", "commit": "c" * 40, "time": 1.0, "dirty": False},
    "data": {
        "raw": {"path": "data/raw.csv", **ENTRY},
        "checked": {"path": "data/big"},  # a lock that only checked the path
        "baseline": {
            "registered": "baseline@2.0.0",
            "content_id": "d" * 64,
            "output": "train.model",
            "basename": "baseline.bin",
            **ENTRY,
        },
        "prod": {
            "registered": "baseline@2.0.0",
            "content_id": "d" * 64,
            "output": "train.model",
            "basename": "baseline.bin",
            "alias": "production",
            **ENTRY,
        },
        "features": {"spec": "prep", "output": "features"},
    },
    "config": {},
    "environment": None,
    "hermetic": "required",
    "stages": {
        "compare": {
            "argv": ["python", "compare.py", "${inputs.raw}", "${inputs.baseline}"],
            "shell": False,
            "code": {"paths": ["src/compare.py"], "digest": DIGEST},
            "params": {"compare": {"tolerance": 0.01}},
            "inputs": {"raw": {"data": "raw"}, "baseline": {"data": "baseline"}},
            "outputs": {"report": "report.json"},
            "metrics": "report",
            "limits": {"timeout": 60},
        },
        "summary": {
            "argv": ["cat ${inputs.compare.report} > ${outputs.text}"],
            "shell": True,
            "code": {"paths": [], "digest": DIGEST},
            "params": {},
            "inputs": {"compare.report": {"stage": "compare", "output": "report"}},
            "outputs": {"text": "summary.txt"},
            "metrics": None,
        },
    },
    "artifacts": ["compare.report"],
}


def test_each_kind_is_told_apart_once() -> None:
    kinds = {name: type(lock_data(d)) for name, d in LOCK["data"].items()}
    assert kinds == {
        "raw": PathData,
        "checked": PathData,
        "baseline": RegisteredData,
        "prod": RegisteredData,
        "features": SpecOutputData,
    }
    assert lock_data(LOCK["data"]["raw"]).digest == DIGEST
    assert lock_data(LOCK["data"]["prod"]) == RegisteredData(
        "baseline@2.0.0", "d" * 64, "train.model", "baseline.bin", ENTRY, alias="production"
    )


def test_a_parsed_lock_writes_the_same_json_and_digest() -> None:
    lock = Lock.from_dict(json.loads(json.dumps(LOCK)))
    assert lock.to_dict() == LOCK
    assert canonical_json(lock.to_dict()) == canonical_json(LOCK)
    assert Lock.from_dict(lock.to_dict()) == lock
    summary = lock.stages["summary"]
    assert summary.inputs == {"compare.report": FromStage("compare", "report")}
    assert summary.limits is None and lock.stages["compare"].metrics == "report"


_text = st.text(min_size=1, max_size=12)
_entry = st.fixed_dictionaries({"type": st.sampled_from(["file", "tree"]), "digest": _text, "size": st.integers(0)})
_values = st.one_of(
    st.builds(PathData, _text, st.one_of(st.just({}), _entry)),
    st.builds(RegisteredData, _text, _text, _text, _text, _entry, st.one_of(st.none(), _text)),
    st.builds(SpecOutputData, _text, _text),
)


@given(_values)
def test_from_dict_of_to_dict_is_the_value(value: PathData | RegisteredData | SpecOutputData) -> None:
    document = value.to_dict()
    assert lock_data(document) == value
    assert lock_data(json.loads(json.dumps(document))).to_dict() == document


def test_a_stage_input_is_read_from_a_stage_or_from_data() -> None:
    assert stage_input({"stage": "prep", "output": "features"}) == FromStage("prep", "features")
    assert stage_input({"data": "raw"}) == FromData("raw")
    for value in (FromStage("prep", "features"), FromData("raw")):
        assert stage_input(value.to_dict()) == value
