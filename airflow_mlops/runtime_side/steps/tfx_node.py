"""Run one node of a TFX pipeline against the shared ML Metadata store (runs in the TFX runtime).

Every Airflow task of a DAG run compiles the same pipeline spec with the DAG run's id as
the TFX pipeline-run id, so a node finds the artifacts its upstream tasks published.
A node whose execution already completed under this run id is not run again (a retry
after the work was done reuses it); an execution an earlier try left RUNNING is adopted by
TFX's launcher (one execution per node and run), so a retry never publishes twice.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from airflow_mlops.runtimes.contract import RejectedInput, StepError
from airflow_mlops.shared import resolve_package_file
from airflow_mlops.runtime_side.steps.module_file import load_module_file
from airflow_mlops.runtime_side.steps.tfx_pipeline import (
    builder_for,
    compile_pipeline,
    metadata_connection_config,
    resolve_input_base,
    sample_dataset_dir,
)

log = logging.getLogger("airflow_mlops.tfx")

DONE_STATES = ("COMPLETE", "CACHED")


def _state_name(execution) -> str:
    from ml_metadata.proto import metadata_store_pb2

    return metadata_store_pb2.Execution.State.Name(execution.last_known_state)


def _node_executions(store, pipeline_name: str, node_id: str, run_id: str) -> list:
    """Executions of ``node_id`` in pipeline run ``run_id``, oldest first."""
    run_ctx = store.get_context_by_type_and_name("pipeline_run", run_id)
    node_ctx = store.get_context_by_type_and_name("node", f"{pipeline_name}.{node_id}")
    if run_ctx is None or node_ctx is None:
        return []
    in_run = {e.id for e in store.get_executions_by_context(run_ctx.id)}
    return sorted((e for e in store.get_executions_by_context(node_ctx.id) if e.id in in_run), key=lambda e: e.id)


def _custom(artifact, key: str):
    if key in artifact.custom_properties:
        value = artifact.custom_properties[key]
        return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None
    if key in artifact.properties:
        value = artifact.properties[key]
        return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None
    return None


def describe_artifact(store, artifact) -> dict[str, Any]:
    type_name = store.get_artifact_types_by_id([artifact.type_id])[0].name
    info: dict[str, Any] = {"id": artifact.id, "type": type_name, "uri": artifact.uri}
    for key in ("span", "version", "blessed", "pushed"):
        value = _custom(artifact, key)
        if isinstance(value, (int, float)):
            info[key] = int(value)
    for key in ("pushed_version", "pushed_destination"):
        value = _custom(artifact, key)
        if isinstance(value, str):
            info[key] = value
    splits = _custom(artifact, "split_names")
    if splits:
        info["splits"] = json.loads(splits)
    return info


def execution_artifacts(store, execution_id: int) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """``{"inputs": {key: [artifact]}, "outputs": {key: [artifact]}}`` of an execution."""
    from ml_metadata.proto import metadata_store_pb2

    events = store.get_events_by_execution_ids([execution_id])
    artifacts = {a.id: a for a in store.get_artifacts_by_id(list({e.artifact_id for e in events}))}
    result: dict[str, dict[str, list[dict[str, Any]]]] = {"inputs": {}, "outputs": {}}
    for event in events:
        side = "outputs" if event.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT) else "inputs"
        key = event.path.steps[0].key if event.path.steps else ""
        result[side].setdefault(key, []).append(describe_artifact(store, artifacts[event.artifact_id]))
    return result


def run_node(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Run node ``params["node_id"]`` of ``params["pipeline"]`` under pipeline-run ``params["run_id"]``."""
    from ml_metadata.metadata_store import metadata_store
    from tfx.orchestration import metadata
    from tfx.orchestration.local import runner_utils
    from tfx.orchestration.portable import launcher

    spec, node_id, run_id = params["pipeline"], params["node_id"], params["run_id"]
    package_dir = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for node in spec["nodes"]:  # the provider's own module files: this side's copy (a pod's image has its own)
        if node.get("args", {}).get("module_file"):
            node["args"]["module_file"] = resolve_package_file(node["args"]["module_file"], package_dir)
    node_spec = next((n for n in spec["nodes"] if n["id"] == node_id), None)
    if node_spec is None:
        raise StepError(f"node {node_id!r} is not in pipeline {spec['pipeline_name']!r}")
    connection = metadata_connection_config(spec["metadata"])
    store = metadata_store.MetadataStore(connection)
    earlier = _node_executions(store, spec["pipeline_name"], node_id, run_id)
    done = [e for e in earlier if _state_name(e) in DONE_STATES]
    reused = bool(done)
    if done:
        execution = done[-1]
        log.info(
            "node %s already completed in pipeline run %s (execution %d, %s): reusing it, not running it again",
            node_id, run_id, execution.id, _state_name(execution),
        )
    else:
        for stale in earlier:  # TFX keeps one execution per node and run, and adopts it
            log.info("adopting execution %d of node %s, left %s by an earlier try", stale.id, node_id, _state_name(stale))
        ir = compile_pipeline(spec, run_id, target=node_id)
        nodes = {n.pipeline_node.node_info.id: n.pipeline_node for n in ir.nodes}
        deployment = runner_utils.extract_local_deployment_config(ir)

        def launch(launch_id: str) -> None:
            launcher.Launcher(
                pipeline_node=nodes[launch_id],
                mlmd_connection=metadata.Metadata(connection),
                pipeline_info=ir.pipeline_info,
                pipeline_runtime_spec=ir.runtime_spec,
                executor_spec=runner_utils.extract_executor_spec(deployment, launch_id),
                custom_driver_spec=runner_utils.extract_custom_driver_spec(deployment, launch_id),
            ).launch()

        started = time.monotonic()
        functions = builder_for(node_spec).definition.module_functions
        if functions and node_spec["args"].get("module_file"):  # a broken module file fails here, not in Beam
            try:
                load_module_file(node_spec["args"]["module_file"], functions)
            except RejectedInput as err:
                raise StepError(f"{node_spec['component']}: {err}", kind="InvalidInput") from None
        # Companion nodes (a resolver picking the baseline model) run first, in the same task.
        for companion in (n for n in spec["nodes"] if n.get("companion_of") == node_id):
            log.info("running companion node %s (%s) of %s", companion["id"], companion["component"], node_id)
            try:
                launch(companion["id"])
            except Exception as err:  # a resolver that finds nothing usable (e.g. no validated span) says why
                rejected = rejection(err)
                if rejected is not None:
                    raise StepError(f"{companion['component']}: {rejected}", kind="InvalidInput") from None
                raise
        log.info("running TFX node %s (%s) in pipeline run %s", node_id, node_spec["component"], run_id)
        launch_error: BaseException | None = None
        try:
            launch(node_id)
        except Exception as err:  # noqa: BLE001 - reported with the execution state below
            log.exception("TFX node %s raised", node_id)
            launch_error = err
        after = _node_executions(store, spec["pipeline_name"], node_id, run_id)
        if not after or _state_name(after[-1]) not in DONE_STATES:
            state = _state_name(after[-1]) if after else "no execution recorded"
            reason = f"{type(launch_error).__name__}: {launch_error}" if launch_error else _execution_error(after[-1] if after else None)
            details: list[dict[str, Any]] = []
            kind = "ComponentFailed"
            rejected = rejection(launch_error)
            if rejected is None and node_spec["component"] == "Transform":
                rejected = missing_feature(launch_error, execution_artifacts(store, after[-1].id) if after else {})
            if rejected is not None:
                raise StepError(f"{node_spec['component']}: {rejected}", kind="InvalidInput")
            if node_spec["component"] == "CsvExampleGen":
                details = diagnose_csv(resolve_input_base(node_spec["args"]["input_base"]))
                if details:
                    kind = "MalformedInput"
                    reason = "malformed CSV: " + "; ".join(
                        f"{d['file']} line {d['line']}: {d['problem']}" for d in details[:5]
                    ) + (f" (and {len(details) - 5} more)" if len(details) > 5 else "")
            raise StepError(
                f"TFX component {node_spec['component']} (node {node_id}) did not complete: {state}. {reason}".strip(),
                details,
                kind=kind,
            )
        execution = after[-1]
        log.info("node %s completed in %.1f s (execution %d)", node_id, time.monotonic() - started, execution.id)
    artifacts = execution_artifacts(store, execution.id)
    return {
        "node_id": node_id,
        "component": node_spec["component"],
        "pipeline_name": spec["pipeline_name"],
        "run_id": run_id,
        "execution_id": execution.id,
        "state": _state_name(execution),
        "reused": reused,
        **artifacts,
        **builder_for(node_spec).result(artifacts),
    }


def _causes(error: BaseException | None, limit: int = 10) -> Iterator[BaseException]:
    """``error`` and what it was raised from (TFX may wrap what an executor raised)."""
    while error is not None and limit > 0:
        yield error
        error, limit = error.__cause__ or error.__context__, limit - 1


def rejection(error: BaseException | None) -> RejectedInput | None:
    """The :class:`RejectedInput` behind ``error``, if any."""
    return next((e for e in _causes(error) if isinstance(e, RejectedInput)), None)


def missing_feature(error: BaseException | None, artifacts: dict[str, Any]) -> RejectedInput | None:
    """For a Transform whose ``preprocessing_fn`` read a feature the data lacks (``KeyError``): say which."""
    key = next((e.args[0] for e in _causes(error)
                if isinstance(e, KeyError) and e.args and isinstance(e.args[0], str)), None)
    if key is None:
        return None
    columns: list[str] = []
    schema = ((artifacts.get("inputs") or {}).get("schema") or [{}])[0].get("uri")
    if schema:
        try:
            from tensorflow_metadata.proto.v0 import schema_pb2
            from tfx.utils import io_utils

            parsed = io_utils.parse_pbtxt_file(os.path.join(schema, "schema.pbtxt"), schema_pb2.Schema())
            columns = sorted(f.name for f in parsed.feature)
        except Exception:  # noqa: BLE001 - the message is still useful without the columns
            columns = []
    if key in columns:
        return None  # a KeyError of something else than the data's features
    return RejectedInput(
        f"the module's preprocessing_fn reads feature {key!r}, which the data does not have"
        + (f" (its columns: {', '.join(columns)})" if columns else "")
        + ": rename the CSV column, or change the module's feature names")


def diagnose_csv(input_base: str, limit: int = 50) -> list[dict[str, Any]]:
    """Rows of the CSV files under ``input_base`` whose field count differs from their header."""
    problems: list[dict[str, Any]] = []
    if not os.path.isdir(input_base):
        return [{"file": input_base, "line": 0, "problem": "not a directory"}]
    for dirpath, _, filenames in sorted(os.walk(input_base)):
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                with open(path, newline="") as handle:
                    reader = csv.reader(handle)
                    header = next(reader, None)
                    if header is None:
                        problems.append({"file": path, "line": 1, "problem": "empty file (no header)"})
                        continue
                    for row in reader:
                        if row and len(row) != len(header):
                            problems.append({"file": path, "line": reader.line_num,
                                             "problem": f"{len(row)} fields, the header has {len(header)}"})
                            if len(problems) >= limit:
                                return problems
            except (OSError, UnicodeDecodeError, csv.Error) as err:
                problems.append({"file": path, "line": 0, "problem": f"unreadable: {err}"})
    return problems


def _execution_error(execution) -> str:
    if execution is None:
        return ""
    for key in ("__execution_result__", "execution_result"):
        if key in execution.custom_properties:
            return str(execution.custom_properties[key].string_value)[:2000]
    return "see the log above for the component's error"


def sample_data(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Write the first ``rows`` rows of a sample dataset to ``dest`` (a CSV file); return its path.

    Without ``dest``, return the dataset's own directory.
    """
    name = params.get("dataset", "chicago_taxi")
    directory = sample_dataset_dir(name)
    source = os.path.join(directory, sorted(os.listdir(directory))[0])
    dest = params.get("dest")
    if not dest:
        return {"directory": directory, "file": source}
    rows = int(params.get("rows", 1000))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(source, newline="") as src:
        reader = csv.reader(src)
        lines = [next(reader)] + [row for _, row in zip(range(rows), reader, strict=False)]
    tmp = dest + ".tmp"
    with open(tmp, "w", newline="") as out:
        csv.writer(out).writerows(lines)
    os.replace(tmp, dest)
    return {"directory": directory, "file": dest, "rows": len(lines) - 1}


def run_pipeline(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Run every node of ``params["pipeline"]`` in this process with TFX's own ``LocalDagRunner``.

    The reference point for the per-task execution above (see ``bench/``): same components,
    same data, one process, no Airflow.
    """
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from airflow_mlops.runtime_side.steps.tfx_pipeline import build_pipeline

    started = time.monotonic()
    LocalDagRunner().run(build_pipeline(params["pipeline"]))
    return {"seconds": round(time.monotonic() - started, 2)}
