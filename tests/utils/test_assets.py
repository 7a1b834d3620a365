"""Reading the extra of the event that triggered a run."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

from airflow_mlops.utils.assets import asset_event_extra, data_uri, retrain_uri


def event(day: int, **extra):
    return SimpleNamespace(timestamp=datetime(2026, 11, day, tzinfo=timezone.utc), extra=extra)


def test_newest_event_wins_across_assets():
    events = {data_uri("p"): [event(1, data_root="/old")], retrain_uri("p"): [event(3, data_root="/new"), event(2)]}
    assert asset_event_extra(events, "data_root") == "/new"


def test_manual_runs_and_missing_keys_get_the_default():
    assert asset_event_extra(None, "data_root") == ""
    assert asset_event_extra({}, "data_root", "x") == "x"
    assert asset_event_extra({"a": [event(1)]}, "data_root", "x") == "x"


def test_uris():
    assert retrain_uri("chicago_taxi") == "mlops://chicago_taxi/retrain"
    assert data_uri("chicago_taxi") == "mlops://chicago_taxi/data"
