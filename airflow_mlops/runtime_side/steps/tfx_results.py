"""What a TFX node produced, read from its artifacts (runs in the TFX runtime).

Each function reads one component's output for the node's result (the fields its
:class:`airflow_mlops.components.Component` declares in ``result``); the builders of
:mod:`airflow_mlops.runtime_side.steps.tfx_pipeline` name them.
"""

from __future__ import annotations

import os
from typing import Any


def _split_protos(uri: str, splits: list[str], filename: str, message_type):
    """``(split, message)`` for each split of an artifact that has ``Split-<split>/<filename>``."""
    from tfx.dsl.io import fileio

    for split in splits:
        path = os.path.join(uri, f"Split-{split}", filename)
        if fileio.exists(path):
            with fileio.open(path, "rb") as handle:
                yield split, message_type.FromString(handle.read())


def read_anomalies(anomalies_uri: str, splits: list[str]) -> list[dict[str, Any]]:
    """Every anomaly ExampleValidator wrote, one dict per (split, feature)."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    found = []
    for split, anomalies in _split_protos(anomalies_uri, splits, "SchemaDiff.pb", anomalies_pb2.Anomalies):
        items = list(anomalies.anomaly_info.items())
        if anomalies.HasField("dataset_anomaly_info"):
            items.append(("<dataset>", anomalies.dataset_anomaly_info))
        for feature, info in sorted(items):
            kinds = [anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in info.reason] or ["UNKNOWN_TYPE"]
            found.append(
                {
                    "split": split,
                    "feature": feature,
                    "kind": ", ".join(kinds),
                    "severity": anomalies_pb2.AnomalyInfo.Severity.Name(info.severity),
                    "description": info.description or info.short_description,
                }
            )
    return found


def read_statistics_summary(stats_uri: str, splits: list[str]) -> dict[str, Any]:
    """Examples and features per split, from StatisticsGen's ``FeatureStats.pb``."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    summary = {}
    for split, stats in _split_protos(
        stats_uri, splits, "FeatureStats.pb", statistics_pb2.DatasetFeatureStatisticsList
    ):
        if stats.datasets:
            ds = stats.datasets[0]
            summary[split] = {"num_examples": int(ds.num_examples), "num_features": len(ds.features)}
    return summary


def _metric_value(value) -> float | None:
    """A metric's number; None for other kinds and for NaN (a class absent from a slice has no recall)."""
    import math

    kind = value.WhichOneof("type")
    if kind == "double_value":
        number = float(value.double_value.value)
    elif kind == "bounded_value":
        number = float(value.bounded_value.value.value)
    else:
        return None
    return number if math.isfinite(number) else None


def _slice_name(slice_key) -> str:
    return ", ".join(f"{k}={v}" for k, v in slice_key) if slice_key else "overall"


def read_evaluation(evaluation_uri: str) -> dict[str, Any]:
    """TFMA's metrics per model (``candidate``, ``baseline``) on the overall slice, per slice (``slices``:
    one per value of each sliced feature), per class (``precision/class_1``), and its validation result."""
    import tensorflow_model_analysis as tfma
    from google.protobuf import text_format

    metrics: dict[str, dict[str, float]] = {}
    slices: dict[str, dict[str, dict[str, float]]] = {}
    for per_slice in tfma.load_metrics(evaluation_uri):
        key = tfma.slicer.deserialize_slice_key(per_slice.slice_key)
        for item in per_slice.metric_keys_and_values:
            value = _metric_value(item.value)
            if value is None:
                continue
            model = item.key.model_name or "candidate"
            name = item.key.name + ("_diff" if item.key.is_diff else "")
            if item.key.sub_key.HasField("class_id"):
                name += f"/class_{item.key.sub_key.class_id.value}"
            target = metrics if not key else slices.setdefault(_slice_name(key), {})
            target.setdefault(model, {})[name] = value
    validation = tfma.load_validation_result(evaluation_uri)
    failures = []
    for per_slice in validation.metric_validations_per_slice:
        for failure in per_slice.failures:
            failures.append({
                "metric": failure.metric_key.name,
                "model": failure.metric_key.model_name or "candidate",
                "against_baseline": bool(failure.metric_key.is_diff),
                "value": _metric_value(failure.metric_value),
                "threshold": text_format.MessageToString(failure.metric_threshold, as_one_line=True),
                "message": failure.message,
            })
    return {"validation_ok": bool(validation.validation_ok), "metrics": metrics, "slices": slices,
            "failures": failures}


def statistics_details(artifacts: dict[str, Any]) -> dict[str, Any]:
    stats = (artifacts["outputs"].get("statistics") or [None])[0]
    return {"statistics": read_statistics_summary(stats["uri"], stats.get("splits", []))} if stats else {}


def schema_details(artifacts: dict[str, Any]) -> dict[str, Any]:
    schema = (artifacts["outputs"].get("schema") or [None])[0]
    return {"schema_file": os.path.join(schema["uri"], "schema.pbtxt")} if schema else {}


def anomalies_details(artifacts: dict[str, Any]) -> dict[str, Any]:
    anomalies = (artifacts["outputs"].get("anomalies") or [None])[0]
    return {"anomalies": read_anomalies(anomalies["uri"], anomalies.get("splits", []))} if anomalies else {}


def evaluation_details(artifacts: dict[str, Any]) -> dict[str, Any]:
    outputs = artifacts["outputs"]
    if not outputs.get("evaluation"):
        return {}
    evaluation = read_evaluation(outputs["evaluation"][0]["uri"])
    blessing = (outputs.get("blessing") or [{}])[0]
    baseline = (artifacts["inputs"].get("baseline_model") or [None])[0]
    return {"evaluation": {**evaluation, "blessed": bool(blessing.get("blessed")), "baseline_model": baseline}}


def pushed_details(artifacts: dict[str, Any]) -> dict[str, Any]:
    pushed = (artifacts["outputs"].get("pushed_model") or [None])[0]
    if pushed is None:
        return {}
    return {"pushed": bool(pushed.get("pushed")), "pushed_version": pushed.get("pushed_version"),
            "pushed_destination": pushed.get("pushed_destination")}
