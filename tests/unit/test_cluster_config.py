"""The cluster executor's pieces that need no cluster: its URL, the version check at
connect, a stage's resources as Dask's, and the task a worker is sent (plain data)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from modelspec.build.executor import DEFAULT_WAIT, parse_executor, version_mismatches
from modelspec.build.stagetask import StageTask, TaskReply, dask_resources
from modelspec.errors import UsageError
from modelspec.sandbox.limits import Limits
from modelspec.spec.lockdata import StageLock
from modelspec.store.blobs import RemoteConfig
from modelspec.store.protocol import Entry


def test_an_executor_url_is_a_dask_scheduler_or_local() -> None:
    assert parse_executor(None) is None and parse_executor("local") is None
    url = parse_executor("dask://10.0.0.5:8786")
    assert url is not None and url.address == "tcp://10.0.0.5:8786" and url.wait == DEFAULT_WAIT
    waiting = parse_executor("dask://h:1?wait=5s")
    assert waiting is not None and waiting.wait == 5
    for bad in ("spark://h:1", "dask://h", "dask://h:1/x", "dask://h:1?retries=2"):
        with pytest.raises(UsageError):
            parse_executor(bad)


def versions(**changes: Any) -> dict[str, Any]:
    info = {
        "host": {"OS": "Linux", "machine": "x86_64"},
        "packages": {"python": "3.11.7.final.0", "dask": "2026.8.0", "distributed": "2026.8.0", "modelspec": "0.1.0"},
    }
    worker = copy.deepcopy(info)
    for name, value in changes.items():
        (worker["host"] if name in ("OS", "machine") else worker["packages"])[name] = value
    return {"client": info, "scheduler": copy.deepcopy(info), "workers": {"tcp://w:1": worker}}


def test_a_worker_that_differs_from_the_client_is_named_with_what_differs() -> None:
    assert version_mismatches(versions()) == []
    assert version_mismatches(versions(python="3.11.9.final.0")) == []  # the same minor
    assert version_mismatches(versions(modelspec=None)) == [
        "worker tcp://w:1 has modelspec missing (here: 0.1.0)"
    ]
    assert version_mismatches(versions(machine="aarch64")) == ["worker tcp://w:1 is aarch64 (here: x86_64)"]
    assert version_mismatches(versions(python="3.12.1.final.0", distributed="2024.1.0")) == [
        "worker tcp://w:1 runs Python 3.12.1.final.0 (here: 3.11.7.final.0)",
        "worker tcp://w:1 has distributed 2024.1.0 (here: 2026.8.0)",
    ]


def test_a_stage_s_resources_are_dask_worker_resources() -> None:
    assert dask_resources(None) == {}
    assert dask_resources({"cpus": 2, "memory": "8GiB", "gpus": 1}) == {"CPU": 2.0, "MEMORY": 8 * 2**30, "GPU": 1.0}


def test_a_stage_task_is_plain_data_that_round_trips() -> None:
    stage = StageLock(("sh", "-c", "true"), False, ("src",), "blake3:c", {"a": 1}, {}, {"out": "o.txt"})
    task = StageTask(
        key="blake3:k",
        node="pipe:a",
        stage=stage,
        code=Entry("tree", "blake3:t", 10),
        inputs={"raw": ("raw.txt", Entry("file", "blake3:r", 3))},
        objects=("blake3:t", "blake3:r"),
        environment=None,
        source_date_epoch=5,
        limits=Limits(timeout=60.0),
        isolation="bwrap",
        remote=RemoteConfig("file:///shared"),
        cancel="modelspec-cancel-x",
        resources={"GPU": 1.0},
    )
    document = json.loads(json.dumps(task.to_dict()))  # nothing but JSON: no pickled workspace objects
    assert StageTask.from_dict(document) == task
    reply = TaskReply("tcp://w:1", reason="boom", objects=("blake3:o",))
    assert TaskReply.from_dict(json.loads(json.dumps(reply.to_dict()))) == reply


def test_resources_round_trip_through_the_lock_and_are_left_out_when_absent() -> None:
    stage = StageLock(("true",), False, (), "blake3:c", {}, {}, {"o": "o"}, resources={"gpus": 1})
    assert StageLock.from_dict(stage.to_dict()) == stage
    plain = StageLock(("true",), False, (), "blake3:c", {}, {}, {"o": "o"})
    assert "resources" not in plain.to_dict()  # the locks of specs without them keep their bytes
