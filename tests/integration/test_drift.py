"""Drift detection with the real Alibi Detect in the drift runtime (fixed seeds)."""

from __future__ import annotations

import json
import random

import pytest

from airflow_mlops.exceptions import RuntimeStepFailed
from airflow_mlops.hooks.runtime import RuntimeHook

pytestmark = pytest.mark.integration
FEATURES = {"fare": "numeric", "trip_miles": "numeric", "payment_type": "categorical"}


def sample(n: int, seed: int, fare_shift: float = 0.0, cash: float = 0.5) -> list[dict]:
    rng = random.Random(seed)
    return [{"fare": rng.gauss(12 + fare_shift, 4), "trip_miles": rng.expovariate(1 / 3),
             "payment_type": "Cash" if rng.random() < cash else "Credit Card"} for _ in range(n)]


@pytest.fixture(scope="module")
def drift(tmp_path_factory):
    hook = RuntimeHook(runtime="drift", mlops_conn_id=None, state_dir=str(tmp_path_factory.mktemp("drift")))
    return lambda **params: hook.run_step("drift.detect", {"features": FEATURES, **params})


REFERENCE = sample(2000, seed=1)


def test_same_distribution_is_no_drift(drift):
    result = drift(reference=REFERENCE, window=sample(500, seed=2))
    assert result["status"] == "ok" and result["is_drift"] is False and result["drifted_features"] == []
    assert set(result["features"]) == set(FEATURES) and all(0 <= f["p_val"] <= 1 for f in result["features"].values())


@pytest.mark.parametrize("window, drifted", [
    (sample(500, seed=3, fare_shift=4), ["fare"]),
    (sample(500, seed=4, cash=0.9), ["payment_type"]),
])
def test_shifted_features_and_only_those_drift(drift, window, drifted):
    result = drift(reference=REFERENCE, window=window)
    assert result["is_drift"] is True and result["drifted_features"] == drifted


@pytest.mark.parametrize("detector", ["KSDrift", "CVMDrift"])
def test_other_univariate_detectors(drift, detector):
    result = drift(reference=REFERENCE, window=sample(500, seed=3, fare_shift=4), detector=detector)
    assert result["is_drift"] and "fare" in result["drifted_features"]


def test_small_window_is_insufficient_data_not_a_failure(drift):
    result = drift(reference=REFERENCE, window=sample(10, seed=5), min_window=50)
    assert result["status"] == "insufficient_data" and result["is_drift"] is False
    assert "10 requests in the window; at least 50" in result["message"]


def test_dirty_window_is_encoded_and_reported(drift):
    window = sample(200, seed=6)
    window[0]["fare"] = float("nan")
    window[1]["fare"] = "free"
    del window[2]["trip_miles"]
    window[3]["payment_type"] = "Bitcoin"
    result = drift(reference=REFERENCE, window=window)
    assert result["status"] == "ok"
    assert result["data_issues"] == {"fare": {"not_a_number": 2}, "trip_miles": {"missing": 1},
                                     "payment_type": {"unseen_category": 1}}


def test_detector_is_saved_once_per_version_and_reused(drift, tmp_path):
    first = drift(reference=REFERENCE, window=sample(500, seed=3, fare_shift=4), detector_dir=str(tmp_path / "v1"))
    assert first["detector_reused"] is False and (tmp_path / "v1" / "encoding.json").exists()
    again = drift(reference=[], window=sample(500, seed=3, fare_shift=4), detector_dir=str(tmp_path / "v1"))
    assert again["detector_reused"] is True and again["drifted_features"] == first["drifted_features"]


@pytest.mark.parametrize("params, message", [
    ({"detector": "Magic"}, "detector must be one of"),
    ({"correction": "none"}, "correction must be one of"),
    ({"p_val": 2}, r"p_val must be in \(0, 1\)"),
])
def test_bad_options_are_named(drift, params, message):
    with pytest.raises(RuntimeStepFailed, match=message):
        drift(reference=REFERENCE, window=sample(100, seed=7), **params)


def write_log(directory, records: list[dict], version: int = 1) -> str:
    """A prediction log as the model server writes it: one JSON line per request (10 instances)."""
    from datetime import datetime, timezone

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc).isoformat()
    (directory / "server-1.jsonl").write_text("".join(
        json.dumps({"ts": now, "model_version": version, "instances": records[i:i + 10]}) + "\n"
        for i in range(0, len(records), 10)))
    return str(directory)


def test_files_in_png_out_as_the_operator_calls_it(drift, tmp_path):
    reference_file = tmp_path / "reference.jsonl"
    reference_file.write_text("".join(json.dumps(r) + "\n" for r in REFERENCE))
    log = write_log(tmp_path / "log", sample(400, seed=8, fare_shift=4) + sample(5, seed=9), version=2)
    write_log(tmp_path / "log" / "other", sample(300, seed=10), version=1)  # another version's traffic
    result = drift(reference_file=str(reference_file), prediction_log=log, window_size=300, model_version=2,
                   detector_dir=str(tmp_path / "v2"), report_png=str(tmp_path / "report.png"))
    assert result["window_size"] == 300 and result["reference_size"] == len(REFERENCE)
    assert result["window_requests"] == 41 and result["window_first"] and result["window_last"]
    assert result["drifted_features"] == ["fare"]
    png = (tmp_path / "report.png").read_bytes()
    assert result["report_png"] == str(tmp_path / "report.png") and png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # reused: no reference needed any more, the PNG still has the reference to draw
    again = drift(prediction_log=log, window_size=300, model_version=2, detector_dir=str(tmp_path / "v2"),
                  report_png=str(tmp_path / "again.png"))
    assert again["detector_reused"] and again["reference_size"] == len(REFERENCE) and (tmp_path / "again.png").exists()


def test_no_drift_writes_no_png(drift, tmp_path):
    result = drift(reference=REFERENCE, window=sample(500, seed=2), report_png=str(tmp_path / "report.png"))
    assert not result["is_drift"] and "report_png" not in result and not (tmp_path / "report.png").exists()


def test_broken_reference_file_is_named(drift, tmp_path):
    bad = tmp_path / "reference.jsonl"
    bad.write_text(json.dumps(REFERENCE[0]) + "\n{not json\n")
    with pytest.raises(RuntimeStepFailed, match=r"reference.jsonl, line 2: not JSON"):
        drift(reference_file=str(bad), window=sample(100, seed=7))


def test_a_feature_empty_in_the_training_data_is_skipped_and_reported(drift):
    reference = [dict(r, census_tract=None) for r in REFERENCE]  # never filled in the training data
    window = [dict(r, census_tract=17031081500.0) for r in sample(300, seed=3, fare_shift=4)]
    result = drift(reference=reference, window=window,
                   features={**FEATURES, "census_tract": "numeric", "comment": "categorical"})
    assert result["skipped_features"] == {"census_tract": "no numeric value in the reference",
                                          "comment": "no value in the reference"}
    assert set(result["features"]) == set(FEATURES) and result["drifted_features"] == ["fare"]


def test_a_reference_with_no_value_at_all_is_named(drift):
    with pytest.raises(RuntimeStepFailed, match=r"no feature has a value in the reference \(3 records\)"):
        drift(reference=[{}, {}, {}], window=sample(100, seed=7))


def test_a_feature_of_the_schema_never_served_is_reported(drift):
    window = [{k: v for k, v in r.items() if k != "trip_miles"} for r in sample(300, seed=8)]
    result = drift(reference=REFERENCE, window=window)
    assert result["status"] == "ok" and result["unserved_features"] == ["trip_miles"]
    assert drift(reference=REFERENCE, window=sample(300, seed=9))["unserved_features"] == []


def test_features_and_kinds_of_any_schema_not_only_taxi(drift):
    """Penguin-like features: an integer feature the schema calls categorical is compared as categories."""
    rng = random.Random(11)

    def penguins(n, heavy=0.0):
        return [{"body_mass_g": int(rng.gauss(4200 + heavy, 400)), "island": rng.choice(["Biscoe", "Dream"]),
                 "year": rng.choice([2007, 2008, 2009])} for _ in range(n)]

    features = {"body_mass_g": "numeric", "island": "categorical", "year": "categorical"}
    result = drift(reference=penguins(1000), window=penguins(400, heavy=600), features=features)
    assert result["drifted_features"] == ["body_mass_g"]
    assert {n: f["kind"] for n, f in result["features"].items()} == features
