"""The Assets that close the loop, and reading what their events carry (for templates)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def retrain_uri(pipeline_name: str) -> str:
    """The Asset a monitoring DAG updates when a deployment's traffic drifted: retrain this pipeline."""
    return f"mlops://{pipeline_name}/retrain"


def landing_uri(pipeline_name: str) -> str:
    """The Asset whose watcher announces each new ``span-<N>/`` landing in the data directory (event-driven ingest)."""
    return f"mlops://{pipeline_name}/landing"


def data_uri(pipeline_name: str) -> str:
    """The Asset updated when a new span of the pipeline's data has been ingested and validated."""
    return f"mlops://{pipeline_name}/data"


def newest_event(triggering_asset_events: Mapping[Any, Any] | None) -> Any:
    """The newest of the events that triggered a run (across its Assets), or None."""
    events = [event for per_asset in (triggering_asset_events or {}).values() for event in per_asset]
    return max(events, key=lambda event: event.timestamp, default=None)


def asset_event_extra(triggering_asset_events: Mapping[Any, Any] | None, key: str, default: Any = "") -> Any:
    """``key`` from the extra of the newest event that triggered the run; ``default`` for other runs.

    For templates (registered as a user-defined macro in the template DAGs), e.g.
    ``{{ params.data_root or asset_event_extra(triggering_asset_events, 'data_root') }}``.
    """
    newest = newest_event(triggering_asset_events)
    if newest is None:
        return default
    return (newest.extra or {}).get(key, default)


def retraining_request(drift: Mapping[str, Any] | None, quality: Mapping[str, Any] | None,
                       data_root: str = "") -> dict[str, Any] | None:
    """The extra of a retrain Asset event from the monitor's findings, or None when nothing calls for one.

    ``reason`` says why (``drift``, ``decay``, or ``drift, decay``); the drift report's drifted
    features and p-values and the quality report's decayed versions (metric, value, blessed value,
    drop, labelled rows) travel with it, so the retraining run can say why it ran.
    """
    reasons: list[str] = []
    extra: dict[str, Any] = {"data_root": data_root or ""}
    if drift and drift.get("is_drift"):
        reasons.append("drift")
        extra.update({
            "deployment": drift.get("deployment"), "model_version": drift.get("model_version"),
            "drifted_features": drift.get("drifted_features"),
            "p_values": {n: f["p_val"] for n, f in (drift.get("features") or {}).items() if "p_val" in f},
            "report": drift.get("report"), "report_png": drift.get("report_png"),
        })
    if quality and quality.get("status") == "decayed":
        reasons.append("decay")
        decayed = {name: {k: v.get(k) for k in ("metric", "value", "blessed_value", "drop", "samples", "reason")}
                   for name, v in (quality.get("versions") or {}).items() if v.get("status") == "decayed"}
        extra.update({"deployment": quality.get("deployment"), "decayed_versions": decayed,
                      "quality_report": quality.get("report"), "quality_plot": quality.get("plot")})
    if not reasons:
        return None
    return {"reason": ", ".join(reasons), **extra}


def run_reason(triggering_asset_events: Mapping[Any, Any] | None, run_type: str = "manual") -> dict[str, Any]:
    """Why a training run runs: the retrain event's ``reason`` (drift, decay), ``new data`` (the data Asset),
    ``scheduled``, or ``manual``; with the triggering event's extra."""
    newest = newest_event(triggering_asset_events)
    if newest is None:
        return {"reason": "manual" if run_type == "manual" else run_type, "event": None}
    extra = dict(newest.extra or {})
    uri = str(getattr(getattr(newest, "asset", None), "uri", "") or "")
    reason = extra.get("reason") or ("new data" if uri.endswith("/data") else "asset event")
    return {"reason": reason, "asset": uri or None, "event": extra}
