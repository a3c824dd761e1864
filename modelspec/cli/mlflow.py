"""`modelspec mlflow export`: registered versions into an MLflow tracking server and registry."""

from __future__ import annotations

import click

from . import echo, emit_json, handle_errors, json_option, main, open_catalog_here


@main.group()
def mlflow() -> None:
    """MLflow interop (pip install 'modelspec[mlflow]')."""


@mlflow.command("export")
@click.argument("ref")
@click.option(
    "--tracking-uri",
    required=True,
    envvar="MLFLOW_TRACKING_URI",
    help="http(s)://server, or sqlite:///PATH [env: MLFLOW_TRACKING_URI].",
)
@click.option("--registry-uri", help="The model registry's URI (default: the tracking URI).")
@click.option("--experiment", help="The experiment of the runs (default: modelspec/NAME).")
@click.option("--artifact-location", help="Where a new experiment keeps artifacts (default: the server's).")
@click.option("--alias", "aliases", is_flag=True, help="Also point MLflow's aliases where modelspec's point.")
@click.option("--all", "every", is_flag=True, help="REF is a model name: export each of its active versions.")
@json_option
@handle_errors
def mlflow_export(
    ref: str,
    tracking_uri: str,
    registry_uri: str | None,
    experiment: str | None,
    artifact_location: str | None,
    aliases: bool,
    every: bool,
    as_json: bool,
) -> None:
    """Export REF to MLflow: a run with its params, metrics and modelspec.* tags, its
    artifacts and signed provenance logged under the run's model/, and a registered model
    version whose source is that directory. Exporting again changes nothing."""
    from ..api import MlflowTarget, export_to_mlflow

    target = MlflowTarget(tracking_uri, registry_uri, experiment, artifact_location)
    with open_catalog_here(read_only=True) as catalog:
        exported = export_to_mlflow(catalog, ref, target, aliases=aliases, every=every)
    if as_json:
        emit_json({"exported": [e.to_dict() for e in exported]})
        return
    for item in exported:
        state = "exported" if item.new_model_version else "already exported"
        aliased = f"; aliases {', '.join(item.aliases)}" if item.aliases else ""
        echo(
            f"{item.ref} → MLflow model {item.model} version {item.model_version} (run {item.run_id}): {state}{aliased}"
        )
