"""The quality check's join and metrics (real files; the real server's predictions and feedback: tests/integration)."""

from __future__ import annotations

import json
import math
import random
from datetime import datetime, timedelta, timezone

import fsspec
import pytest

from airflow_mlops.serving.quality import (
    QualityGate,
    QualitySpecError,
    auc,
    check_quality_metric,
    compute_metric,
    judge,
    model_quality,
    quality_svg,
    read_labels,
    write_report,
)

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)


def pairwise_auc(scores, labels):
    """The definition, independently: P(score of a positive > score of a negative), ties one half."""
    pos = [s for s, y in zip(scores, labels) if y == 1]
    neg = [s for s, y in zip(scores, labels) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_auc_equals_the_pairwise_definition_with_ties():
    rng = random.Random(7)
    scores = [round(rng.random(), 1) for _ in range(400)]  # rounded: many ties
    labels = [int(rng.random() < s) for s in scores]
    assert auc(scores, labels) == pytest.approx(pairwise_auc(scores, labels), abs=1e-12)
    assert auc([0.1, 0.2], [1, 1]) is None


@pytest.mark.parametrize("model_type, metric, pairs, expected", [
    ("binary", "BinaryAccuracy", [(0.9, 1), (0.2, 0), (0.6, 0), ([0.4], 1)], 0.5),
    ("binary", "Precision", [(0.9, 1), (0.6, 0), (0.1, 1)], 0.5),
    ("binary", "Recall", [(0.9, 1), (0.6, 0), (0.1, 1)], 0.5),
    ("binary", "AUC", [(0.9, "true"), (0.1, "false"), (0.5, "maybe")], 1.0),
    ("multiclass", "SparseCategoricalAccuracy", [([0.1, 0.8, 0.1], 1), ([0.7, 0.2, 0.1], 2.0), ([0.2, 0.3, 0.5], 2)],
     2 / 3),
    ("regression", "MeanSquaredError", [(3.0, 1), ([2.0], 2.0)], 2.0),
    ("regression", "MeanAbsoluteError", [(3.0, 1), (2.0, 4)], 2.0),
    ("regression", "RootMeanSquaredError", [(3.0, 1), (2.0, 2)], math.sqrt(2.0)),
])
def test_metrics_of_each_model_type(model_type, metric, pairs, expected):
    value, used = compute_metric(model_type, metric, pairs)
    assert value == pytest.approx(expected)
    assert used == len([p for p in pairs if p[1] != "maybe"])


def test_a_metric_of_another_model_type_is_refused_naming_the_right_ones():
    with pytest.raises(QualitySpecError, match="'AUC' is not one the quality check computes for regression models; "
                                               "use one of MeanSquaredError, MeanAbsoluteError"):
        check_quality_metric("regression", "AUC")
    with pytest.raises(QualitySpecError, match="model_type must be one of binary, multiclass, regression"):
        check_quality_metric("ranking", None)
    assert check_quality_metric("multiclass", None).name == "SparseCategoricalAccuracy"


@pytest.mark.parametrize("gate, value, samples, blessed, status, reason", [
    (QualityGate(min_labels=10), 0.70, 50, 0.80, "decayed", "AUC 0.7000 is 0.1000 below the 0.8000 it was blessed"),
    (QualityGate(min_labels=10), 0.78, 50, 0.80, "ok", None),
    (QualityGate(min_labels=10, floor=0.75), 0.74, 50, None, "decayed", "below the floor 0.75"),
    (QualityGate(min_labels=100), 0.10, 50, 0.80, "insufficient_labels", "50 labelled prediction(s), at least 100"),
    (QualityGate("regression", "MeanAbsoluteError", max_drop=1.0, min_labels=1), 9.0, 5, 7.5, "decayed",
     "MeanAbsoluteError 9.0000 is 1.5000 above the 7.5000"),
])
def test_judge(gate, value, samples, blessed, status, reason):
    verdict = judge(gate, value, samples, blessed)
    assert verdict["status"] == status
    assert (verdict["reason"] is None) if reason is None else reason in verdict["reason"]


def write_log(directory, entries):
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "2026-12-05.jsonl", "a") as handle:
        for entry in entries:
            handle.write(json.dumps(entry) + "\n")


def served(rid, version, scores, minutes_ago):
    return {"ts": (NOW - timedelta(minutes=minutes_ago)).isoformat(), "deployment": "taxi", "model_version": version,
            "request_id": rid, "instances": [{}] * len(scores), "names": ["probabilities"],
            "predictions": [[s] for s in scores], "ms": 1.0}


@pytest.fixture
def traffic(tmp_path):
    """Version 1 answered 60 rows an hour ago, version 2 answered 40 rows in the last minutes; v1 gets the
    truth through the feedback endpoint's lines, v2 through outcome files."""
    rng = random.Random(3)
    log = tmp_path / "log"
    entries, truth = [], {}
    for i in range(30):
        scores = [rng.random(), rng.random()]
        entries.append(served(f"a{i}", 1, scores, 60 - i))
        truth[f"a{i}"] = [int(rng.random() < 0.5) for _ in scores]  # v1: wrong half the time
    for i in range(40):
        score = rng.random()
        entries.append(served(f"b{i}", 2, [score], 20 - i * 0.1))
        truth[f"b{i}"] = [int(score > 0.3)]  # v2: right
    entries.append({"ts": NOW.isoformat(), "model_version": 2, "status": 400, "error": "bad", "ms": 1})
    entries.append({**served("", 2, [0.5], 1), "request_id": None})  # served before request ids existed
    entries += [{"ts": NOW.isoformat(), "deployment": "taxi", "kind": "feedback", "request_id": f"a{i}",
                 "labels": truth[f"a{i}"]} for i in range(30)]
    entries.append({"ts": NOW.isoformat(), "kind": "feedback", "request_id": "a0", "labels": [1 - truth["a0"][0], 0]})
    write_log(log, entries)
    outcomes = tmp_path / "outcomes"
    (outcomes / "day1").mkdir(parents=True)
    (outcomes / "day1" / "labels.csv").write_text(
        "request_id,row,label\n" + "".join(f"b{i},0,{truth[f'b{i}'][0]}\n" for i in range(20))
        + "ghost,0,1\nb1,0,1\n,0,1\nb2,zero,1\n")
    (outcomes / "day1" / "more.jsonl").write_text(
        "".join(json.dumps({"request_id": f"b{i}", "label": truth[f"b{i}"][0]}) + "\n" for i in range(20, 40))
        + "{not json\n" + json.dumps({"request_id": "b3", "label": None}) + "\n")
    (outcomes / "notes.txt").write_text("ignored: not an outcome file")
    return {"log": log, "outcomes": outcomes, "truth": truth, "entries": entries}


def test_the_join_counts_what_it_cannot_use_and_loses_nothing(traffic):
    before = (traffic["log"] / "2026-12-05.jsonl").read_bytes()
    report = model_quality(str(traffic["log"]), QualityGate(min_labels=20, max_drop=0.05),
                           blessed={1: 0.8, 2: 0.8}, feedback_root=str(traffic["outcomes"]), now=NOW)
    join = report["join"]
    assert join["served_rows"] == 100 and join["rows_without_request_id"] == 1
    assert join["labelled_rows"] == 100 and join["unknown_ids"] == 1  # ghost
    assert join["duplicates"] == 3 and join["conflicting_duplicates"] == 1  # a0 row 0 (conflicting), a0 row 1, b1
    assert join["malformed"] == 4 and join["outcome_files"] == 2
    assert any("labels.csv:24: no request_id" in p for p in join["malformed_places"])
    assert any("row 'zero' is not a whole number" in p for p in join["malformed_places"])
    assert any("more.jsonl:21: not JSON" in p for p in join["malformed_places"])
    assert (traffic["log"] / "2026-12-05.jsonl").read_bytes() == before  # read only


def test_each_version_is_judged_on_its_own_rows_and_the_value_is_the_metric_of_those_rows(traffic):
    report = model_quality(str(traffic["log"]), QualityGate(min_labels=20, max_drop=0.05),
                           blessed={1: 0.8, 2: 0.8}, feedback_root=str(traffic["outcomes"]), now=NOW)
    v1, v2 = report["versions"]["1"], report["versions"]["2"]
    rows1 = [(p[0], traffic["truth"][e["request_id"]][i]) for e in traffic["entries"] if e.get("model_version") == 1
             and e.get("kind") != "feedback" for i, p in enumerate(e["predictions"])]
    assert v1["samples"] == 60 and v1["value"] == pytest.approx(pairwise_auc(*zip(*rows1)))
    assert v1["status"] == "decayed" and v1["drop"] == pytest.approx(0.8 - v1["value"])
    assert v2["samples"] == 40 and v2["value"] == 1.0 and v2["status"] == "ok"
    assert report["status"] == "decayed" and v1["series"] and all(0 <= p["value"] <= 1 for p in v1["series"])


def test_a_window_leaves_older_predictions_out_and_says_their_labels_were_outside(traffic):
    report = model_quality(str(traffic["log"]), QualityGate(min_labels=20), blessed={},
                           feedback_root=str(traffic["outcomes"]), minutes=30, now=NOW)
    assert list(report["versions"]) == ["2"] and report["join"]["outside_window"] == 60
    assert report["versions"]["2"]["blessed_value"] is None and report["versions"]["2"]["status"] == "ok"


def test_too_few_labels_is_said_never_a_false_alarm(traffic):
    report = model_quality(str(traffic["log"]), QualityGate(min_labels=1000), blessed={1: 0.99, 2: 0.99}, now=NOW)
    assert report["status"] == "insufficient_labels"
    assert report["versions"]["2"]["reason"] == "0 labelled prediction(s), at least 1000 are needed"


def test_outcome_files_on_any_fsspec_location():
    fs = fsspec.filesystem("memory")
    fs.pipe("/labels/2026/x.csv", b"request_id,label\nr1,1\nr2,Adelie\n")
    labels = read_labels("memory:///labels", None)
    assert labels.by_key == {("r1", 0): 1.0, ("r2", 0): "Adelie"} and labels.files == 1
    assert read_labels("memory:///nowhere", None).files == 0


def test_a_csv_without_the_columns_is_named(tmp_path):
    (tmp_path / "x.csv").write_text("id,truth\n1,1\n")
    labels = read_labels(str(tmp_path), None)
    assert labels.malformed == 1 and "has no request_id and label columns" in labels.places[0]


def test_the_report_and_its_plot(traffic, tmp_path):
    report = model_quality(str(traffic["log"]), QualityGate(min_labels=20), blessed={1: 0.8},
                           feedback_root=str(traffic["outcomes"]), now=NOW)
    paths = write_report(report, tmp_path / "reports", "20261205T120000")
    saved = json.loads(open(paths["report"]).read())
    assert saved["versions"]["1"]["status"] == "decayed" and saved["plot"] == paths["plot"]
    svg = open(paths["plot"]).read()
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 and "v1: decayed" in svg
    assert "stroke-dasharray" in svg  # v1's blessed value


def test_the_plot_escapes_names():
    report = {"metric": "<script>", "versions": {}}
    assert "<script>" not in quality_svg(report) and "&lt;script&gt;" in quality_svg(report)


def test_the_status_is_that_of_the_version_serving_now(traffic):
    common = dict(blessed={1: 0.8, 2: 0.8}, feedback_root=str(traffic["outcomes"]), now=NOW)
    gate = QualityGate(min_labels=20)
    assert model_quality(str(traffic["log"]), gate, serving=2, **common)["status"] == "ok"  # v1's decay: history
    assert model_quality(str(traffic["log"]), gate, serving=1, **common)["status"] == "decayed"
    assert model_quality(str(traffic["log"]), gate, serving=3, **common)["status"] == "insufficient_labels"


@pytest.mark.parametrize("names, key, vector, columns", [
    (["probabilities"], None, False, [0]),
    (["a", "b"], "b", False, [1]),
    (["outputs_0", "outputs_1", "outputs_2"], None, True, [0, 1, 2]),  # the server's split of a width-3 output
    (["outputs_2", "logits", "outputs_0", "outputs_1"], "outputs", True, [2, 3, 0]),
    (["scores"], None, True, [0]),
])
def test_the_prediction_columns_of_a_logged_row(names, key, vector, columns):
    from airflow_mlops.serving.quality import prediction_columns

    assert prediction_columns(names, key, vector) == columns


def test_a_multiclass_model_is_judged_on_its_split_score_columns(tmp_path):
    entries = [{"ts": NOW.isoformat(), "model_version": 1, "request_id": f"r{i}",
                "names": ["outputs_0", "outputs_1", "outputs_2"], "predictions": [[0.1, 0.7, 0.2]]} for i in range(4)]
    write_log(tmp_path / "log", entries)
    (tmp_path / "truth").mkdir()
    (tmp_path / "truth" / "t.csv").write_text("request_id,label\nr0,1\nr1,1\nr2,0\nr3,1\n")
    report = model_quality(str(tmp_path / "log"), QualityGate("multiclass", min_labels=1), blessed={},
                           feedback_root=str(tmp_path / "truth"), now=NOW)
    assert report["versions"]["1"]["value"] == 0.75 and report["versions"]["1"]["samples"] == 4


def test_feedback_lines_that_do_not_fit_their_request_are_refused_whole_and_counted(tmp_path):
    """Lines a server wrote before it checked labels (or another worker took): a label count other than the
    request's rows, too many labels, a non-finite label, an outcome row beyond the request: counted, never fatal."""
    from airflow_mlops.serving.quality import MAX_FEEDBACK_LABELS

    at = "2026-12-07T10:00:00+00:00"
    lines = [
        {"ts": at, "model_version": 1, "request_id": "two", "names": ["p"], "predictions": [[0.9], [0.1]]},
        {"ts": at, "model_version": 1, "request_id": "one", "names": ["p"], "predictions": [[0.8]]},
        {"ts": at, "kind": "feedback", "request_id": "two", "labels": [1, 0, 1]},
        {"ts": at, "kind": "feedback", "request_id": "one", "labels": [1] * (MAX_FEEDBACK_LABELS + 1)},
        {"ts": at, "kind": "feedback", "request_id": "ghost", "labels": [0] * (MAX_FEEDBACK_LABELS + 1)},
        {"ts": at, "kind": "feedback", "request_id": "one", "labels": ["NaN"]},
        {"ts": at, "kind": "feedback", "request_id": "two", "labels": [1, 0]},
    ]
    (tmp_path / "2026-12-07.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    outcomes = tmp_path / "outcomes"
    outcomes.mkdir()
    (outcomes / "late.csv").write_text("request_id,row,label\none,0,1\none,3,1\n")
    gate = QualityGate(model_type="binary", metric="BinaryAccuracy", min_labels=1)
    report = model_quality(str(tmp_path), gate, blessed={}, feedback_root=str(outcomes))
    join = report["join"]
    assert join["labelled_rows"] == 3  # "two" from its good line, "one" from the outcome file
    assert join["malformed"] == 5, join["malformed_places"]
    places = "\n".join(join["malformed_places"])
    assert "feedback two: 3 labels for a request of 2 rows" in places
    assert f"feedback one: {MAX_FEEDBACK_LABELS + 1} labels for a request of 1 rows" in places
    assert f"feedback ghost: {MAX_FEEDBACK_LABELS + 1} labels for a request of at most" in places
    assert "label 'NaN' unusable" in places and "outcome of one row 3: the request had 1 row(s)" in places
    assert report["versions"]["1"]["value"] == 1.0
