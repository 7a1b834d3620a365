"""The data gate with real TFX under ``airflow dags test mlops_ingest``: data that must not get through.

The runs of this module share one state directory, in order:
1. a pipeline's first span is a header-only CSV: rejected at ExampleValidator naming the span and
   the count, no reference schema kept, the data Asset not announced (it used to become a 0-byte
   reference that every later span then failed against);
2. a real span is accepted and its schema becomes the reference;
3. a span with a header only, against that reference: rejected (it used to pass with "no anomalies"
   and fail later in the Trainer); the reference unchanged and still readable;
4. a span that does not exist and an empty data directory: refused by CsvExampleGen before any TFX
   execution starts, naming the spans that exist, without a retry.
"""

from __future__ import annotations

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
    (root / "empty").mkdir()
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


@pytest.mark.parametrize(("conf", "message"), [
    ({"span": 7}, "span 7 does not exist under {data} (its spans: 1, 2, 3); leave span empty for the latest"),
    ({"data_root": "{empty}"}, "{empty} holds no data file"),
])
def test_a_missing_span_or_empty_directory_fails_before_any_tfx_execution(state, conf, message):
    conf = {k: v.format(empty=state["root"] / "empty") if isinstance(v, str) else v for k, v in conf.items()}
    code, log, run_id, states = ingest(state, **conf)
    assert code != 0 and states["CsvExampleGen"] == "failed", states
    assert message.format(data=state["data"], empty=state["root"] / "empty") in log
    assert tries_of(log, "CsvExampleGen") == 1  # not retried
    with pytest.raises(RuntimeStepFailed, match="ML Metadata has no pipeline run"):  # nothing started or RUNNING
        lineage(state, run_id, pipeline=PIPELINE)
