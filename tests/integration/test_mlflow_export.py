"""`modelspec mlflow export` against a real MLflow registry (issue 19): a SQLite backend in
a temp dir, checked through MLflow's own client: the registered model version and its
aliases, the run's params, metrics and tags, and the artifacts downloaded from MLflow with
the same digests as modelspec's. Exporting twice duplicates nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

# mlflow-skinny (and alembic, for its SQLite backend) come with the test extra: imported
# here so that a missing one fails the run rather than skipping these tests.
import alembic  # noqa: F401
import mlflow  # noqa: F401
import pytest
from conftest import Repo
from test_provenance import cli, make_repo

from modelspec.attest.hashing import hash_file

# MLflow's SQLite store uses SQLAlchemy options SQLAlchemy deprecates: its warnings, not ours.
pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning")


@pytest.fixture
def exported(repo: Repo, tmp_path: Path) -> tuple[Repo, list[str], Any]:
    make_repo(repo)
    cli(repo, "keys", "generate", "--json")
    repo.commit("key")
    cli(repo, "build", "specs/user.yaml", "--json")
    repo.write("conf/config.yaml", "fit: {v: 4}\n")
    repo.commit("v4")
    cli(repo, "build", "specs/user.yaml", "--json")
    cli(repo, "promote", "user@2.1.0", "production", "--json")
    cli(repo, "promote", "user@2.1.1", "staging", "--json")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["--tracking-uri", uri, "--artifact-location", (tmp_path / "mlartifacts").as_uri()]
    from mlflow.tracking import MlflowClient

    return repo, args, MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_a_version_lands_in_mlflow_with_its_artifacts_and_provenance(
    exported: tuple[Repo, list[str], Any], tmp_path: Path
) -> None:
    repo, args, client = exported
    first = cli(repo, "mlflow", "export", "user@production", *args, "--alias", "--json")["exported"]
    assert [(e["ref"], e["model_version"], e["aliases"], e["new_run"]) for e in first] == [
        ("user@2.1.0", "1", ["production"], True)
    ]
    by_alias = client.get_model_version_by_alias("user", "production")
    assert str(by_alias.version) == "1" and by_alias.run_id == first[0]["run_id"]
    assert by_alias.source.startswith((tmp_path / "mlartifacts").as_uri())
    run = client.get_run(by_alias.run_id)
    shown = cli(repo, "show", "user@2.1.0", "--json")
    assert run.data.params == {"fit.v": "3"}
    assert run.data.metrics == {"auc": 0.9}
    tags = run.data.tags
    assert (tags["modelspec.content_id"], tags["modelspec.version"], tags["modelspec.lock"]) == (
        shown["content_id"],
        "2.1.0",
        shown["lock"],
    )
    assert (
        tags["modelspec.commit"] == shown["commit"] and tags["modelspec.signed_by"] == shown["provenance"]["keyids"][0]
    )
    # The artifacts come back from MLflow byte for byte, with the signed provenance beside them.
    from mlflow.artifacts import download_artifacts

    local = Path(download_artifacts(artifact_uri=by_alias.source, dst_path=str(tmp_path / "downloaded")))
    ours = tmp_path / "ours"
    cli(repo, "export", "user@2.1.0", str(ours), "--json")
    files = {p.relative_to(ours).as_posix(): hash_file(p) for p in ours.rglob("*") if p.is_file()}
    assert {p.relative_to(local).as_posix(): hash_file(p) for p in local.rglob("*") if p.is_file()} == files
    assert "fit/model/weights" in files
    envelope = json.loads((local / "user@2.1.0.intoto.jsonl").read_bytes())
    import base64

    subjects = {s["name"]: s["digest"] for s in json.loads(base64.b64decode(envelope["payload"]))["subject"]}
    for name, digest in subjects.items():
        assert hashlib.sha256((local / name).read_bytes()).hexdigest() == digest["sha256"]
    assert cli(repo, "verify", "--provenance", str(local), "--json")["ok"] is True


def test_exporting_twice_and_all_versions_duplicates_nothing(exported: tuple[Repo, list[str], Any]) -> None:
    repo, args, client = exported
    cli(repo, "mlflow", "export", "user@2.1.0", *args, "--json")
    everything = cli(repo, "mlflow", "export", "user", "--all", "--alias", *args, "--json")["exported"]
    assert [(e["ref"], e["new_run"], e["new_model_version"], e["aliases"]) for e in everything] == [
        ("user@2.1.0", False, False, ["production"]),
        ("user@2.1.1", True, True, ["staging"]),
    ]
    again = cli(repo, "mlflow", "export", "user", "--all", "--alias", *args, "--json")["exported"]
    assert not any(e["new_run"] or e["new_model_version"] for e in again)
    versions = client.search_model_versions("name = 'user'")
    assert sorted(str(v.version) for v in versions) == ["1", "2"]
    experiment = client.get_experiment_by_name("modelspec/user")
    assert len(client.search_runs([experiment.experiment_id])) == 2
    assert client.get_model_version_by_alias("user", "staging").tags["modelspec.ref"] == "user@2.1.1"
    text = cli(repo, "mlflow", "export", "user@staging", *args)
    assert "user@2.1.1 → MLflow model user version 2" in text and "already exported" in text


def test_bad_input(exported: tuple[Repo, list[str], Any]) -> None:
    repo, args, _client = exported
    assert (
        "takes a model name" in cli(repo, "mlflow", "export", "user@2.1.0", "--all", *args, "--json", code=2)["message"]
    )
    assert "no active version" in cli(repo, "mlflow", "export", "nobody", "--all", *args, "--json", code=2)["message"]
    result = repo.cli("mlflow", "export", "user@2.1.0")
    assert result.returncode == 2 and "--tracking-uri" in result.stderr
