"""The data gate with real TFX under ``airflow dags test mlops_ingest``: data that must not get through.

The runs of this module share one state directory, in order:
1. a pipeline's first span is a header-only CSV: rejected at ExampleValidator naming the span and
   the count, no reference schema kept, the data Asset not announced (it used to become a 0-byte
   reference that every later span then failed against);
2. a real span is accepted and its schema becomes the reference;
3. a span with a header only, against that reference: rejected (it used to pass with "no anomalies"
   and fail later in the Trainer); the reference unchanged and still readable;

The runs on a second pipeline state (``excel``), in order:
1. a first span saved by Excel (a UTF-8 byte-order mark, CRLF): refused by CsvExampleGen, naming the file,
   before any TFX execution starts and without a retry (it used to become a reference schema with a feature
   named ``\ufeffpickup_community_area``);
2. a clean span after them is accepted and its schema, label a FLOAT, becomes the reference;
3. a reference poisoned by an older version (a byte-order mark in a feature's name): the clean span's
   two anomalies show the names apart (``'\ufeffpickup_community_area'``);
4. the training DAG refuses an EvalConfig file that does not parse at its first task, before anything is
   ingested or trained (it used to be refused at the Evaluator).

The first task's other refusals (a span that does not exist, an empty data directory, a label column empty or
constant in every row) are the same check, raised at the same place, as the byte-order mark's: each is
unit-tested in tests/operators/test_tfx.py; one run of each DAG shows where such a refusal stops a run.
"""

from __future__ import annotations

import csv

import pytest

from airflow_mlops.exceptions import RuntimeStepFailed
from airflow_mlops.utils.schema_store import ReferenceSchemaStore, schema_features

from .test_ingest_dag import dags_test, lineage, task_states, write_slice
from .own_pipeline.conftest import tries_of

pytestmark = pytest.mark.integration
PIPELINE = "chicago_taxi"  # the ingest DAG announces data only for its own pipeline


@pytest.fixture(scope="module")
def state(tmp_path_factory, airflow_home, taxi_csv):
    root = tmp_path_factory.mktemp("gate")
    header = taxi_csv.read_text().splitlines()[0]
    (root / "data" / "span-1").mkdir(parents=True)
    (root / "data" / "span-1" / "data.csv").write_text(header + "\n")
    write_slice(taxi_csv, root / "data" / "span-2" / "data.csv", 0, 600)
    (root / "data" / "span-3").mkdir()
    (root / "data" / "span-3" / "data.csv").write_text(header + "\n")
    return {"home": airflow_home, "state_dir": root / "state", "data": root / "data", "root": root}


def ingest(state, **conf):
    code, log, run_id = dags_test(state, {"pipeline_name": PIPELINE, "data_root": str(state["data"]), **conf})
    return code, log, run_id, task_states(state, "mlops_ingest", run_id)


def schemas(state) -> ReferenceSchemaStore:
    return ReferenceSchemaStore(state["state_dir"] / "schemas")


def test_a_header_only_first_span_is_rejected_and_never_becomes_the_reference(state):
    code, log, run_id, states = ingest(state, span=1)
    assert code != 0
    assert states["ExampleValidator"] == "failed" and states["announce_data"] == "upstream_failed", states
    assert "span 1 is too small to validate or train on: split eval has 0, split train has 0 example(s)" in log
    assert tries_of(log, "ExampleValidator") == 1  # not retried
    assert schemas(state).versions(PIPELINE) == [] and schemas(state).current(PIPELINE) is None


def test_a_real_span_becomes_the_reference(state):
    code, log, run_id, states = ingest(state, span=2)
    assert code == 0 and set(states.values()) == {"success"}, log[-4000:]
    reference = schemas(state).current(PIPELINE)
    assert reference.version == 1 and len(schema_features(reference.schema_file)) > 10


def test_an_empty_span_against_the_reference_is_rejected_and_the_reference_is_unchanged(state):
    before = schemas(state).current(PIPELINE).schema_file.read_bytes()
    code, log, run_id, states = ingest(state, span=3)
    assert code != 0
    assert states["ExampleValidator"] == "failed" and states["announce_data"] == "upstream_failed", states
    assert "span 3 is too small to validate or train on" in log
    assert schemas(state).versions(PIPELINE) == [1]
    assert schemas(state).current(PIPELINE).schema_file.read_bytes() == before


@pytest.fixture(scope="module")
def excel(tmp_path_factory, airflow_home, taxi_csv):
    root = tmp_path_factory.mktemp("excel")
    bom = write_slice(taxi_csv, root / "data" / "span-1" / "data.csv", 0, 300)
    with open(bom, newline="") as handle:
        rows = list(csv.reader(handle))
    with open(bom, "w", newline="", encoding="utf-8-sig") as handle:  # as Excel's "CSV UTF-8" saves it
        csv.writer(handle, lineterminator="\r\n").writerows(rows)
    write_slice(taxi_csv, root / "data" / "span-3" / "data.csv", 0, 600)
    return {"home": airflow_home, "state_dir": root / "state", "data": root / "data", "root": root}


def refused_at_the_first_task(state, run, message, dag_id="mlops_ingest", pipeline=PIPELINE):
    code, log, run_id = run
    assert code != 0
    states = task_states(state, dag_id, run_id)
    assert states["CsvExampleGen"] == "failed" and states["StatisticsGen"] == "upstream_failed", states
    assert message in log, log[-6000:]
    assert tries_of(log, "CsvExampleGen") == 1  # not retried
    with pytest.raises(RuntimeStepFailed, match="ML Metadata has no pipeline run"):  # nothing ingested
        lineage(state, run_id, pipeline=pipeline)
    assert schemas(state).versions(pipeline) == []


def test_a_byte_order_mark_is_refused_at_the_first_task_naming_the_file(excel):
    code, log, run_id, _ = ingest(excel, span=1)
    path = excel["data"] / "span-1" / "data.csv"
    refused_at_the_first_task(excel, (code, log, run_id),
                              f"CsvExampleGen: {path} starts with a UTF-8 byte-order mark (Excel's 'CSV UTF-8' writes "
                              "one), which TFX would keep in its first column's name "
                              "('\\ufeffpickup_community_area'): save the file without it")


def test_a_clean_span_after_them_becomes_the_reference_with_a_numeric_label(excel):
    code, log, run_id, states = ingest(excel, span=3)
    assert code == 0 and set(states.values()) == {"success"}, log[-4000:]
    reference = schemas(excel).current(PIPELINE)
    assert reference.version == 1 and reference.meta["run_id"] == run_id
    features = schema_features(reference.schema_file)
    assert "pickup_community_area" in features and "tips" in features
    assert 'name: "tips"\n  type: FLOAT' in reference.schema_file.read_text()


def test_anomalies_show_the_invisible_characters_of_a_poisoned_reference(excel, tmp_path):
    """A reference an older version kept from a file with a byte-order mark: the clean span's anomalies name
    ``'\\ufeffpickup_community_area'`` and ``pickup_community_area``, not two names that print alike."""
    text = schemas(excel).current(PIPELINE).schema_file.read_text()
    poisoned = tmp_path / "schema.pbtxt"  # a byte-order mark in a name, as TFX writes it (octal escapes)
    poisoned.write_text(text.replace('name: "pickup_community_area"', 'name: "\\357\\273\\277pickup_community_area"'))
    assert poisoned.read_text() != text
    schemas(excel).promote(PIPELINE, poisoned)
    code, log, run_id, states = ingest(excel, span=3)
    assert code != 0 and states["ExampleValidator"] == "failed", states
    assert "feature '\\ufeffpickup_community_area': SCHEMA_MISSING_COLUMN" in log, log[-6000:]
    assert "feature pickup_community_area: SCHEMA_NEW_COLUMN" in log
    assert "feature \ufeff" not in log


def test_the_training_dag_refuses_a_broken_eval_config_at_its_first_task(excel, tmp_path):
    config = tmp_path / "eval_config.pbtxt"
    config.write_text('model_specs { label_key: "tips_xf" \n')  # the closing brace forgotten
    run = dags_test(excel, {"pipeline_name": "gate_train", "data_root": str(excel["data"]), "span": 3,
                            "eval_config": str(config)}, dag_id="mlops_train_deploy")
    refused_at_the_first_task(excel, run, f"CsvExampleGen: the run cannot succeed: Evaluator: eval_config {config} is "
                              "not a TFMA EvalConfig (JSON or pbtxt): 1:26 : Expected \"}\".; correct the file, or leave "
                              "eval_config empty for the generated gate", dag_id="mlops_train_deploy",
                              pipeline="gate_train")
