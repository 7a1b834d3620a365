from __future__ import annotations

import json

import pytest

from airflow_mlops.hooks.seldon import SeldonHook
from airflow_mlops.plugins.charts import line_chart
from airflow_mlops.plugins.data import PageData, gate_value, health_series, parse_text_proto, schema_table
from tests.plugins.sample_state import DEPLOYMENT, EVIL, PIPELINE, SCHEMA, write_state


@pytest.fixture
def state(clean_mlops_env, tmp_path):
    clean_mlops_env.setenv("AIRFLOW__MLOPS__STATE_DIR", str(tmp_path / "state"))
    expected = write_state(tmp_path / "state", versions=5, drift_reports=7)
    return PageData(SeldonHook(mlops_conn_id=None)), expected


def test_versions_are_paged_newest_first_with_their_runs(state):
    data, expected = state
    rows, total = data.versions(PIPELINE, 0, 2, served={DEPLOYMENT: (5, data.state_dir / "models" / PIPELINE)})
    assert total == 5 and [r.record.version for r in rows] == [5, 4]
    assert rows[0].served_by == [DEPLOYMENT] and rows[1].served_by == []
    assert gate_value(rows[0].run) == expected["versions"][5]["auc"]
    assert rows[0].training["module_sha256"] == f"{5:064x}" and rows[0].transform["training_spans"] == [5]
    rows, _ = data.versions(PIPELINE, 4, 2)
    assert [r.record.version for r in rows] == [1] and gate_value(rows[0].run, "baseline") is None
    assert data.version(PIPELINE, 3).record.run_id == expected["versions"][3]["run_id"]
    with pytest.raises(LookupError, match="no model version 9"):
        data.version(PIPELINE, 9)
    assert data.versions("other") == ([], 0)


def test_deployments_and_drift_read_through_the_backend_and_report_files(state):
    data, expected = state
    deployments, errors = data.deployments()
    assert errors == [] and [d.name for d in deployments] == [DEPLOYMENT]
    dep = deployments[0]
    assert (dep.backend, dep.version, dep.status) == ("local", 5, "stopped")
    assert [h["by"]["run_id"] for h in dep.history] == [expected["versions"][v]["run_id"] for v in range(1, 6)]
    assert data.drift_deployments() == [(DEPLOYMENT, 7)]
    page = data.drift_reports(DEPLOYMENT, 0, 3)
    assert page.total == 7 and page.reports[0]["_name"] == expected["newest_report"]
    assert data.drift_report(DEPLOYMENT, "../../x") is None


def test_health_series_over_the_log(state, tmp_path):
    data, expected = state
    series = health_series(data.deployment(DEPLOYMENT).prediction_log, buckets=10)
    assert series["requests"] == expected["requests"]  # the feedback line is not a request
    assert sum(p["requests"] for p in series["points"]) == expected["requests"]
    failed = sum(round(p["error_rate"] * p["requests"]) for p in series["points"])
    assert failed == expected["errors"]
    assert all(5 <= p["p99_ms"] <= 25 for p in series["points"])
    assert health_series(tmp_path / "nothing") == {"points": [], "requests": 0}
    small = tmp_path / "log"
    small.mkdir()
    lines = [json.dumps({"ts": f"2026-12-01T00:00:{i:02d}+00:00", "ms": float(i)}) for i in range(50)]
    (small / "a.jsonl").write_text("\n".join(lines) + "\nnot json\n")
    tail = health_series(small, buckets=1, max_bytes=len(lines[-1]) * 10)
    assert tail["requests"] < 10  # only the tail is read; its cut first line is dropped


def test_schema_table_reads_types_presence_and_domains():
    rows = {r["name"]: r for r in schema_table(SCHEMA)}
    assert rows["fare"]["type"] == "FLOAT" and rows["fare"]["domain"] == {"min": "0.0", "max": "500.0",
                                                                          "kind": "float_domain"}
    assert rows["payment_type"]["domain"]["values"] == ["Cash", "Credit Card", EVIL]  # quotes unescaped
    assert rows[EVIL]["type"] == "INT"
    assert rows["payment_type"]["min_fraction"] == "1.0"
    assert parse_text_proto('a: "q\\"x" # c\nb { c: 1 }') == {"a": ['q"x'], "b": [{"c": ["1"]}]}
    with pytest.raises(ValueError):
        parse_text_proto("a { b: 1 } }")


def test_schema_of_the_store_and_no_schema(state):
    data, _ = state
    schema = data.schema(PIPELINE)
    assert schema["version"] == 1 and [f["name"] for f in schema["features"]] == ["fare", "payment_type", EVIL]
    assert data.schema("other") is None


def test_charts_escape_their_text_and_say_when_empty():
    svg = line_chart([{"at": 0, "v": 1.0}, {"at": 60, "v": 2.0}], "v", title=EVIL)
    assert "<script>" not in svg and "&lt;script&gt;" in svg and svg.count("<circle") == 2
    assert "no data" in line_chart([], "v", title="x")


def test_health_series_parses_only_what_the_log_gained(tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    part = log / "part-0.jsonl"
    line = lambda i: json.dumps({"ts": f"2026-12-01T00:{i // 60:02d}:{i % 60:02d}+00:00", "ms": 1.0}) + "\n"  # noqa: E731
    part.write_text("".join(line(i) for i in range(10)))
    assert health_series(log)["requests"] == 10
    with open(part, "a") as f:
        f.write("".join(line(i) for i in range(10, 15)) + line(15)[:20])  # the last line is being written
    assert health_series(log)["requests"] == 15
    with open(part, "a") as f:
        f.write(line(15)[20:])
    assert health_series(log)["requests"] == 16
    part.unlink()  # rotated: a new file of the same name is read from its start
    part.write_text(line(0))
    assert health_series(log)["requests"] == 1
