"""TFX Transform as an Airflow task, with the taxi module file shipped with the provider."""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_ingest_dag import TEST_DAGS, dags_test, lineage, task_states, taxi_span_state

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def state(tmp_path_factory, airflow_home, taxi_csv):
    return taxi_span_state(tmp_path_factory, airflow_home, taxi_csv, "transform", rows=800)


def test_transform_runs_the_default_taxi_module(state):
    code, log, run_id = dags_test(state, {"pipeline_name": "it_transform", "data_root": str(state["data"])},
                                  dag_id="test_ingest_transform", dags_folder=TEST_DAGS)
    assert code == 0, log[-4000:]
    runs = lineage(state, run_id, pipeline="it_transform")
    transform = runs["Transform"]
    assert transform["state"] == "COMPLETE"
    assert [a["id"] for a in transform["inputs"]["examples"]] == [a["id"] for a in runs["CsvExampleGen"]["outputs"]["examples"]]
    assert [a["id"] for a in transform["inputs"]["schema"]] == [a["id"] for a in runs["SchemaGen"]["outputs"]["schema"]]
    graph = Path(transform["outputs"]["transform_graph"][0]["uri"])
    assert (graph / "transform_fn" / "saved_model.pb").is_file()
    schema = (graph / "transformed_metadata" / "schema.pbtxt").read_text()
    for feature in ("big_tipper", "fare_xf", "payment_type_xf", "pickup_latitude_xf", "trip_start_hour_xf"):
        assert f'name: "{feature}"' in schema, feature
    transformed = Path(transform["outputs"]["transformed_examples"][0]["uri"])
    assert list(transformed.glob("Split-train/*.gz")) and list(transformed.glob("Split-eval/*.gz"))


def test_broken_module_file_fails_transform_clearly(state, tmp_path):
    module = tmp_path / "broken.py"
    module.write_text("def preprocessing_fn(inputs):\n    return {'x': inputs['no_such_feature']}\n")
    code, log, run_id = dags_test(
        state, {"pipeline_name": "it_transform", "data_root": str(state["data"]), "module_file": str(module)},
        dag_id="test_ingest_transform", dags_folder=TEST_DAGS,
    )
    assert code != 0
    # named with the data's columns, and not retried (the feature will not appear on a retry)
    assert "Transform: the module's preprocessing_fn reads feature 'no_such_feature', which the data does not " \
           "have (its columns: company, " in log
    assert "InvalidInput" in log
    assert task_states(state, "test_ingest_transform", run_id)["Transform"] == "failed"


def test_missing_module_file_is_an_argument_error(state, tmp_path):
    code, log, _ = dags_test(
        state, {"pipeline_name": "it_transform", "data_root": str(state["data"]),
                "module_file": str(tmp_path / "nope.py")},
        dag_id="test_ingest_transform", dags_folder=TEST_DAGS,
    )
    assert code != 0
    assert f"module_file '{tmp_path / 'nope.py'}' does not exist" in log
