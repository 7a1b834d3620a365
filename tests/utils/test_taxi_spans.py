"""The synthetic shifted taxi span: covariate drift and a swapped tip concept, deterministic."""

from __future__ import annotations

from airflow_mlops.utils.taxi_spans import read_rows, shifted, taxi_rows, write_span

HEADER = ["fare", "trip_miles", "payment_type", "tips", "company"]
ROWS = [
    {"fare": "10.00", "trip_miles": "2.0", "payment_type": "Credit Card", "tips": "3.00", "company": "A"},
    {"fare": "20.00", "trip_miles": "", "payment_type": "Cash", "tips": "0.00", "company": "B"},
    {"fare": "", "trip_miles": "1.0", "payment_type": "Unknown", "tips": "1.00", "company": ""},
]


def test_shift_scales_features_and_swaps_the_tip_concept():
    out = shifted(ROWS)
    assert [r["fare"] for r in out] == ["14.00", "28.00", ""]
    assert [r["trip_miles"] for r in out] == ["3.00", "", "1.50"]
    assert out[0]["tips"] == "0.00"  # card trips: no tips any more
    assert out[1]["tips"] == f"{28 * 0.3:.2f}"  # cash trips: a card trip's tip ratio (the only one: 0.3)
    assert out[2]["tips"] == "1.40" and out[2]["company"] == ""
    assert shifted(ROWS, seed=1) == shifted(ROWS, seed=1) and ROWS[0]["fare"] == "10.00"  # input untouched


def test_write_and_read_back(tmp_path):
    path = write_span(tmp_path, 2, HEADER, ROWS)
    assert path == tmp_path / "span-2" / "data.csv" and not list(tmp_path.glob("span-2/*.partial"))
    assert read_rows(path) == (HEADER, ROWS)


def test_taxi_rows_are_shuffled_and_leave_out_the_lone_census_tract(tmp_path):
    rows = [dict(ROWS[0], company=str(i), pickup_census_tract="") for i in range(50)]
    rows[7]["pickup_census_tract"] = "17031081500"
    path = write_span(tmp_path, 1, [*HEADER, "pickup_census_tract"], rows)
    header, out = taxi_rows(path, seed=1)
    assert len(out) == 49 and all(not r["pickup_census_tract"] for r in out)
    assert [r["company"] for r in out] != [r["company"] for r in rows if not r["pickup_census_tract"]]
    assert taxi_rows(path, seed=1) == (header, out)
