"""`modelspec mlflow export`: a registered version into an MLflow tracking server and model
registry, where many teams already look for models.

For each version: a run in experiment `modelspec/NAME` with the version's flattened params,
its metrics and `modelspec.*` tags (content id, version, lock digest, commit, ...); the
export of the version (artifacts, manifest.json and the signed provenance) logged under
the run's `model/`; a registered model version named like the model, whose source is that
directory inside the run (`create_model_version` with the run's artifact URI: MLflow 3's
`register_model("runs:/…")` wants a logged model); and, with `aliases`, MLflow's aliases
set where modelspec's point. Exporting again finds the run by its content id tag and the
model version by its run, so nothing is duplicated. mlflow (`modelspec[mlflow]`, i.e.
mlflow-skinny) is imported only here.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .catalog import Catalog
from .errors import UsageError
from .registry.registry import ModelVersion

PARAM_LIMIT = 6000  # MLflow's longest param value
CONTENT_TAG = "modelspec.content_id"


@dataclass(frozen=True)
class MlflowTarget:
    tracking_uri: str
    registry_uri: str | None = None
    experiment: str | None = None  # default: modelspec/NAME
    artifact_location: str | None = None  # of a new experiment; default: the server's


@dataclass(frozen=True)
class Exported:
    ref: str
    run_id: str
    model: str
    model_version: str
    source: str
    aliases: tuple[str, ...]
    new_run: bool
    new_model_version: bool

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def export(
    catalog: Catalog, ref: str, target: MlflowTarget, aliases: bool = False, every: bool = False
) -> list[Exported]:
    """Export REF (or, `every`, each active version of model REF) to MLflow."""
    if every:
        if "@" in ref:
            raise UsageError(
                f"--all takes a model name, not {ref!r}", hint=f"modelspec mlflow export {ref.split('@')[0]} --all"
            )
        found = sorted(catalog.registry.versions_by_status("active"), key=lambda v: v.id)
        versions = [v for v in found if v.name == ref]
        if not versions:
            raise UsageError(f"model {ref!r} has no active version", hint="`modelspec versions NAME` lists them")
    else:
        versions = [catalog.resolve(ref).version]
    client, exceptions = _client(target)
    try:
        return [_export_one(catalog, client, version, target, aliases) for version in versions]
    except exceptions as exc:
        raise UsageError(
            f"MLflow at {target.tracking_uri} refused the export: {exc}", hint="check the tracking URI and the server"
        ) from None


def _client(target: MlflowTarget) -> tuple[Any, type[Exception]]:
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise UsageError("MLflow export needs mlflow", hint="pip install 'modelspec[mlflow]'") from None
    try:
        client = MlflowClient(tracking_uri=target.tracking_uri, registry_uri=target.registry_uri or target.tracking_uri)
        client.search_experiments(max_results=1)  # connects (and, on SQLite, creates the tables)
    except ImportError as exc:
        raise UsageError(
            f"the MLflow backend {target.tracking_uri} needs {exc.name}", hint=f"pip install {exc.name}"
        ) from None
    except MlflowException as exc:
        raise UsageError(f"cannot reach MLflow at {target.tracking_uri}: {exc}", hint="check --tracking-uri") from None
    return client, MlflowException


def _experiment(client: Any, name: str, target: MlflowTarget) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    return str(client.create_experiment(name, artifact_location=target.artifact_location))


def _export_one(catalog: Catalog, client: Any, version: ModelVersion, target: MlflowTarget, aliases: bool) -> Exported:
    info = catalog.show(version.ref)
    experiment = _experiment(client, target.experiment or f"modelspec/{version.name}", target)
    run, new_run = _run(catalog, client, experiment, version, info)
    model = version.name
    if not client.search_registered_models(filter_string=f"name = '{model}'"):
        client.create_registered_model(model, tags={"modelspec.model": model})
    existing = client.search_model_versions(f"name = '{model}' and run_id = '{run.info.run_id}'")
    if existing:
        model_version, new_model_version = existing[0], False
    else:
        model_version = client.create_model_version(
            model,
            source=f"{run.info.artifact_uri}/model",
            run_id=run.info.run_id,
            tags={"modelspec.ref": version.ref, CONTENT_TAG: version.content_id},
            description=f"modelspec {version.ref} ({version.short_id})",
        )
        new_model_version = True
    placed = []
    if aliases:
        for alias in info["aliases"]:
            if catalog.resolve(f"{model}@{alias}").version.id == version.id:  # its primary target, when split
                client.set_registered_model_alias(model, alias, model_version.version)
                placed.append(alias)
    return Exported(
        version.ref,
        run.info.run_id,
        model,
        str(model_version.version),
        str(model_version.source),
        tuple(placed),
        new_run,
        new_model_version,
    )


def _run(
    catalog: Catalog, client: Any, experiment: str, version: ModelVersion, info: dict[str, Any]
) -> tuple[Any, bool]:
    """The run that holds this version: found by its content id, else made (a run left
    unfinished by an export that was killed is deleted and made again)."""
    runs = client.search_runs([experiment], filter_string=f"tags.`{CONTENT_TAG}` = '{version.content_id}'")
    for run in runs:
        if run.info.status == "FINISHED":
            return run, False
        client.delete_run(run.info.run_id)
    from mlflow.entities import Metric, Param

    run = client.create_run(experiment, run_name=version.ref, tags=_tags(version, info))
    now = int(time.time() * 1000)
    params = [Param(key, str(value)[:PARAM_LIMIT]) for key, value in sorted(info.get("params", {}).items())]
    metrics = [Metric(key, float(value), now, 0) for key, value in sorted(info["metrics"].items())]
    for start in range(0, max(len(params), len(metrics), 1), 100):  # MLflow takes at most 100 params a batch
        client.log_batch(run.info.run_id, metrics=metrics[start : start + 100], params=params[start : start + 100])
    with tempfile.TemporaryDirectory(prefix="modelspec-mlflow-") as temp:
        exported = Path(temp) / "model"
        catalog.export(version.ref, exported)
        client.log_artifacts(run.info.run_id, str(exported), "model")
    client.set_terminated(run.info.run_id, "FINISHED")
    return client.get_run(run.info.run_id), True


def _tags(version: ModelVersion, info: dict[str, Any]) -> dict[str, str]:
    provenance = info.get("provenance") or {}
    tags = {
        CONTENT_TAG: version.content_id,
        "modelspec.ref": version.ref,
        "modelspec.version": version.version,
        "modelspec.lock": version.lock,
        "modelspec.commit": version.commit,
        "modelspec.environment": version.environment or "",
        "modelspec.hermetic": str(version.hermetic).lower(),
        "modelspec.provenance": provenance.get("envelope", ""),
        "modelspec.signed_by": ",".join(provenance.get("keyids") or []),
    }
    return {key: value for key, value in tags.items() if value}
