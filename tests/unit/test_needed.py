"""The objects a version and a last build need: the one list gc keeps and verify checks."""

from __future__ import annotations

import json
from pathlib import Path

from modelspec.build.needed import build_entries, labelled_objects, needed_objects, version_entries
from modelspec.digest import canonical_json
from modelspec.registry.versions import ModelVersion
from modelspec.store.objects import LocalStore


def _tree(store: LocalStore, tmp: Path, name: str) -> tuple[dict[str, object], set[str]]:
    """A stored directory of two files: its entry and every object it needs."""
    folder = tmp / name
    folder.mkdir()
    (folder / "a.txt").write_text(f"{name} a\n")
    (folder / "b.txt").write_text(f"{name} b\n")
    entry = store.put_path(folder)
    return entry.to_dict(), set(store.tree_objects(entry))


def _version(store: LocalStore, tmp: Path) -> tuple[ModelVersion, set[str]]:
    model, model_objects = _tree(store, tmp, "model")
    (tmp / "train.py").write_text("print('train')\n")
    code = store.put_path(tmp / "train.py").to_dict()
    log = store.put_bytes(b"the log\n")
    env_file = store.put_bytes(b"uv lock\n")
    data = store.put_bytes(b"raw data\n")
    lock = store.put_bytes(canonical_json({"version": 1}))
    record = {
        "data": {"raw": {"path": "data/raw.csv", "digest": data, "type": "file", "size": 9}},
        "stages": {"train": {"code": code, "log": log, "outputs": {"model": model}}},
        "environment": {"kind": "uv", "digest": "e" * 64, "file_digest": env_file},
    }
    version = ModelVersion(
        id=1, name="m", version="1", content_id="c", lock=lock, commit="", environment="e" * 64,
        hermetic=True, author="", host="", tool_version="", created=0.0, status="active",
        status_time=None, status_reason=None, record_text=json.dumps(record),
    )  # fmt: skip
    return version, model_objects | {code["digest"], log, env_file, data, lock}


def test_a_version_needs_its_record_objects_and_everything_below_its_trees(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    version, objects = _version(store, tmp_path)
    what = needed_objects(store, [version], [])
    assert set(what) == objects
    model = version.record["stages"]["train"]["outputs"]["model"]
    below = set(store.tree_objects(store.put_path(tmp_path / "model"))) - {model["digest"]}
    assert below and all(what[d] == "the output train.model of m@1" for d in below)
    assert what[version.lock] == "the lock of m@1"
    assert what[version.record["data"]["raw"]["digest"]] == "the data snapshot 'raw' of m@1"


def test_a_last_build_needs_outputs_logs_lock_artifacts_and_environment_file(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    model, model_objects = _tree(store, tmp_path, "model")
    log = store.put_bytes(b"the log\n")
    env_file = store.put_bytes(b"uv lock\n")
    lock = store.put_bytes(canonical_json({"environment": {"digest": "e" * 64, "file_digest": env_file}}))
    record = {
        "name": "m",
        "lock": lock,
        "artifacts": {"train.model": model},
        "nodes": {"m:train": {"log": log, "outputs": {"model": model}}},
    }
    what = needed_objects(store, [], [record])
    assert set(what) == model_objects | {log, env_file, lock}
    assert what[model["digest"]] == "the output model of m:train (last build)"
    assert what[log] == "the log of m:train (last build)"
    assert what[env_file] == "the environment's lock file of m (last build)"


def test_a_last_build_whose_lock_is_gone_still_names_the_lock(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    record = {"name": "m", "lock": "f" * 64, "artifacts": {}, "nodes": {}}
    assert [label for label, _entry in build_entries(store, record)] == ["the lock of m (last build)"]


def test_a_missing_tree_is_needed_itself(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    version, _objects = _version(store, tmp_path)
    model = version.record["stages"]["train"]["outputs"]["model"]
    store.delete(model["digest"])
    what = labelled_objects(store, version_entries(version))
    assert what[model["digest"]] == "the output train.model"
