"""Read lineage from ML Metadata (runs in the TFX runtime, which has ml-metadata)."""

from __future__ import annotations

from typing import Any

from airflow_mlops.runtimes.contract import StepError
from airflow_mlops.steps.tfx_node import _state_name, execution_artifacts
from airflow_mlops.steps.tfx_pipeline import metadata_connection_config


def lineage(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Every execution of pipeline run ``params["run_id"]`` with its input and output artifacts.

    ``{"pipeline_name", "run_id", "executions": [{"id", "node", "state", "inputs", "outputs"}]}``,
    nodes in execution order; each artifact as ``{"id", "type", "uri", "span"?, "splits"?}``.
    """
    from ml_metadata.metadata_store import metadata_store

    store = metadata_store.MetadataStore(metadata_connection_config(params["metadata"]))
    pipeline_name, run_id = params["pipeline_name"], params["run_id"]
    run_ctx = store.get_context_by_type_and_name("pipeline_run", run_id)
    if run_ctx is None:
        raise StepError(f"ML Metadata has no pipeline run {run_id!r}")
    node_of: dict[int, str] = {}
    prefix = f"{pipeline_name}."
    for ctx in store.get_contexts_by_type("node"):
        if ctx.name.startswith(prefix):
            for execution in store.get_executions_by_context(ctx.id):
                node_of[execution.id] = ctx.name[len(prefix):]
    executions = []
    for execution in sorted(store.get_executions_by_context(run_ctx.id), key=lambda e: e.id):
        if execution.id not in node_of:
            continue
        executions.append(
            {"id": execution.id, "node": node_of[execution.id], "state": _state_name(execution),
             **execution_artifacts(store, execution.id)}
        )
    return {"pipeline_name": pipeline_name, "run_id": run_id, "executions": executions}
