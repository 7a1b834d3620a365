"""Request parsing and checking of the model server (pure parts; the server itself: tests/integration)."""

from __future__ import annotations

import pytest

from airflow_mlops.runtime_side.model_server.model import BadRequest, check_types, rows_from_request, tf_error_summary

SPEC = {"fare": {"dtype": "float", "required": True}, "company": {"dtype": "string", "required": False},
        "trip_seconds": {"dtype": "int", "required": True}}


@pytest.mark.parametrize("request_body", [
    {"data": {"names": ["fare", "trip_seconds"], "ndarray": [[1.5, 60], [2, 120]]}},
    {"jsonData": {"instances": [{"fare": 1.5, "trip_seconds": 60}, {"fare": 2, "trip_seconds": 120}]}},
    {"jsonData": [{"fare": 1.5, "trip_seconds": 60}, {"fare": 2, "trip_seconds": 120}]},
])
def test_both_request_forms_give_records(request_body):
    records = rows_from_request(request_body)
    assert records == [{"fare": 1.5, "trip_seconds": 60}, {"fare": 2, "trip_seconds": 120}]
    check_types(records, SPEC)


def test_one_record():
    assert rows_from_request({"jsonData": {"fare": 1.0, "trip_seconds": 1}}) == [{"fare": 1.0, "trip_seconds": 1}]


@pytest.mark.parametrize("request_body, message, status", [
    ([1, 2], "must be a JSON object", 400),
    ({"strData": "x"}, "neither 'data' nor 'jsonData'", 400),
    ({"data": {"ndarray": [[1]]}}, "data.names must list", 400),
    ({"data": {"names": ["a"], "tensor": {}}}, "must hold 'ndarray'", 400),
    ({"data": {"names": ["a", "b"], "ndarray": [[1, 2], [3]]}}, "row 1 has 1 values, data.names has 2", 400),
    ({"data": {"names": ["a"], "ndarray": [1, 2]}}, "list of rows", 400),
    ({"jsonData": {"instances": []}}, "empty batch", 400),
    ({"jsonData": "fare=1"}, "jsonData must be a record", 400),
    ({"jsonData": {"instances": [{"a": 1}] * 11}}, "11 rows; at most 10", 413),
])
def test_malformed_requests_are_named(request_body, message, status):
    with pytest.raises(BadRequest, match=message) as info:
        rows_from_request(request_body, max_rows=10)
    assert info.value.status_code == status


@pytest.mark.parametrize("record, message", [
    ({"trip_seconds": 60}, "row 0: feature 'fare' is missing"),
    ({"fare": "cheap", "trip_seconds": 60}, "row 0: feature 'fare' must be float, got str 'cheap'"),
    ({"fare": 1.0, "trip_seconds": 60.5}, "feature 'trip_seconds' must be int, got float"),
    ({"fare": 1.0, "trip_seconds": True}, "feature 'trip_seconds': a boolean is not a feature value"),
    ({"fare": float("nan"), "trip_seconds": 1}, "feature 'fare': nan is not a finite number"),
    ({"fare": float("inf"), "trip_seconds": 1}, "feature 'fare': inf is not a finite number"),
    ({"fare": 1e300, "trip_seconds": 1}, r"feature 'fare': 1e\+300 is beyond the float32 range"),
    ({"fare": 1.0, "trip_seconds": 2**63}, "feature 'trip_seconds': 9223372036854775808 is beyond the int64 range"),
    ({"fare": 1.0, "trip_seconds": 1e30}, r"feature 'trip_seconds': 1e\+30 is beyond the int64 range"),
    ({"fare": 1.0, "trip_seconds": 1, "company": "\ud800"}, "feature 'company': the string is not valid Unicode"),
    ({"fare": 1.0, "trip_seconds": 1, "company": ["a"]}, "feature 'company' must be string, got list"),
    ({"fare": 1.0, "trip_seconds": 1, "company": 7}, "feature 'company' must be string, got int 7"),
])
def test_type_errors_name_the_feature_and_row(record, message):
    with pytest.raises(BadRequest, match=message):
        check_types([record], SPEC)


def test_optional_and_missing_features_pass_and_integers_are_floats():
    check_types([{"fare": 1, "trip_seconds": 2, "company": None}], SPEC)
    check_types([{"fare": 1.0, "trip_seconds": 60.0}], SPEC)  # an integral float is an int (SeldonClient sends those)
    check_types([{"anything": "goes"}], None)  # a model without a feature spec: TensorFlow decides


@pytest.mark.parametrize(("record", "message"), [
    ({"x": float("nan")}, "feature 'x': nan is not a finite number"),
    ({"x": 1e39}, "beyond the float32 range"),
    ({"x": -(2**64)}, "beyond the int64 range"),
    ({"x": "\udfff"}, "not valid Unicode"),
    ({"x": {"nested": 1}}, r"feature 'x': unsupported value \{'nested': 1\}"),
    ({"x": True}, "a boolean is not a feature value"),
])
def test_without_a_feature_spec_values_are_still_checked(record, message):
    with pytest.raises(BadRequest, match=message):
        check_types([record], None)


def test_non_finite_outputs_become_null_and_are_counted():
    from airflow_mlops.runtime_side.model_server.model import finite_or_none

    assert finite_or_none([0.5, float("nan"), float("inf"), -float("inf")]) == ([0.5, None, None, None], 3)


def test_an_unknown_feature_is_named_with_the_features_the_model_reads():
    with pytest.raises(BadRequest, match=r"row 1: unknown feature 'tips'; the model reads: company, fare, "):
        check_types([{"fare": 1.0, "trip_seconds": 2}, {"fare": 1.0, "trip_seconds": 2, "tips": 0.5}], SPEC)
    with pytest.raises(BadRequest, match=r"row 0: unknown features 'a', 'b'"):
        check_types([{"fare": 1.0, "trip_seconds": 2, "b": 1, "a": 2}], SPEC)


def test_tf_error_summary_keeps_the_feature_line():
    message = "Graph execution error:\n\nDetected at node ParseExample\n  File ...\nName: <unknown>, Feature: fare (data type: float) is required but could not be found.\n\t [[{{node ParseExample}}]]"
    assert tf_error_summary(message) == "Feature: fare (data type: float) is required but could not be found."
    assert tf_error_summary("one\ntwo") == "two"


def test_a_client_request_id_is_kept_and_one_is_made_otherwise():
    from airflow_mlops.runtime_side.model_server.model import request_id

    assert request_id({"meta": {"puid": "trip-42"}, "jsonData": {}}) == "trip-42"
    made = {request_id({"jsonData": {}}) for _ in range(100)}
    assert len(made) == 100 and all(len(r) == 32 for r in made)
    for bad in (7, "x" * 129, "a\nb"):
        with pytest.raises(BadRequest, match="meta.puid must be a printable string of at most 128"):
            request_id({"meta": {"puid": bad}})


@pytest.mark.parametrize("body, labels", [
    ({"request": {"meta": {"puid": "r1"}}, "truth": {"data": {"ndarray": [1, 0]}}}, [1, 0]),
    ({"request": {"meta": {"puid": "r1"}}, "truth": {"data": {"ndarray": [[1.0], [0.0]]}}}, [1.0, 0.0]),
    ({"response": {"meta": {"puid": "r1"}}, "truth": {"jsonData": {"labels": ["Adelie"]}}}, ["Adelie"]),
    ({"request": {"meta": {"puid": "r1"}}, "truth": {"data": {"tensor": {"shape": [1], "values": [3.5]}}}}, [3.5]),
])
def test_feedback_names_the_request_and_its_labels(body, labels):
    from airflow_mlops.runtime_side.model_server.model import feedback_entry

    assert feedback_entry(body) == {"request_id": "r1", "labels": labels}


@pytest.mark.parametrize("body, message", [
    ([1], "must be a JSON object"),
    ({"truth": {"data": {"ndarray": [1]}}}, "names no prediction: send the prediction's meta.puid"),
    ({"request": {"meta": {"puid": "r"}}}, "must be a Seldon message"),
    ({"request": {"meta": {"puid": "r"}}, "truth": {"strData": "1"}}, "neither 'data' nor 'jsonData'"),
    ({"request": {"meta": {"puid": "r"}}, "truth": {"data": {"ndarray": []}}}, "holds no labels"),
    ({"request": {"meta": {"puid": "r"}}, "truth": {"data": {"ndarray": [[1, 2]]}}}, r"row 0: \[1, 2\] is not a label"),
    ({"request": {"meta": {"puid": "r"}}, "truth": {"data": {"ndarray": [True]}}}, "row 0: True is not a label"),
])
def test_malformed_feedback_is_named(body, message):
    from airflow_mlops.runtime_side.model_server.model import feedback_entry

    with pytest.raises(BadRequest, match=message):
        feedback_entry(body)


FEEDBACK = {"request": {"meta": {"puid": "r"}}}


@pytest.mark.parametrize("labels, message", [
    # what seldon-core's protobuf round trip makes of NaN, Infinity and 1e309 before the check sees them
    (["NaN"], "row 0: 'NaN' is not a finite number"),
    ([1, "Infinity"], "row 1: 'Infinity' is not a finite number"),
    (["-Infinity"], "row 0: '-Infinity' is not a finite number"),
    ([float("nan")], "row 0: nan is not a finite number"),
    ([1e309], "row 0: inf is not a finite number"),
    ([1e300], r"row 0: 1e\+300 is beyond the float32 range"),
    (["x" * 5000], r"row 0: 'x{80}'… \(5000 characters\) is not a label"),
    ([" "], "row 0: ' ' is not a label"),
])
def test_feedback_labels_that_would_poison_the_quality_check_are_refused(labels, message):
    from airflow_mlops.runtime_side.model_server.model import feedback_entry

    with pytest.raises(BadRequest, match=message) as raised:
        feedback_entry({**FEEDBACK, "truth": {"data": {"ndarray": labels}}})
    assert raised.value.status_code == 400 and len(str(raised.value)) < 300


def test_feedback_labels_must_be_one_per_row_of_the_prediction():
    from airflow_mlops.runtime_side.model_server.model import feedback_entry

    with pytest.raises(BadRequest, match=r"the prediction 'r' had 2 row\(s\): send 2 label\(s\), one per row \(got 3\)"):
        feedback_entry({**FEEDBACK, "truth": {"data": {"ndarray": [1, 0, 1]}}}, rows_of={"r": 2})
    sent_back = {"request": {"meta": {"puid": "r"}, "jsonData": {"instances": [{"a": 1}, {"a": 2}]}},
                 "truth": {"data": {"ndarray": [1]}}}  # the request sent back says 2 rows: it wins
    with pytest.raises(BadRequest, match=r"had 2 row\(s\)"):
        feedback_entry(sent_back, rows_of={"r": 1})
    assert feedback_entry({**FEEDBACK, "truth": {"data": {"ndarray": [1, 0]}}}, rows_of={"r": 2})["labels"] == [1, 0]
    # a prediction this process did not answer (another worker, a restart): taken, the quality join checks it
    assert feedback_entry({**FEEDBACK, "truth": {"data": {"ndarray": [1, 0, 1]}}}, rows_of={})["labels"] == [1, 0, 1]


def test_more_labels_than_a_request_can_have_are_a_413_before_they_are_read():
    from airflow_mlops.runtime_side.model_server.model import feedback_entry

    with pytest.raises(BadRequest, match="holds 1000001 labels; a request has at most 10000 rows") as raised:
        feedback_entry({**FEEDBACK, "truth": {"data": {"ndarray": [float("nan")] * 1_000_001}}})
    assert raised.value.status_code == 413


@pytest.mark.parametrize("record", [
    {"fare": "x" * 1_000_000}, {"x" * 1_000_000: 1.0}, {"trip_seconds": 10 ** 4000}, {"fare": ["y" * 1_000_000]},
])
def test_error_messages_quote_at_most_80_characters_of_a_value(record):
    spec = {"fare": {"dtype": "float", "required": False}, "trip_seconds": {"dtype": "int", "required": False}}
    with pytest.raises(BadRequest) as raised:
        check_types([record], spec)
    assert len(str(raised.value)) < 400 and "characters)" in str(raised.value)
