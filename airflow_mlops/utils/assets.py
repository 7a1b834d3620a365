"""The Assets that close the loop, and reading what their events carry (for templates)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def retrain_uri(pipeline_name: str) -> str:
    """The Asset a monitoring DAG updates when a deployment's traffic drifted: retrain this pipeline."""
    return f"mlops://{pipeline_name}/retrain"


def data_uri(pipeline_name: str) -> str:
    """The Asset updated when a new span of the pipeline's data has been ingested and validated."""
    return f"mlops://{pipeline_name}/data"


def asset_event_extra(triggering_asset_events: Mapping[Any, Any] | None, key: str, default: Any = "") -> Any:
    """``key`` from the extra of the newest event that triggered the run; ``default`` for other runs.

    For templates (registered as a user-defined macro in the template DAGs), e.g.
    ``{{ params.data_root or asset_event_extra(triggering_asset_events, 'data_root') }}``.
    """
    newest = None
    for events in (triggering_asset_events or {}).values():
        for event in events:
            if newest is None or event.timestamp > newest.timestamp:
                newest = event
    if newest is None:
        return default
    return (newest.extra or {}).get(key, default)
