"""Reading windows of the prediction log (local and object-store layouts)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from airflow_mlops.serving.prediction_log import read_window


def write(path, entries):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))


def entry(minutes_ago: float, version: int, *values: int) -> dict:
    at = datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)
    return {"ts": at.isoformat(), "model_version": version, "instances": [{"x": v} for v in values]}


def test_last_n_takes_the_newest_instances_in_order(tmp_path):
    write(tmp_path / "2026-11-26.jsonl", [entry(90, 1, 1, 2), entry(80, 1, 3)])
    write(tmp_path / "2026-11-27" / "host-1-000001.jsonl", [entry(5, 1, 4, 5, 6)])  # the object-store layout
    window = read_window(tmp_path, last_n=4)
    assert [r["x"] for r in window["records"]] == [3, 4, 5, 6]
    assert window["requests"] == 3


def test_minutes_and_model_version_filter(tmp_path):
    write(tmp_path / "a.jsonl", [entry(90, 1, 1), entry(10, 1, 2), entry(5, 2, 3)])
    assert [r["x"] for r in read_window(tmp_path, minutes=30)["records"]] == [2, 3]
    assert [r["x"] for r in read_window(tmp_path, model_version=1)["records"]] == [1, 2]


def test_bad_lines_are_counted_not_fatal(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"ts": "not a time"}\nnot json\n' + json.dumps(entry(1, 1, 7)) + "\n")
    window = read_window(tmp_path, last_n=10)
    assert [r["x"] for r in window["records"]] == [7] and window["skipped_lines"] == 2


def test_missing_log_is_an_empty_window(tmp_path):
    assert read_window(tmp_path / "nothing", last_n=5)["records"] == []
