"""Unit tests of the TFX operators: wiring, templating, validation and decisions.

The runtime is replaced here only where a test checks what the operator does with a
result; tests/integration runs the same operators against the real TFX runtime.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

import airflow_mlops
from airflow_mlops.shared import resolve_package_file
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airflow_mlops.exceptions import DataValidationError, InvalidArgumentError, MlopsException, RuntimeStepRejected
from airflow_mlops.hooks.runtime import RuntimeHook
from airflow_mlops.operators.tfx import (
    CsvExampleGenOperator,
    EvaluatorOperator,
    ExampleValidatorOperator,
    HorovodTrainerOperator,
    ImportSchemaGenOperator,
    PusherOperator,
    SchemaGenOperator,
    StatisticsGenOperator,
    TfxComponentOperator,
    TransformOperator,
    raw_label_column,
)
from airflow_mlops.utils.schema_store import ReferenceSchemaStore


@pytest.fixture
def state_dir(tmp_path, clean_mlops_env):
    clean_mlops_env.setenv("AIRFLOW__MLOPS__STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture
def ops(state_dir):
    with DAG("t", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        eg = CsvExampleGenOperator(task_id="eg", pipeline_name="{{ params.p }}", input_base="{{ params.data }}")
        sg = StatisticsGenOperator(task_id="sg", pipeline_name="p", examples=eg)
        sc = SchemaGenOperator(task_id="sc", pipeline_name="p", statistics=sg)
        ev = ExampleValidatorOperator(task_id="ev", pipeline_name="p", statistics=sg, schema=sc)
    return SimpleNamespace(dag=dag, eg=eg, sg=sg, sc=sc, ev=ev)


def test_template_fields_are_tuples_and_args_stored_unchanged(ops):
    for op in (ops.eg, ops.sg, ops.sc, ops.ev):
        assert isinstance(op.template_fields, tuple)
        assert "pipeline_name" in op.template_fields
    assert ops.eg.input_base == "{{ params.data }}"
    assert ops.eg.pipeline_name == "{{ params.p }}"
    assert set(CsvExampleGenOperator.template_fields) >= {"input_base", "input_pattern", "span"}


def test_wiring_sets_dependencies_and_inputs(ops):
    assert ops.sg.upstream_task_ids == {"eg"}
    assert ops.ev.upstream_task_ids == {"sg", "sc"}
    assert ops.ev.tfx_inputs == {"statistics": {"node": "sg", "output": "statistics"},
                                 "schema": {"node": "sc", "output": "schema"}}


def test_string_inputs_and_explicit_output_key(state_dir):
    op = StatisticsGenOperator(task_id="s", pipeline_name="p", examples="gen:examples_out")
    assert op.tfx_inputs == {"examples": {"node": "gen", "output": "examples_out"}}


def test_bad_input_type_names_the_input():
    with pytest.raises(TypeError, match="input 'examples' must be a TFX component operator"):
        StatisticsGenOperator(task_id="s", pipeline_name="p", examples=42)


def test_pipeline_spec_holds_the_node_and_its_ancestors(ops, state_dir):
    ops.ev.pipeline_name = "p"
    spec = ops.ev.pipeline_spec(RuntimeHook(mlops_conn_id=None))
    assert spec["pipeline_name"] == "p"
    assert spec["pipeline_root"] == str(state_dir / "pipelines" / "p")
    assert spec["metadata"] == {"sqlite": str(state_dir / "metadata" / "mlmd.sqlite")}
    assert sorted(n["id"] for n in spec["nodes"]) == ["eg", "ev", "sc", "sg"]
    assert spec["nodes"][0]["id"] == "ev"
    spec = ops.sg.pipeline_spec(RuntimeHook(mlops_conn_id=None))
    assert sorted(n["id"] for n in spec["nodes"]) == ["eg", "sg"]


def test_missing_upstream_task_is_reported(state_dir):
    with DAG("t2", schedule=None, start_date=datetime(2026, 1, 1)):
        op = StatisticsGenOperator(task_id="s", pipeline_name="p", examples="not_there")
    with pytest.raises(MlopsException, match="'not_there', which is not in the DAG"):
        op.pipeline_spec(RuntimeHook(mlops_conn_id=None))


@pytest.mark.parametrize("name", ["", "has space", "-lead", "x" * 129, "a/b"])
def test_bad_pipeline_name(state_dir, name):
    op = StatisticsGenOperator(task_id="s", pipeline_name=name, examples="g")
    with pytest.raises(MlopsException, match="pipeline_name .* is not valid"):
        op.validate_args()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_base": "/definitely/not/here"}, "is not an existing directory"),
        ({"span": "two"}, "span must be an integer"),
        ({"span": -1}, "span must be >= 0"),
        ({"splits": {"train": 0}}, "positive hash buckets"),
    ],
)
def test_example_gen_argument_errors(state_dir, kwargs, message):
    op = CsvExampleGenOperator(task_id="g", pipeline_name="p", **kwargs)
    with pytest.raises(InvalidArgumentError, match=message) as info:
        op.validate_args()
    assert isinstance(info.value, AirflowFailException)  # wrong arguments fail without retries


def _write(path, text="a,b\n1,2\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(("layout", "span", "message"), [
    ({}, None, "holds no data file"),
    ({"notes/.keep": ""}, None, "holds no data file"),
    ({"span-1/data.csv": "a,b\n1,2\n", "span-3/data.csv": "a,b\n1,2\n"}, 2,
     r"span 2 does not exist under .* \(its spans: 1, 3\); leave span empty for the latest"),
    ({"data.csv": "a,b\n1,2\n"}, 1, r"span 1 does not exist under .* \(it has no span-<N>/ directories\)"),
    ({"span-1/data.csv": "a,b\n1,2\n", "span-2/empty.csv": ""}, None, r"span-2 holds no data file"),
])
def test_example_gen_refuses_missing_spans_and_empty_data_before_anything_runs(state_dir, tmp_path, layout, span,
                                                                               message, monkeypatch):
    monkeypatch.setattr(RuntimeHook, "run_step", lambda *a, **k: pytest.fail("reached the runtime"))
    for name, text in layout.items():
        _write(tmp_path / "data" / name, text)
    (tmp_path / "data").mkdir(exist_ok=True)
    op = CsvExampleGenOperator(task_id="g", pipeline_name="p", input_base=str(tmp_path / "data"), span=span)
    with pytest.raises(InvalidArgumentError, match=message) as info:
        op.validate_args()
    assert isinstance(info.value, AirflowFailException)


@pytest.mark.parametrize(("text", "label", "message"), [
    (b"\xef\xbb\xbfpickup_community_area,tips\r\n1,2\r\n", None,
     r"^g: .*span-2/data.csv starts with a UTF-8 byte-order mark .*\('\\ufeffpickup_community_area'\)"),
    (b"fare,tip\n1,2\n", "tips", r"^g: the label column 'tips' is not a column of .*span-2/data.csv"),
    (b"fare,tips\n1,\n2,\n", "tips", r"^g: the label column 'tips' is empty in every row"),
    (b"fare,tips\n1,0\n2,0\n", "tips", r"^g: the label column 'tips' has the same value \('0'\) in every row"),
])
def test_example_gen_refuses_a_byte_order_mark_and_an_unusable_label_before_anything_runs(
        state_dir, tmp_path, monkeypatch, text, label, message):
    monkeypatch.setattr(RuntimeHook, "run_step", lambda *a, **k: pytest.fail("reached the runtime"))
    _write(tmp_path / "data" / "span-1" / "data.csv", "fare,tips\n1,2\n")  # an earlier span is not read
    (tmp_path / "data" / "span-2").mkdir()
    (tmp_path / "data" / "span-2" / "data.csv").write_bytes(text)
    op = CsvExampleGenOperator(task_id="g", pipeline_name="p", input_base=str(tmp_path / "data"),
                               label_column="{{ params.label }}")
    with op._rendered({"params": {"label": label or ""}}), pytest.raises(InvalidArgumentError, match=message) as info:
        op.validate_args()
    assert isinstance(info.value, AirflowFailException)  # not retried


@pytest.mark.parametrize(("label_key", "module_file", "eval_config", "column"), [
    ("big_tipper", "", "", "tips"), ("tips_xf", "/m.py", None, "tips"), ("species_xf", None, None, "species"),
    ("species", "/m.py", "", "species"), ("big_tipper", "/m.py", "", "big_tipper"), ("y_xf", "", "/e.pbtxt", ""),
])
def test_the_label_s_csv_column_by_tfx_s_naming(label_key, module_file, eval_config, column):
    assert raw_label_column(label_key, module_file, eval_config) == column


def test_example_gen_accepts_spans_versions_and_flat_directories(state_dir, tmp_path):
    _write(tmp_path / "flat" / "part-1.csv")
    _write(tmp_path / "spans" / "span-4" / "version-2" / "data.csv")
    for base, span in ((tmp_path / "flat", None), (tmp_path / "spans", None), (tmp_path / "spans", 4)):
        CsvExampleGenOperator(task_id="g", pipeline_name="p", input_base=str(base), span=span).validate_args()


def test_example_gen_defaults_to_the_taxi_sample(state_dir, tmp_path):
    op = CsvExampleGenOperator(task_id="g", pipeline_name="p")
    op.validate_args()
    assert op.component_args()["input_base"] == "sample://chicago_taxi"
    assert op.host_paths() == []
    op = CsvExampleGenOperator(task_id="g", pipeline_name="p", input_base=str(tmp_path), span="3")
    assert op.node_spec(target=True)["args"]["span"] == 3
    assert op.host_paths() == [str(tmp_path)]


@pytest.mark.parametrize("span", [None, "", "None"])
def test_empty_span_means_latest(state_dir, span):
    op = CsvExampleGenOperator(task_id="g", pipeline_name="p", span=span)
    assert op.node_spec(target=True)["args"]["span"] is None


def test_schema_gen_prefers_curated_then_reference_then_infers(ops, state_dir, tmp_path):
    ops.sc.pipeline_name = "p"
    assert ops.sc.decide() == ("inferred", None, None)
    assert ops.sc.node_spec(target=True)["component"] == "SchemaGen"

    inferred = tmp_path / "schema.pbtxt"
    inferred.write_text(SCHEMA)
    ReferenceSchemaStore(state_dir / "schemas").promote("p", inferred)
    fresh = SchemaGenOperator(task_id="sc2", pipeline_name="p", statistics="sg")
    source, path, version = fresh.decide()
    assert (source, version) == ("reference", 1)
    spec = fresh.node_spec(target=True)
    assert spec["component"] == "ImportSchemaGen" and spec["args"] == {"schema_file": path} and spec["inputs"] == {}
    # seen from another task, the node keeps its SchemaGen shape (same outputs)
    assert fresh.node_spec(target=False)["component"] == "SchemaGen"

    curated = SchemaGenOperator(task_id="sc3", pipeline_name="p", statistics="sg", reference_schema=str(inferred))
    assert curated.decide()[0] == "curated"


def test_schema_gen_missing_curated_schema(state_dir):
    op = SchemaGenOperator(task_id="sc", pipeline_name="p", statistics="sg", reference_schema="/no/schema.pbtxt")
    with pytest.raises(MlopsException, match="reference_schema '/no/schema.pbtxt' does not exist"):
        op.validate_args()


@pytest.mark.parametrize("fraction", [-0.1, 1, 2.5])
def test_validator_tolerance_must_be_a_fraction(state_dir, fraction):
    op = ExampleValidatorOperator(task_id="v", pipeline_name="p", statistics="s", schema="c",
                                  max_unseen_category_fraction=fraction)
    with pytest.raises(MlopsException, match="max_unseen_category_fraction must be in"):
        op.validate_args()


def test_import_schema_gen_missing_file(state_dir):
    op = ImportSchemaGenOperator(task_id="i", pipeline_name="p", schema_file="/no/schema.pbtxt")
    with pytest.raises(MlopsException, match="does not exist"):
        op.validate_args()


def _context(xcom=None, by_task=None):
    """A task context whose XCom is ``xcom`` for every task, or ``by_task[task_id]``."""
    ti = SimpleNamespace(try_number=1, xcom_pull=lambda task_ids: by_task.get(task_ids) if by_task else xcom)
    return {"run_id": "manual__1", "ti": ti}


SCHEMA = 'feature {\n  name: "fare"\n  type: FLOAT\n}\n'
STATS = {"inputs": {"examples": [{"span": 3, "splits": ["train", "eval"]}]},
         "statistics": {"train": {"num_examples": 600}, "eval": {"num_examples": 300}}}


def test_validator_fails_with_every_anomaly_listed(ops, state_dir, monkeypatch):
    ops.ev.pipeline_name = "p"
    anomalies = [
        {"split": "train", "feature": "fare", "kind": "SCHEMA_MISSING_COLUMN", "severity": "ERROR",
         "description": "Column is completely missing"},
        {"split": "eval", "feature": "payment_type", "kind": "ENUM_TYPE_UNEXPECTED_STRING_VALUES",
         "severity": "ERROR", "description": "Examples contain values missing from the schema: Bitcoin"},
    ]
    monkeypatch.setattr(RuntimeHook, "run_step", lambda self, *a, **k: {
        "component": "ExampleValidator", "execution_id": 4, "state": "COMPLETE", "outputs": {}, "anomalies": anomalies})
    with pytest.raises(DataValidationError) as info:
        ops.ev.execute(_context(by_task={"sc": {"schema_source": "inferred", "schema_file": "/x"}, "sg": STATS}))
    text = str(info.value)
    assert "2 data anomalies" in text
    assert "split train, feature fare: SCHEMA_MISSING_COLUMN" in text
    assert "feature payment_type: ENUM_TYPE_UNEXPECTED_STRING_VALUES" in text
    assert info.value.anomalies == anomalies
    # nothing was promoted from a rejected run
    assert ReferenceSchemaStore(state_dir / "schemas").current("p") is None


def test_anomalies_show_names_that_print_alike_with_their_invisible_characters(ops, state_dir, monkeypatch):
    ops.ev.pipeline_name = "p"
    anomalies = [
        {"split": "train", "feature": "\ufeffpickup_community_area", "kind": "SCHEMA_MISSING_COLUMN",
         "severity": "ERROR", "description": "Column is completely missing"},
        {"split": "train", "feature": "pickup_community_area", "kind": "SCHEMA_NEW_COLUMN", "severity": "ERROR",
         "description": "New column (column in data but not in schema)"},
    ]
    monkeypatch.setattr(RuntimeHook, "run_step", lambda self, *a, **k: {
        "component": "ExampleValidator", "execution_id": 4, "state": "COMPLETE", "outputs": {}, "anomalies": anomalies})
    with pytest.raises(DataValidationError) as info:
        ops.ev.execute(_context(by_task={"sc": {"schema_source": "reference", "schema_file": "/x"}, "sg": STATS}))
    lines = str(info.value).splitlines()
    assert "  - split train, feature '\\ufeffpickup_community_area': SCHEMA_MISSING_COLUMN (ERROR): Column is " \
           "completely missing" in lines
    assert "  - split train, feature pickup_community_area: SCHEMA_NEW_COLUMN (ERROR): New column (column in data " \
           "but not in schema)" in lines
    assert "\ufeff" not in str(info.value) and info.value.anomalies == anomalies


def test_validator_keeps_first_accepted_inferred_schema(ops, state_dir, monkeypatch, tmp_path):
    ops.ev.pipeline_name = "p"
    inferred = tmp_path / "schema.pbtxt"
    inferred.write_text(SCHEMA)
    steps = []

    def fake_run_step(self, step, params, **kwargs):
        steps.append(step)
        if step == "tfx.relax_schema":  # the real step is covered by tests/integration
            Path(params["dest"]).write_text(Path(params["schema_file"]).read_text() + "# relaxed")
            return {"relaxed_features": ["company"]}
        return {"component": "ExampleValidator", "execution_id": 4, "state": "COMPLETE", "outputs": {}, "anomalies": []}

    monkeypatch.setattr(RuntimeHook, "run_step", fake_run_step)
    ops.ev.execute(_context(by_task={"sc": {"schema_source": "inferred", "schema_file": str(inferred),
                                            "outputs": {"schema": [{"id": 3}]}}, "sg": STATS}))
    assert steps == ["tfx.run_node", "tfx.relax_schema"]
    current = ReferenceSchemaStore(state_dir / "schemas").current("p")
    assert current.version == 1 and current.meta["run_id"] == "manual__1" and current.meta["schema_artifact_id"] == 3
    assert current.meta["relaxed_features"] == ["company"] and current.meta["max_unseen_category_fraction"] == 0.01
    assert current.schema_file.read_text().endswith("# relaxed")
    assert not list((state_dir / "tmp").iterdir())  # the staging copy is gone
    # a later accepted run that used the reference does not add versions
    ops.ev.execute(_context(by_task={"sc": {"schema_source": "reference", "schema_file": str(current.schema_file)},
                                     "sg": STATS}))
    assert ReferenceSchemaStore(state_dir / "schemas").versions("p") == [1]


@pytest.mark.parametrize(("stats", "minimum", "message"), [
    ({"inputs": {"examples": [{"span": 1, "splits": ["train", "eval"]}]}, "statistics": {}}, None,
     r"span 1 is too small to validate or train on: split eval has 0, split train has 0 example\(s\); at least 1"),
    (STATS, 500, r"span 3 is too small .*: split eval has 300 example\(s\); at least 500 are needed"),
])
def test_a_span_with_too_few_examples_is_rejected_before_validation_and_nothing_is_kept(
        ops, state_dir, monkeypatch, tmp_path, stats, minimum, message):
    monkeypatch.setattr(RuntimeHook, "run_step", lambda *a, **k: pytest.fail("validated an empty span"))
    ops.ev.pipeline_name = "p"
    ops.ev.min_examples = minimum
    schema = tmp_path / "schema.pbtxt"
    schema.write_text(SCHEMA)
    with pytest.raises(DataValidationError, match=message) as info:
        ops.ev.execute(_context(by_task={"sc": {"schema_source": "inferred", "schema_file": str(schema)}, "sg": stats}))
    assert isinstance(info.value, AirflowFailException)  # not retried
    assert ReferenceSchemaStore(state_dir / "schemas").current("p") is None


def test_an_empty_inferred_schema_is_never_kept(ops, state_dir, monkeypatch, tmp_path):
    ops.ev.pipeline_name = "p"
    empty = tmp_path / "schema.pbtxt"
    empty.write_text("")
    monkeypatch.setattr(RuntimeHook, "run_step", lambda *a, **k: {
        "component": "ExampleValidator", "execution_id": 4, "state": "COMPLETE", "outputs": {}, "anomalies": []})
    ops.ev.execute(_context(by_task={"sc": {"schema_source": "inferred", "schema_file": str(empty)}, "sg": STATS}))
    assert ReferenceSchemaStore(state_dir / "schemas").current("p") is None


@pytest.mark.parametrize("broken", ["", "# no features\n"])
def test_an_empty_or_unreadable_reference_is_refused_saying_what_to_do(state_dir, tmp_path, broken):
    store = ReferenceSchemaStore(state_dir / "schemas")
    good = tmp_path / "schema.pbtxt"
    good.write_text(SCHEMA)
    kept = store.promote("p", good)
    kept.schema_file.write_text(broken)  # e.g. written by a provider version without the data gate
    op = SchemaGenOperator(task_id="sc", pipeline_name="p", statistics="sg")
    with pytest.raises(InvalidArgumentError, match=r"reference schema v1 of pipeline 'p' .* has no feature.*"
                                                   r"`airflow-mlops schema show p`.*`airflow-mlops schema reset p`"):
        op.decide()
    with pytest.raises(ValueError, match="has no feature: it cannot be a reference schema"):
        store.promote("p", kept.schema_file)


def test_on_kill_stops_the_runtime_process(ops, monkeypatch):
    killed = []
    monkeypatch.setattr(RuntimeHook, "kill", lambda self: killed.append(True))
    ops.sg.on_kill()
    assert killed == [True]


def test_every_operator_names_its_component():
    for cls in (CsvExampleGenOperator, StatisticsGenOperator, SchemaGenOperator, ImportSchemaGenOperator,
                ExampleValidatorOperator, TransformOperator, HorovodTrainerOperator, EvaluatorOperator, PusherOperator):
        assert issubclass(cls, TfxComponentOperator)
        assert cls.__name__ == f"{cls.definition.name}Operator"


def test_transform_defaults_to_the_shipped_taxi_module(state_dir):
    op = TransformOperator(task_id="t", pipeline_name="p", examples="g", schema="s")
    op.validate_args()
    # by its place in the package: each side (this worker, a pod's image) finds its own copy
    sent = op.component_args()["module_file"]
    assert sent == "airflow-mlops-package:runtime_side/modules/taxi.py"
    module = resolve_package_file(sent, str(Path(airflow_mlops.__file__).parent))
    assert Path(module).is_file() and "def preprocessing_fn" in Path(module).read_text()
    assert resolve_package_file("/srv/my_module.py", "/opt/airflow-mlops/airflow_mlops") == "/srv/my_module.py"
    assert op.tfx_inputs == {"examples": {"node": "g", "output": "examples"}, "schema": {"node": "s", "output": "schema"}}
    assert "module_file" in TransformOperator.template_fields


@pytest.mark.parametrize("module, message", [("/no/such.py", "does not exist"), (__file__ + "c", "does not exist")])
def test_transform_module_file_errors(state_dir, module, message):
    op = TransformOperator(task_id="t", pipeline_name="p", examples="g", schema="s", module_file=module)
    with pytest.raises(InvalidArgumentError, match=message):
        op.validate_args()


def test_transform_module_must_be_python(state_dir, tmp_path):
    text = tmp_path / "module.txt"
    text.write_text("x")
    op = TransformOperator(task_id="t", pipeline_name="p", examples="g", schema="s", module_file=str(text))
    with pytest.raises(InvalidArgumentError, match="is not a Python file"):
        op.validate_args()


@pytest.fixture
def train_ops(state_dir):
    with DAG("tp", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        eg = CsvExampleGenOperator(task_id="eg", pipeline_name="p")
        sc = ImportSchemaGenOperator(task_id="sc", pipeline_name="p", schema_file=__file__)
        tf = TransformOperator(task_id="tf", pipeline_name="p", examples=eg, schema=sc)
        tr = HorovodTrainerOperator(task_id="tr", pipeline_name="p", examples=tf, transform_graph=tf, schema=sc)
        ev = EvaluatorOperator(task_id="ev", pipeline_name="p", examples=eg, model=tr,
                               metric="{{ params.metric }}", threshold="{{ params.threshold }}")
        pu = PusherOperator(task_id="pu", pipeline_name="p", model=tr, model_blessing=ev)
    return SimpleNamespace(dag=dag, eg=eg, tf=tf, tr=tr, ev=ev, pu=pu)


def test_evaluator_runs_a_baseline_resolver_in_its_own_task(train_ops):
    hook = RuntimeHook(mlops_conn_id=None)
    with train_ops.ev._rendered({"params": {"metric": "AUC", "threshold": 0.6}}):  # as its own task renders it
        spec = train_ops.ev.pipeline_spec(hook)
    nodes = {n["id"]: n for n in spec["nodes"]}
    assert nodes["ev"]["args"]["threshold"] == 0.6 and nodes["ev"]["args"]["metric"] == "AUC"  # typed
    assert nodes["ev.latest_blessed_model"] == {"id": "ev.latest_blessed_model", "component": "LatestBlessedModelResolver",
                                                "inputs": {}, "args": {}, "companion_of": "ev"}
    assert nodes["ev"]["inputs"] == {"examples": {"node": "eg", "output": "examples"},
                                     "model": {"node": "tr", "output": "model"},
                                     "baseline_model": {"node": "ev.latest_blessed_model", "output": "model"}}
    assert train_ops.ev.metric == "{{ params.metric }}"  # templated, stored unchanged
    # the Pusher's task compiles the Evaluator (and its resolver) as upstream nodes
    pusher_nodes = {n["id"] for n in train_ops.pu.pipeline_spec(hook)["nodes"]}
    assert {"pu", "ev", "ev.latest_blessed_model", "tr", "tf", "eg", "sc"} == pusher_nodes
    assert train_ops.pu.tfx_inputs["model_blessing"] == {"node": "ev", "output": "blessing"}


def test_the_first_task_refuses_a_run_whose_later_tasks_cannot_succeed(train_ops, monkeypatch):
    """A metric of another model type fails the run at CsvExampleGen, before anything is ingested or trained."""
    monkeypatch.setattr(RuntimeHook, "run_step", lambda *a, **k: pytest.fail("the run reached the runtime"))
    context = {"run_id": "manual__1", "params": {"metric": "MeanSquaredError", "threshold": 0.5}}
    with pytest.raises(InvalidArgumentError, match=r"^eg: the run cannot succeed: ev: metric MeanSquaredError is "
                                                   r"for regression models, not binary"):
        train_ops.eg.node_params(context)
    assert train_ops.ev.metric == "{{ params.metric }}"  # the other task is left as it was
    train_ops.eg.check_pipeline_args({"run_id": "manual__1", "params": {"metric": "AUC", "threshold": 0.5}})
    # a template that needs an upstream task's result is left to its own task
    train_ops.ev.threshold = "{{ ti.xcom_pull(task_ids='nowhere')['threshold'] }}"
    train_ops.eg.check_pipeline_args({"run_id": "manual__1", "params": {"metric": "AUC"}})


def test_the_first_task_parses_the_eval_config_file_in_the_tfx_runtime(train_ops, tmp_path, monkeypatch):
    """An EvalConfig that does not parse fails the run at its first task, not after Transform and Trainer."""
    config = tmp_path / "eval_config.pbtxt"
    config.write_text("model_specs { label_key: 'y'")
    train_ops.ev.eval_config = "{{ params.eval_config }}"
    calls = []

    def run_step(self, step, params, **kwargs):
        calls.append((self.runtime, step, params, kwargs["binds"], kwargs["context"]["task_id"]))
        raise RuntimeStepRejected(f"step {step} failed in runtime tfx: InvalidInput: eval_config {params['path']} "
                                  "is not a TFMA EvalConfig (JSON or pbtxt): 1:29 : Expected \"}\".", step=step,
                                  error={"type": "InvalidInput", "message": f"eval_config {params['path']} is not a "
                                         "TFMA EvalConfig (JSON or pbtxt): 1:29 : Expected \"}\".; correct the file"})

    monkeypatch.setattr(RuntimeHook, "run_step", run_step)
    context = {"run_id": "manual__1", "params": {"metric": "AUC", "threshold": 0.5, "eval_config": str(config)}}
    message = (f"eg: the run cannot succeed: ev: eval_config {config} is not a TFMA EvalConfig (JSON or pbtxt): "
               '1:29 : Expected "}".; correct the file')
    with pytest.raises(InvalidArgumentError, match=f"^{re.escape(message)}$") as info:
        train_ops.eg.check_pipeline_args(context)
    assert isinstance(info.value, AirflowFailException)  # not retried
    assert calls == [("tfx", "tfx.check_eval_config", {"path": str(config)}, [str(tmp_path)], "eg")]
    monkeypatch.setattr(RuntimeHook, "run_step", lambda *a, **k: {"label_keys": ["y"], "metrics": []})
    train_ops.eg.check_pipeline_args(context)  # one that parses: the run goes on


def test_evaluator_without_baseline(state_dir):
    op = EvaluatorOperator(task_id="ev", pipeline_name="p", examples="eg", model="tr", compare_to_baseline=False)
    assert op.companion_nodes() == []
    assert "baseline_model" not in op.node_spec(target=True)["inputs"]


@pytest.mark.parametrize("kwargs, message", [
    ({"metric": "MeanSquaredError"}, "metric MeanSquaredError is for regression models, not binary: use one of AUC"),
    ({"metric": "Accuracy"}, "metric 'Accuracy' is not one the gate knows; for model_type 'binary' use one of AUC"),
    ({"model_type": "regression", "metric": "SparseCategoricalAccuracy"},
     "metric SparseCategoricalAccuracy is for multiclass models, not regression: use one of MeanSquaredError"),
    ({"model_type": "ranking"}, "model_type must be one of binary, multiclass, regression"),
    ({"direction": "sideways"}, "direction must be one of auto, higher, lower"),
    ({"threshold": "high"}, "threshold must be a number"),
    ({"threshold": 1.5}, r"threshold of AUC must be in \[0, 1\], got 1.5"),
    ({"model_type": "regression", "threshold": -1}, "threshold of MeanSquaredError must be >= 0"),
    ({"max_regression": -0.1}, "max_regression must be >= 0"),
    ({"label_key": ""}, "label_key is empty"),
    ({"eval_config": "/no/such/eval_config.pbtxt"}, "eval_config /no/such/eval_config.pbtxt is not a file"),
])
def test_evaluator_argument_errors(state_dir, kwargs, message):
    op = EvaluatorOperator(task_id="ev", pipeline_name="p", examples="eg", model="tr", **kwargs)
    with pytest.raises(InvalidArgumentError, match=message):
        op.validate_args()


def test_evaluator_gate_reasons_name_metric_value_and_threshold(state_dir):
    op = EvaluatorOperator(task_id="ev", pipeline_name="p", examples="eg", model="tr", threshold=0.9,
                           max_regression=0.01)
    evaluation = {
        "blessed": False,
        "metrics": {"candidate": {"auc": 0.61, "auc_diff": -0.34}, "baseline": {"auc": 0.95}},
        "failures": [{"metric": "auc", "against_baseline": False, "value": 0.61},
                     {"metric": "auc", "against_baseline": True, "value": -0.34}],
    }
    assert op.gate_reasons(evaluation) == [
        "auc = 0.6100, threshold: >= 0.9",
        "auc = 0.6100 is 0.3400 below the blessed baseline model's 0.9500; allowed drop: 0.01",
    ]


def test_evaluator_defaults_and_directions_by_model_type(state_dir):
    def ev(**kwargs):
        return EvaluatorOperator(task_id="ev", pipeline_name="p", examples="eg", model="tr", **kwargs)

    assert (ev().gate_metric, ev().higher_is_better) == ("AUC", True)
    multi = ev(model_type="multiclass", label_key="species_xf", slice_features="island, sex")
    assert (multi.gate_metric, multi.higher_is_better) == ("SparseCategoricalAccuracy", True)
    assert multi.component_args()["slice_features"] == ["island", "sex"]
    regression = ev(model_type="regression", metric="MeanAbsoluteError", threshold=4.5, max_regression=0.5)
    regression.validate_args()
    assert regression.higher_is_better is False
    assert ev(model_type="regression", direction="higher").higher_is_better is True
    evaluation = {"blessed": False, "metrics": {"candidate": {"mean_absolute_error": 5.2},
                                                "baseline": {"mean_absolute_error": 3.9}},
                  "failures": [{"metric": "mean_absolute_error", "against_baseline": False, "value": 5.2},
                               {"metric": "mean_absolute_error", "against_baseline": True, "value": 1.3}]}
    assert regression.gate_reasons(evaluation) == [
        "mean_absolute_error = 5.2000, threshold: <= 4.5",
        "mean_absolute_error = 5.2000 is 1.3000 above the blessed baseline model's 3.9000; allowed rise: 0.5",
    ]


def test_evaluator_with_an_eval_config_file_checks_only_the_file(state_dir, tmp_path):
    config = tmp_path / "eval_config.pbtxt"
    config.write_text('model_specs { label_key: "y" }')
    op = EvaluatorOperator(task_id="ev", pipeline_name="p", examples="eg", model="tr", metric="Nonsense",
                           eval_config=str(config))
    op.validate_args()
    assert op.component_args()["eval_config_path"] == str(config) and op.host_paths() == [str(config)]


def test_pusher_skips_an_unblessed_model_without_running_anything(train_ops, monkeypatch):
    monkeypatch.setattr(RuntimeHook, "run_step", lambda *a, **k: pytest.fail("an unblessed model reached the runtime"))
    verdict = {"blessed": False, "gate": {"reasons": ["auc = 0.6100, threshold: >= 0.9"]}}
    with pytest.raises(AirflowSkipException, match=r"ev did not bless the model: auc = 0.6100, threshold: >= 0.9"):
        train_ops.pu.execute(_context(verdict))


def test_pusher_pushes_a_blessed_model_to_the_model_root(train_ops, state_dir, monkeypatch):
    calls = []

    def fake_run_step(self, step, params, **kwargs):
        calls.append((params, kwargs["binds"]))
        return {"component": "Pusher", "execution_id": 9, "state": "COMPLETE", "outputs": {},
                "pushed": True, "pushed_version": "3", "pushed_destination": str(state_dir / "models" / "p" / "3")}

    monkeypatch.setattr(RuntimeHook, "run_step", fake_run_step)
    verdict = {"blessed": True, "evaluation": {"metrics": {"candidate": {"auc": 0.95}}}}
    result = train_ops.pu.execute(_context(verdict))
    assert result["model_version"] == 3
    params, binds = calls[0]
    args = next(n for n in params["pipeline"]["nodes"] if n["id"] == "pu")["args"]
    assert args["base_directory"] == str(state_dir / "models" / "p")
    assert args["evaluation"] == {"metrics": {"auc": 0.95}} and args["run_id"] == "manual__1"
    assert str(state_dir / "models" / "p") in binds


def test_pusher_skips_when_the_tfx_pusher_did_not_push(train_ops, monkeypatch):
    monkeypatch.setattr(RuntimeHook, "run_step", lambda *a, **k: {
        "component": "Pusher", "execution_id": 9, "state": "COMPLETE", "outputs": {}, "pushed": False})
    with pytest.raises(AirflowSkipException, match="not blessed"):
        train_ops.pu.execute(_context({}))  # no verdict in XCom: the blessing artifact decides


def test_upstream_nodes_in_the_spec_use_their_rendered_fields_and_defaults(state_dir):
    """An empty templated module_file means the default module in every task's spec, not only its own."""
    with DAG("tpl", schedule=None, start_date=datetime(2026, 1, 1)):
        eg = CsvExampleGenOperator(task_id="eg", pipeline_name="p")
        sc = ImportSchemaGenOperator(task_id="sc", pipeline_name="p", schema_file=__file__)
        tf = TransformOperator(task_id="tf", pipeline_name="p", examples=eg, schema=sc,
                               module_file="{{ params.module_file }}")
        tr = HorovodTrainerOperator(task_id="tr", pipeline_name="p", examples=tf, transform_graph=tf, schema=sc)
    context = {"params": {"module_file": ""}, "run_id": "r"}
    nodes = {n["id"]: n for n in tr.pipeline_spec(RuntimeHook(mlops_conn_id=None), context)["nodes"]}
    assert nodes["tf"]["args"]["module_file"] == "airflow-mlops-package:runtime_side/modules/taxi.py"
    assert tf.module_file == "{{ params.module_file }}"  # the upstream operator itself is unchanged
    context["params"]["module_file"] = "/srv/my_module.py"
    nodes = {n["id"]: n for n in tr.pipeline_spec(RuntimeHook(mlops_conn_id=None), context)["nodes"]}
    assert nodes["tf"]["args"]["module_file"] == "/srv/my_module.py"


def test_trainer_gpus_need_the_kubernetes_backend(state_dir):
    op = HorovodTrainerOperator(task_id="tr", pipeline_name="p", examples="tf", transform_graph="tf", schema="sc",
                                gpus_per_worker=1)
    with pytest.raises(InvalidArgumentError, match="gpus_per_worker=1 needs the kubernetes backend"):
        op.validate_args()
    HorovodTrainerOperator(task_id="tr", pipeline_name="p", examples="tf", transform_graph="tf", schema="sc",
                           gpus_per_worker=0).validate_args()


def test_no_training_window_by_default_transform_reads_the_run_s_own_span(train_ops):
    spec = train_ops.tf.pipeline_spec(RuntimeHook(mlops_conn_id=None))
    nodes = {n["id"]: n for n in spec["nodes"]}
    assert "tf.training_window" not in nodes
    assert nodes["tf"]["inputs"]["examples"] == {"node": "eg", "output": "examples"}


def test_a_training_window_resolves_validated_spans_in_transform_s_task(train_ops):
    train_ops.tf.training_spans = "{{ params.spans }}"
    context = {"params": {"spans": 3}, "run_id": "r"}
    with train_ops.tf._rendered(context):
        spec = train_ops.tf.pipeline_spec(RuntimeHook(mlops_conn_id=None), context)
    nodes = {n["id"]: n for n in spec["nodes"]}
    assert nodes["tf.training_window"] == {"id": "tf.training_window", "component": "TrainingWindowResolver",
                                           "inputs": {}, "companion_of": "tf",
                                           "args": {"examples_node": "eg", "last_spans": 3, "since_span": None}}
    assert nodes["tf"]["inputs"]["examples"] == {"node": "tf.training_window", "output": "examples"}
    # the Trainer's task renders Transform's params as Transform's own task does: the same pipeline shape
    trainer_nodes = {n["id"]: n for n in train_ops.tr.pipeline_spec(RuntimeHook(mlops_conn_id=None), context)["nodes"]}
    assert trainer_nodes["tf"]["inputs"]["examples"]["node"] == "tf.training_window"
    assert train_ops.tf.training_spans == "{{ params.spans }}"  # left as it was


def test_the_window_default_comes_from_the_settings_and_since_span_narrows_it(train_ops, clean_mlops_env):
    clean_mlops_env.setenv("AIRFLOW__MLOPS__TRAINING_SPANS", "4")
    tf = TransformOperator(task_id="tf2", pipeline_name="p", examples="eg", schema="sc", since_span=7)
    assert tf.window() == {"examples_node": "eg", "last_spans": 4, "since_span": 7}
    one = TransformOperator(task_id="tf3", pipeline_name="p", examples="eg", schema="sc", training_spans=1)
    assert one.window() is None  # 1 is the run's own span: no resolver


@pytest.mark.parametrize("kwargs, message", [
    ({"training_spans": 0}, "tf: last_spans must be >= 1, got 0"),
    ({"training_spans": "many"}, "tf: last_spans must be an integer, got 'many'"),
    ({"since_span": -2}, "tf: since_span must be >= 0, got -2"),
])
def test_a_bad_window_is_named_before_anything_runs(state_dir, kwargs, message):
    tf = TransformOperator(task_id="tf", pipeline_name="p", examples="eg", schema="sc", **kwargs)
    with pytest.raises(InvalidArgumentError, match=message):
        tf.validate_args()


def test_accepted_data_is_marked_validated_in_ml_metadata(ops, monkeypatch):
    calls = []

    def run_step(self, step, params, **kwargs):
        calls.append((step, params))
        return {"artifact_id": params["artifact_id"], "span": 4}

    monkeypatch.setattr(RuntimeHook, "run_step", run_step)

    class TI:
        def xcom_pull(self, task_ids):
            return {"inputs": {"examples": [{"id": 17, "span": 4}]}} if task_ids == "sg" else {}

    ops.ev.keep_reference_schema = False
    ops.ev.finish({"ti": TI(), "run_id": "r1"}, {"anomalies": []}, {})
    assert calls == [("mlmd.mark_validated", {"metadata": RuntimeHook(mlops_conn_id=None).metadata, "artifact_id": 17,
                                              "run_id": "r1"})]
    calls.clear()
    with pytest.raises(DataValidationError):  # rejected data is never marked
        ops.ev.finish({"ti": TI(), "run_id": "r2"}, {"anomalies": [
            {"split": "train", "feature": "f", "kind": "k", "severity": "ERROR", "description": "d"}]}, {})
    assert calls == []


def served_registry(root, pipeline="p"):
    from airflow_mlops.utils.model_registry import ModelRegistry, ModelVersion

    registry = ModelRegistry(root)
    for version, artifact in ((1, 13), (2, 35)):
        (root / str(version)).mkdir(parents=True)
        registry._write(ModelVersion(version=version, path=str(root / str(version)), model_uri="m", status="ready",
                                     pipeline_name=pipeline, model_artifact_id=artifact))


def test_the_baseline_is_the_model_the_deployment_serves(state_dir, tmp_path, monkeypatch):
    """After a rollback to v1, v1 (not the latest blessed v2) is what a new model must beat."""
    from airflow_mlops.hooks.seldon import SeldonHook
    from airflow_mlops.serving.registry import LocalDeployment

    served_registry(tmp_path / "models")
    monkeypatch.setattr(SeldonHook, "get_deployment", lambda self, name: LocalDeployment(
        name=name, version=1, model_root=str(tmp_path / "models")))
    op = EvaluatorOperator(task_id="ev", pipeline_name="p", examples="eg", model="tr",
                           baseline_deployment="taxi")
    assert op.prepare({"run_id": "r"}) == {"baseline": {"deployment": "taxi", "version": 1, "model_artifact_id": 13}}
    assert op.companion_nodes() == [{"id": "ev.served_model", "component": "ServedModelResolver", "inputs": {},
                                     "args": {"model_artifact_id": 13}, "companion_of": "ev"}]
    assert op.node_spec(target=True)["inputs"]["baseline_model"] == {"node": "ev.served_model", "output": "model"}


@pytest.mark.parametrize("deployment, pipeline", [("missing", "p"), ("taxi", "another_pipeline")])
def test_without_a_served_model_of_the_pipeline_the_latest_blessed_is_the_baseline(state_dir, tmp_path, monkeypatch,
                                                                                    deployment, pipeline):
    from airflow_mlops.hooks.seldon import SeldonHook
    from airflow_mlops.serving.registry import LocalDeployment

    served_registry(tmp_path / "models", pipeline)

    def get_deployment(self, name):
        if name == "missing":
            raise InvalidArgumentError("deployment 'missing' does not exist (known: none)")
        return LocalDeployment(name=name, version=2, model_root=str(tmp_path / "models"))

    monkeypatch.setattr(SeldonHook, "get_deployment", get_deployment)
    op = EvaluatorOperator(task_id="ev", pipeline_name="p", examples="eg", model="tr", baseline_deployment=deployment)
    assert op.prepare({"run_id": "r"}) == {"baseline": None}
    assert op.companion_nodes()[0]["component"] == "LatestBlessedModelResolver"
    assert op.node_spec(target=True)["inputs"]["baseline_model"]["node"] == "ev.latest_blessed_model"


def test_the_validation_is_recorded_for_the_pages_accepted_or_not(ops, state_dir, monkeypatch):
    from airflow_mlops.utils.run_records import RunRecords

    monkeypatch.setattr(RuntimeHook, "run_step", lambda self, step, params, **kwargs: {"artifact_id": 17, "span": 4})

    class TI:
        def __init__(self, span):
            self.span = span

        def xcom_pull(self, task_ids):
            return {"inputs": {"examples": [{"id": 17, "span": self.span}]}} if task_ids == "sg" else {}

    ops.ev.keep_reference_schema = False
    ops.ev.finish({"ti": TI(4), "run_id": "r1"}, {"anomalies": []}, {})
    anomaly = {"split": "train", "feature": "f", "kind": "k", "severity": "ERROR", "description": "d"}
    with pytest.raises(DataValidationError):
        ops.ev.finish({"ti": TI(5), "run_id": "r2"}, {"anomalies": [anomaly]}, {})
    records = RunRecords(state_dir, "p")
    accepted, rejected = records.get("t", "r1")["ev"], records.get("t", "r2")["ev"]
    assert (accepted["component"], accepted["accepted"], accepted["spans"]) == ("ExampleValidator", True, [4])
    assert (rejected["accepted"], rejected["anomalies"], rejected["spans"]) == (False, [anomaly], [5])


def test_a_run_records_what_it_trained_evaluated_and_pushed(train_ops, state_dir, monkeypatch, tmp_path):
    from airflow_mlops.links.pages import ModelVersionLink
    from airflow_mlops.utils.run_records import RunRecords

    module = tmp_path / "my_module.py"
    module.write_text("def run_fn(fn_args):\n    pass\n")
    train_ops.tr.module_file = str(module)
    train_ops.tr.finish({"run_id": "manual__1"}, {}, {})
    train_ops.ev.metric, train_ops.ev.threshold = "AUC", 0.5
    evaluation = {"blessed": True, "metrics": {"candidate": {"auc": 0.9}, "baseline": {"auc": 0.8}},
                  "baseline_model": {"id": 4, "uri": "/m"}}
    train_ops.ev.finish({"run_id": "manual__1"}, {"evaluation": evaluation, "inputs": {"examples": [{"span": 2}]}},
                        {"baseline": None})
    assert ModelVersionLink().get_link(train_ops.ev, ti_key=None) == "/mlops/models?pipeline=p"
    monkeypatch.setattr(RuntimeHook, "run_step", lambda self, step, params, **kwargs: {
        "component": "Pusher", "execution_id": 9, "state": "COMPLETE", "outputs": {}, "pushed": True,
        "pushed_version": "3", "pushed_destination": str(state_dir / "models" / "p" / "3")})
    train_ops.pu.execute(_context({"blessed": True, "evaluation": {"metrics": {"candidate": {"auc": 0.9}}}}))
    assert ModelVersionLink().get_link(train_ops.pu, ti_key=None) == "/mlops/models/p/3"
    record = RunRecords(state_dir, "p").get("tp", "manual__1")
    import hashlib

    assert record["tr"]["module_sha256"] == hashlib.sha256(module.read_bytes()).hexdigest()
    assert record["tr"]["module_file"] == str(module) and record["tr"]["component"] == "HorovodTrainer"
    assert record["ev"]["blessed"] is True and record["ev"]["gate"]["key"] == "auc" and record["ev"]["spans"] == [2]
    assert record["ev"]["metrics"]["baseline"] == {"auc": 0.8}
    assert record["pu"]["model_version"] == 3 and record["pu"]["model_root"] == str(state_dir / "models" / "p")
