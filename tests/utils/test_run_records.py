from __future__ import annotations

import json
import os

from airflow_mlops.utils.run_records import ReportDir, RunRecords, record_task, safe_name


def test_sections_of_one_run_merge_and_a_retry_replaces_its_own(tmp_path):
    records = RunRecords(tmp_path, "taxi")
    records.add("train", "manual__2026-12-01T00:00:00+00:00", "Evaluator", {"blessed": False})
    records.add("train", "manual__2026-12-01T00:00:00+00:00", "Pusher", {"model_version": 3})
    records.add("train", "manual__2026-12-01T00:00:00+00:00", "Evaluator", {"blessed": True})
    record = records.get("train", "manual__2026-12-01T00:00:00+00:00")
    assert record["Evaluator"] == {"blessed": True} and record["Pusher"] == {"model_version": 3}
    assert (record["dag_id"], record["run_id"], record["pipeline"]) == ("train", "manual__2026-12-01T00:00:00+00:00",
                                                                        "taxi")
    assert [p.name for p in (tmp_path / "runs" / "taxi").glob("*.json")] == [
        "train.manual__2026-12-01T00_00_00_00_00.json"]
    assert RunRecords.pipelines(tmp_path) == ["taxi"]


def test_a_damaged_record_is_rebuilt_and_record_task_never_raises(tmp_path, caplog):
    records = RunRecords(tmp_path, "taxi")
    (records.directory).mkdir(parents=True)
    (records.directory / f"{records.name('d', 'r')}.json").write_text("{not json")
    records.add("d", "r", "T", {"x": 1})
    assert records.get("d", "r")["T"] == {"x": 1}
    blocked = tmp_path / "file"
    blocked.write_text("")
    record_task(blocked, "taxi", "d", "r", "T", {})  # a file where the directory should be
    assert "could not record" in caplog.text
    record_task(tmp_path, "taxi", "d", None, "T", {})
    assert "has no run id" in caplog.text


def test_report_dir_pages_newest_first_and_reads_only_safe_names(tmp_path):
    for i in range(7):
        path = tmp_path / f"r{i}.json"
        path.write_text(json.dumps({"i": i}))
        os.utime(path, (1000 + i, 1000 + i))
    (tmp_path / "broken.json").write_text("[")
    os.utime(tmp_path / "broken.json", (900, 900))
    reports = ReportDir(tmp_path)
    page = reports.page(0, 3)
    assert [r["i"] for r in page.reports] == [6, 5, 4] and page.total == 8
    assert [r["_name"] for r in reports.page(6, 3).reports] == ["r0"]  # the broken one is left out
    assert reports.read("r2") == {"i": 2, "_name": "r2"} and reports.read("r2.json")["i"] == 2
    assert page.reports[0]["_at"] == 1006
    assert reports.read("../r2") is None and reports.read("") is None
    assert ReportDir(tmp_path / "missing").page().total == 0
    assert safe_name("manual__2026-12-01T00:00:00+00:00") == "manual__2026-12-01T00_00_00_00_00"


def test_a_listing_is_reused_until_a_report_is_added(tmp_path):
    reports = ReportDir(tmp_path)
    (tmp_path / "a.json").write_text("{}")
    assert reports.count() == 1
    (tmp_path / "b.json").write_text("{}")
    assert reports.count() == 2 and {r["_name"] for r in reports.page().reports} == {"a", "b"}


def test_a_kept_listing_is_dropped_when_the_directory_changes(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    os.utime(tmp_path, ns=(0, 5_000_000_000))  # changed long ago: the listing is kept
    reports = ReportDir(tmp_path)
    assert reports.count() == 1
    (tmp_path / "b.json").write_text("{}")  # the directory's time moves on
    assert reports.count() == 2
