"""Read lineage from ML Metadata (runs in the TFX runtime, which has ml-metadata)."""

from __future__ import annotations

from typing import Any

from airflow_mlops.runtimes.contract import StepError
from airflow_mlops.runtime_side.steps.tfx_node import _state_name, execution_artifacts
from airflow_mlops.runtime_side.steps.tfx_pipeline import metadata_connection_config


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


def mark_validated(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Mark Examples artifact ``params["artifact_id"]`` as accepted by the data gate (``mlops_validated``,
    with the run that accepted it): training windows take only such spans."""
    from ml_metadata.metadata_store import metadata_store

    from airflow_mlops.runtime_side.steps.training_window import VALIDATED

    store = metadata_store.MetadataStore(metadata_connection_config(params["metadata"]))
    found = store.get_artifacts_by_id([int(params["artifact_id"])])
    if not found:
        raise StepError(f"ML Metadata has no artifact {params['artifact_id']}")
    artifact = found[0]
    artifact.custom_properties[VALIDATED].int_value = 1
    artifact.custom_properties[f"{VALIDATED}_run"].string_value = str(params.get("run_id") or "")
    store.put_artifacts([artifact])
    span = artifact.custom_properties["span"].int_value if "span" in artifact.custom_properties else None
    return {"artifact_id": artifact.id, "span": span}


def _producer(store, artifact_id: int):
    """The execution that output ``artifact_id``, or None."""
    from ml_metadata.proto import metadata_store_pb2

    for event in store.get_events_by_artifact_ids([artifact_id]):
        if event.type == metadata_store_pb2.Event.OUTPUT:
            return event.execution_id
    return None


def _inputs(store, execution_id: int, key: str) -> list:
    from ml_metadata.proto import metadata_store_pb2

    ids = [e.artifact_id for e in store.get_events_by_execution_ids([execution_id])
           if e.type == metadata_store_pb2.Event.INPUT and e.path.steps and e.path.steps[0].key == key]
    return store.get_artifacts_by_id(ids) if ids else []


def training_examples(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """The raw training records of a model, found through lineage: model → Trainer → Transform → examples.

    Params: ``metadata``, ``model_artifact_id``, ``features`` (names to keep), ``max_rows``
    (default 20,000), ``split`` (``train``), ``dest`` (a JSONL file written with the records).
    Returns the examples artifact (id, uri, span) and the number of records written.
    """
    import glob
    import json
    import os

    import tensorflow as tf
    from ml_metadata.metadata_store import metadata_store

    store = metadata_store.MetadataStore(metadata_connection_config(params["metadata"]))
    model_id = int(params["model_artifact_id"])
    trainer = _producer(store, model_id)
    if trainer is None:
        raise StepError(f"ML Metadata has no execution that produced model artifact {model_id}")
    examples = _inputs(store, trainer, "examples")
    if not examples:
        raise StepError(f"the Trainer execution {trainer} of model {model_id} has no input examples")
    artifacts = [examples[0]]
    transform = _producer(store, examples[0].id)
    raw = _inputs(store, transform, "examples") if transform is not None else []
    if raw:  # the Trainer read Transform's output: go one step further back, to the raw data (every span)
        artifacts = sorted(raw, key=lambda a: a.custom_properties["span"].int_value
                           if "span" in a.custom_properties else 0)
    artifact = artifacts[-1]  # the newest span
    split = params.get("split") or "train"
    per_span = [sorted(glob.glob(os.path.join(a.uri, f"Split-{split}", "*"))) for a in artifacts]
    if not all(per_span):
        missing = [a.id for a, found in zip(artifacts, per_span) if not found]
        raise StepError(f"examples artifact(s) {missing} have no split {split!r}")
    keep = set(params.get("features") or [])
    max_rows = int(params.get("max_rows") or 20000)
    share = max(1, max_rows // len(per_span))  # a training window: every span in the reference, equally
    records = [r for files in per_span for r in tf.data.TFRecordDataset(files, compression_type="GZIP").take(share)]
    written = 0
    os.makedirs(os.path.dirname(params["dest"]) or ".", exist_ok=True)
    tmp = params["dest"] + ".tmp"
    with open(tmp, "w") as out:
        for record in records:
            example = tf.train.Example.FromString(record.numpy())
            row: dict[str, Any] = {}
            for name, feature in example.features.feature.items():
                if keep and name not in keep:
                    continue
                kind = feature.WhichOneof("kind")
                values = list(getattr(feature, kind).value) if kind else []
                value = values[0] if values else None
                row[name] = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            out.write(json.dumps(row) + "\n")
            written += 1
    os.replace(tmp, params["dest"])
    span = artifact.custom_properties["span"].int_value if "span" in artifact.custom_properties else None
    spans = [a.custom_properties["span"].int_value for a in artifacts if "span" in a.custom_properties]
    return {"examples_artifact_id": artifact.id, "uri": artifact.uri, "span": span, "spans": spans,
            "records": written, "trainer_execution_id": trainer, "dest": params["dest"]}
