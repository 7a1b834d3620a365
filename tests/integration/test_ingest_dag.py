"""The ingest DAG end to end: real Airflow (`airflow dags test`), the real TFX runtime, real ML Metadata.

Runs on slices of the Chicago taxi data shipped in the TFX wheel. The tests of this module
share one provider state directory and run in order: span 1 is accepted and its schema
becomes the reference, span 2 is validated against it, a broken span 3 is rejected.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from airflow_mlops.hooks.runtime import RuntimeHook
from airflow_mlops.utils.schema_store import ReferenceSchemaStore

from ..conftest import BIN, airflow_env

pytestmark = pytest.mark.integration
PIPELINE = "it_taxi"
TEST_DAGS = Path(__file__).parent / "dags"


def write_slice(source: Path, dest: Path, start: int, stop: int, mutate=None) -> Path:
    with open(source, newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1 + start:1 + stop]
    if mutate:
        header, body = mutate(header, body)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "w", newline="") as handle:
        csv.writer(handle).writerows([header, *body])
    return dest


def taxi_span_state(tmp_path_factory, airflow_home: Path, taxi_csv: Path, name: str, rows: int = 1000) -> dict:
    """A test state of a new directory ``name``: span 1 of the first ``rows`` taxi trips under ``data/``, the
    provider's state directory ``state/`` (empty), and the session's Airflow home."""
    root = tmp_path_factory.mktemp(name)
    write_slice(taxi_csv, root / "data" / "span-1" / "data.csv", 0, rows)
    return {"home": airflow_home, "state_dir": root / "state", "data": root / "data", "root": root}


def break_data(header, body):
    """Drop a column, put text in a float column, use a payment type the schema never saw."""
    drop, payment, miles = header.index("trip_start_hour"), header.index("payment_type"), header.index("trip_miles")
    out = []
    for n, row in enumerate(body):
        row = list(row)
        if n % 10 == 0:
            row[payment] = "Bitcoin"
        if n == 3:
            row[miles] = "a lot"
        out.append([c for i, c in enumerate(row) if i != drop])
    return [c for i, c in enumerate(header) if i != drop], out


@pytest.fixture(scope="module")
def state(tmp_path_factory, airflow_home, taxi_csv):
    root = tmp_path_factory.mktemp("ingest")
    data = root / "data"
    write_slice(taxi_csv, data / "span-1" / "data.csv", 0, 600)
    write_slice(taxi_csv, data / "span-2" / "data.csv", 600, 1200)
    return {"home": airflow_home, "state_dir": root / "state", "data": data, "root": root}


def dags_test(state, conf: dict, dag_id: str = "mlops_ingest", dags_folder: Path | None = None, **env_extra):
    env = airflow_env(state["home"], state["state_dir"], **env_extra)
    if dags_folder:
        env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags_folder)
    cmd = [str(BIN / "airflow"), "dags", "test", dag_id, "-c", json.dumps(conf)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    log = out.stdout + out.stderr
    match = re.search(r"DagRun Finished: dag_id=\S+, logical_date=[^,]+, run_id=([^,]+),", log)
    assert match, f"no finished DAG run in the output:\n{log[-4000:]}"
    return out.returncode, log, match.group(1)


def task_states(state, dag_id: str, run_id: str) -> dict[str, str]:
    """The run's task states, as ``airflow tasks states-for-dag-run`` prints them, read from the same Airflow
    database (the SQLite file of ``state["home"]``) without starting Airflow again."""
    uri = f"file:{state['home'] / 'airflow.db'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as db:
        rows = db.execute("SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
                          (dag_id, run_id)).fetchall()
    assert rows, f"no task instances of {dag_id} run {run_id} in {uri}"
    return dict(rows)


def lineage(state, run_id: str, pipeline: str = PIPELINE) -> dict:
    hook = RuntimeHook(mlops_conn_id=None, state_dir=str(state["state_dir"]))
    result = hook.run_step("mlmd.lineage", {"metadata": hook.metadata, "pipeline_name": pipeline, "run_id": run_id})
    return {e["node"]: e for e in result["executions"]}


def artifact_ids(execution: dict, side: str, key: str) -> list[int]:
    return [a["id"] for a in execution[side][key]]


def test_first_span_is_ingested_with_full_lineage(state):
    code, log, run_id = dags_test(state, {"pipeline_name": PIPELINE, "data_root": str(state["data"]), "span": 1})
    assert code == 0, log[-4000:]
    assert "no reference schema yet: inferring one from this span" in log
    runs = lineage(state, run_id)
    assert list(runs) == ["CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator"]
    assert all(e["state"] == "COMPLETE" for e in runs.values())
    examples = runs["CsvExampleGen"]["outputs"]["examples"]
    assert len(examples) == 1 and examples[0]["span"] == 1 and examples[0]["splits"] == ["train", "eval"]
    assert Path(examples[0]["uri"], "Split-train").is_dir()
    # lineage: each consumer read exactly what its producer wrote in this run
    assert artifact_ids(runs["StatisticsGen"], "inputs", "examples") == [examples[0]["id"]]
    stats = artifact_ids(runs["StatisticsGen"], "outputs", "statistics")
    assert artifact_ids(runs["SchemaGen"], "inputs", "statistics") == stats
    assert artifact_ids(runs["ExampleValidator"], "inputs", "statistics") == stats
    assert artifact_ids(runs["ExampleValidator"], "inputs", "schema") == artifact_ids(runs["SchemaGen"], "outputs", "schema")
    # the accepted run's schema is now the pipeline's reference
    reference = ReferenceSchemaStore(state["state_dir"] / "schemas").current(PIPELINE)
    assert reference.version == 1 and reference.meta["run_id"] == run_id
    text = reference.schema_file.read_text()
    assert 'name: "payment_type"' in text
    assert "min_domain_mass: 0.99" in text and "company" in reference.meta["relaxed_features"]
    state["run1"] = run_id


def test_retry_of_a_finished_task_does_not_run_it_again(state):
    run_id = state["run1"]
    before = lineage(state, run_id)
    env = airflow_env(state["home"], state["state_dir"])
    out = subprocess.run([str(BIN / "airflow"), "tasks", "test", "mlops_ingest", "StatisticsGen", run_id],
                         env=env, capture_output=True, text=True, timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    execution = before["StatisticsGen"]["id"]
    assert f"node StatisticsGen already completed in pipeline run {run_id} (execution {execution}" in log
    assert "reused the execution of an earlier try" in log
    assert lineage(state, run_id) == before  # no new execution, no new artifact


def test_next_span_is_validated_against_the_reference_schema(state):
    code, log, run_id = dags_test(state, {"pipeline_name": PIPELINE, "data_root": str(state["data"])})
    assert code == 0, log[-4000:]
    assert "validating against reference schema v1 of pipeline it_taxi" in log
    runs = lineage(state, run_id)
    assert runs["CsvExampleGen"]["outputs"]["examples"][0]["span"] == 2  # the latest span
    assert runs["SchemaGen"]["inputs"] == {}  # imported, not inferred from span 2
    assert ReferenceSchemaStore(state["state_dir"] / "schemas").versions(PIPELINE) == [1]


def _tree_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def test_broken_span_fails_validation_listing_each_anomaly(state, taxi_csv):
    write_slice(taxi_csv, state["data"] / "span-3" / "data.csv", 1200, 1800, mutate=break_data)
    schemas = state["state_dir"] / "schemas"
    pipelines = state["state_dir"] / "pipelines" / PIPELINE / "CsvExampleGen"
    before = (_tree_digest(schemas), _tree_digest(pipelines))
    marker = state["root"] / "downstream-ran"
    code, log, run_id = dags_test(
        state, {"pipeline_name": PIPELINE, "data_root": str(state["data"])},
        dag_id="test_ingest_with_downstream", dags_folder=TEST_DAGS,
        MLOPS_TEST_MARKER=str(marker),
    )
    assert code != 0
    assert "DataValidationError" in log
    for expected in (
        "feature trip_start_hour: SCHEMA_MISSING_COLUMN",
        "feature trip_miles: UNEXPECTED_DATA_TYPE",
        "feature payment_type: ENUM_TYPE_UNEXPECTED_STRING_VALUES",
        "Bitcoin",
    ):
        assert expected in log, expected
    states = task_states(state, "test_ingest_with_downstream", run_id)
    assert states["ExampleValidator"] == "failed"
    assert states["downstream"] == "upstream_failed"
    assert not marker.exists()
    # the reference schema and the earlier spans' examples are untouched
    assert _tree_digest(schemas) == before[0]
    after_examples = {p.name for p in pipelines.glob("examples/*")}
    assert len(after_examples) == 3  # spans 1, 2 and the rejected 3 side by side
    assert ReferenceSchemaStore(schemas).versions(PIPELINE) == [1]


def test_malformed_csv_names_file_and_line(state, taxi_csv, tmp_path):
    data = tmp_path / "ragged"
    path = write_slice(taxi_csv, data / "data.csv", 0, 40)
    with open(path, "a") as handle:
        handle.write("1,2,3\n")
    code, log, run_id = dags_test(state, {"pipeline_name": "it_ragged", "data_root": str(data)})
    assert code != 0
    assert f"malformed CSV: {path} line 42: 3 fields, the header has 18" in log
    assert "RuntimeStepRejected" in log  # bad input: failed without retrying
    states = task_states(state, "mlops_ingest", run_id)
    assert states["CsvExampleGen"] == "failed"
    assert states["StatisticsGen"] == "upstream_failed"


def test_missing_data_directory_is_a_clear_error(state, tmp_path):
    code, log, _ = dags_test(state, {"pipeline_name": "it_missing", "data_root": str(tmp_path / "nope")})
    assert code != 0
    assert f"input_base '{tmp_path / 'nope'}' is not an existing directory of CSV files" in log


def test_no_arguments_ingest_the_taxi_sample_shipped_with_tfx(airflow_home, tmp_path, taxi_csv):
    state = {"home": airflow_home, "state_dir": tmp_path / "state"}
    code, log, run_id = dags_test(state, {})
    assert code == 0, log[-4000:]
    counts = [int(n) for n in re.findall(r"split (?:train|eval): (\d+) examples, 18 features", log)]
    with open(taxi_csv, newline="") as handle:
        rows = sum(1 for _ in csv.reader(handle)) - 1
    assert sum(counts) == rows, counts  # every row of tfx/examples/chicago_taxi_pipeline/data/simple/data.csv
    assert ReferenceSchemaStore(tmp_path / "state" / "schemas").current("chicago_taxi").version == 1
