"""The template training DAG on data and module files not written for this project (real TFX, TFMA, serving).

``mlops_train_deploy`` as shipped, run under ``airflow dags test`` with only trigger-form params
changed:

* **multi-class**: the Palmer penguins (``palmerpenguins`` ships the CSV) with TFX's own
  ``tfx/examples/penguin/penguin_utils_keras.py`` from the TFX wheel, unchanged. As published
  the CSV says ``bill_*`` where TFX's module reads ``culmen_*``: the run stops at Transform naming
  the feature and the data's columns; renamed (and the species coded 0–2, as TFX's own processed
  copy does) it trains, is gated on SparseCategoricalAccuracy with per-class and per-island
  metrics, is pushed with its feature spec and served, and answers integers for float features;
  gated as a binary model it is refused before TFMA runs, naming the output's shape;
* **regression**: Vega's cars (``vega_datasets``) with a plain Keras module of our own
  (``modules/cars_regression.py``), gated on MeanAbsoluteError (lower is better), sliced by origin;
* **TFX's taxi module** ``taxi_utils_native_keras.py``, unchanged, with ``label_key=tips_xf``;
* module and argument errors: a syntax error, a missing ``run_fn``, an import the runtime lacks,
  a wrong ``label_key`` and ``prediction_key``: each fails at the right task without a retry,
  saying what to set, and leaves what was there before (the served version) as it was.

``run_fn``s without Horovod run on one worker with a warning, whatever ``num_workers`` says.

The parts share nothing but the module's fixtures (each its own pipeline), so each is a group of its own for
pytest-xdist; the penguin model served by one test is the one the next test's failed runs leave untouched.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from airflow_mlops.hooks.seldon import SeldonHook
from airflow_mlops.utils.model_registry import ModelRegistry
from airflow_mlops.utils.public_datasets import write_cars, write_penguins
from airflow_mlops.utils.schema_store import ReferenceSchemaStore

from .conftest import stop_deployments
from .test_ingest_dag import dags_test, task_states, write_slice
from .test_serving import post, post_to

pytestmark = pytest.mark.integration
DAG_ID = "mlops_train_deploy"
CARS_MODULE = Path(__file__).parent / "modules" / "cars_regression.py"


def tfx_example(tfx_runtime, relative: str) -> str:
    found = sorted(tfx_runtime.site_root.glob(f"lib/python3*/site-packages/tfx/examples/{relative}"))
    assert found, f"no {relative} in the TFX wheel"
    return str(found[0])


@pytest.fixture(scope="module")
def state(tmp_path_factory, airflow_home):
    root = tmp_path_factory.mktemp("own")
    st = {"home": airflow_home, "state_dir": root / "state", "root": root}
    yield st
    stop_deployments(st["state_dir"])


@pytest.fixture(scope="module")
def penguins(state) -> dict[str, Path]:
    """palmerpenguins' CSV as published (bill_*), and as TFX's penguin module reads it (culmen_*, species 0-2)."""
    raw = write_penguins(state["root"] / "penguins-raw" / "span-1" / "data.csv", as_published=True)
    ready = write_penguins(state["root"] / "penguins" / "span-1" / "data.csv")
    return {"raw": raw.parent.parent, "ready": ready.parent.parent}


@pytest.fixture(scope="module")
def cars(state) -> Path:
    return write_cars(state["root"] / "cars" / "span-1" / "data.csv").parent.parent


def train(state, pipeline: str, data: Path, **params) -> tuple[int, str, dict[str, str]]:
    conf = {"pipeline_name": pipeline, "data_root": str(data), "deployment_name": pipeline.replace("_", "-"),
            "num_workers": 2, "train_steps": 200, **params}
    code, log, run_id = dags_test(state, conf, dag_id=DAG_ID)
    (state["root"] / f"{pipeline}.log").write_text(log)  # kept with the test's files
    return code, log, task_states(state, DAG_ID, run_id)


def served(state, name: str):
    return SeldonHook(mlops_conn_id=None, state_dir=str(state["state_dir"])).get_deployment(name)


def predict(state, name: str, record: dict) -> tuple[int, dict]:
    return post(served(state, name).url, {"data": {"names": list(record), "ndarray": [list(record.values())]}})


def feature_spec(state, pipeline: str, version: int = 1) -> dict:
    path = Path(ModelRegistry(state["state_dir"] / "models" / pipeline).get(version).path)
    return json.loads((path / "assets.extra" / "feature_spec.json").read_text())


def tries_of(log: str, task: str) -> int:
    """How many times ``airflow dags test`` ran ``task`` (a retried task runs again after retry_delay)."""
    return len(re.findall(rf"\[DAG TEST\] running task <TaskInstance: \S+\.{re.escape(task)} ", log))


def assert_failed_once_at(log: str, states: dict[str, str], task: str, message: str) -> None:
    assert states[task] == "failed", states
    assert message in log, log[-6000:]
    assert tries_of(log, task) == 1, f"{task} ran {tries_of(log, task)} times: bad input was retried"
    downstream = [t for t in ("Trainer", "Evaluator", "Pusher", "deploy") if states.get(t) == "success"]
    assert "deploy" not in downstream


# -- multi-class: TFX's penguin module, unchanged --------------------------------------------------------
@pytest.mark.xdist_group("own-penguins-raw")
def test_penguin_columns_the_module_does_not_read_stop_at_transform(state, penguins, tfx_runtime):
    module = tfx_example(tfx_runtime, "penguin/penguin_utils_keras.py")
    code, log, states = train(state, "penguins_raw", penguins["raw"], module_file=module, model_type="multiclass",
                              label_key="species_xf")
    assert code != 0
    assert_failed_once_at(log, states, "Transform",
                          "Transform: the module's preprocessing_fn reads feature 'culmen_length_mm', which the data "
                          "does not have (its columns: bill_depth_mm, bill_length_mm, body_mass_g, flipper_length_mm, "
                          "island, species)")
    assert states["ExampleValidator"] == "success" and states["Trainer"] == "upstream_failed"


@pytest.mark.xdist_group("own-penguins-binary")
def test_penguins_gated_as_binary_are_refused_before_tfma_naming_the_shape(state, penguins, tfx_runtime):
    module = tfx_example(tfx_runtime, "penguin/penguin_utils_keras.py")
    code, log, states = train(state, "penguins_binary", penguins["ready"], module_file=module,
                              model_type="binary", label_key="species_xf", train_steps=20)
    assert code != 0
    assert_failed_once_at(log, states, "Evaluator",
                          "metric AUC (binary) needs one value per example, but the model's output 'outputs' has "
                          "shape [None, 3] (3 values per example): for a 3-class model set model_type=multiclass")
    assert "add_input failed" not in log  # TFMA never ran
    assert not (state["state_dir"] / "models" / "penguins_binary").exists()


@pytest.mark.xdist_group("own-penguins")
def test_penguins_multiclass_blessed_pushed_served(state, penguins, tfx_runtime, monkeypatch):
    module = tfx_example(tfx_runtime, "penguin/penguin_utils_keras.py")
    code, log, states = train(state, "penguins", penguins["ready"], module_file=module, model_type="multiclass",
                              label_key="species_xf", eval_threshold=0.6, slice_features="island")
    assert code == 0 and set(states.values()) == {"success"}, (states, log[-6000:])
    assert "never uses Horovod: 2 workers would each train the whole model, so it runs once, on one worker" in log
    assert "the model is BLESSED (sparse_categorical_accuracy >= 0.6)" in log
    assert re.search(r"candidate metrics: .*precision/class_0=\d\.\d{4}.*recall/class_2=", log)
    assert re.search(r"slice island=Biscoe: .*sparse_categorical_accuracy=\d\.\d{4}", log)
    version = ModelRegistry(state["state_dir"] / "models" / "penguins").get("latest")
    assert version.version == 1 and version.metrics["sparse_categorical_accuracy"] >= 0.6
    assert feature_spec(state, "penguins") == {
        "body_mass_g": {"dtype": "int", "required": True, "kind": "numeric"},
        "culmen_depth_mm": {"dtype": "float", "required": True, "kind": "numeric"},
        "culmen_length_mm": {"dtype": "float", "required": True, "kind": "numeric"},
        "flipper_length_mm": {"dtype": "int", "required": True, "kind": "numeric"},
        # TFX's serving signature parses every raw feature but the label, so it needs the island too
        "island": {"dtype": "string", "required": True, "kind": "categorical"},
    }  # the label left out
    penguin = {"culmen_length_mm": 39, "culmen_depth_mm": 19, "flipper_length_mm": 181, "body_mass_g": 3750,
               "island": "Torgersen"}  # integers for the float culmen_* features
    status, body = predict(state, "penguins", penguin)
    assert status == 200, body
    assert len(body["data"]["ndarray"][0]) == 3  # one score per species
    status, body = predict(state, "penguins", {**penguin, "culmen_length_mm": "long"})
    assert status == 400 and "feature 'culmen_length_mm' must be float" in json.dumps(body)
    status, body = predict(state, "penguins", {k: v for k, v in penguin.items() if k != "island"})
    assert status == 400 and "feature 'island' is missing" in json.dumps(body)
    status, body = predict(state, "penguins", {**penguin, "sex": "female"})
    assert status == 400 and "unknown feature 'sex'" in json.dumps(body)
    # data not written for this project, judged on live traffic: the species come back through the feedback
    # endpoint, and the quality check's accuracy equals the accuracy of the answers the test received
    import csv

    from airflow_mlops.operators.quality import ModelQualityOperator
    from airflow_mlops.shared import typed_record

    spec = feature_spec(state, "penguins")
    with open(penguins["ready"] / "span-1" / "data.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if all(r[k] != "" for k in spec)][:120]
    url, hits = served(state, "penguins").url, 0
    for start in range(0, len(rows), 20):
        batch = rows[start:start + 20]
        status, answer = post(url, {"jsonData": {"instances": [typed_record(r, spec) for r in batch]}})
        assert status == 200, answer
        truth = [int(r["species"]) for r in batch]
        hits += sum(int(max(range(3), key=p.__getitem__) == y) for p, y in zip(answer["data"]["ndarray"], truth))
        status, _ = post_to(url, "/api/v1.0/feedback", {"request": {"meta": {"puid": answer["meta"]["puid"]}},
                                                        "truth": {"data": {"ndarray": truth}}})
        assert status == 200
    monkeypatch.setenv("AIRFLOW__MLOPS__STATE_DIR", str(state["state_dir"]))
    quality = ModelQualityOperator(task_id="quality", deployment_name="penguins", model_type="multiclass",
                                   min_labels=100).execute({"run_id": "penguins_quality"})
    served_version = quality["versions"]["1"]
    assert served_version["metric"] == "SparseCategoricalAccuracy" and served_version["samples"] == len(rows)
    assert served_version["value"] == pytest.approx(hits / len(rows))
    assert served_version["blessed_value"] == version.metrics["sparse_categorical_accuracy"]


@pytest.mark.xdist_group("own-penguins")
def test_wrong_label_and_prediction_keys_are_named_with_what_the_model_has(state, penguins, tfx_runtime):
    module = tfx_example(tfx_runtime, "penguin/penguin_utils_keras.py")
    before = served(state, "penguins").version
    schemas = ReferenceSchemaStore(state["state_dir"] / "schemas")
    reference = schemas.versions("penguins")
    code, log, states = train(state, "penguins", penguins["ready"], module_file=module, model_type="multiclass",
                              label_key="species", train_steps=20)
    assert code != 0
    assert_failed_once_at(log, states, "Evaluator",
                          "label_key 'species' is not an output of the model's 'transform_features' signature, where "
                          "TFMA reads the label; its outputs: body_mass_g_xf, culmen_depth_mm_xf, culmen_length_mm_xf, "
                          "flipper_length_mm_xf, species_xf")
    code, log, states = train(state, "penguins", penguins["ready"], module_file=module, model_type="multiclass",
                              label_key="species_xf", prediction_key="probabilities", train_steps=20)
    assert_failed_once_at(log, states, "Evaluator",
                          "prediction_key 'probabilities' is not an output of the model's 'serving_default' signature; "
                          "its outputs: outputs")
    assert served(state, "penguins").version == before == 1  # the served model is untouched
    assert schemas.versions("penguins") == reference == [1]  # and the reference schema too
    assert [v.version for v in ModelRegistry(state["state_dir"] / "models" / "penguins").versions()] == [1]


# -- regression: a module of our own --------------------------------------------------------------------
@pytest.mark.xdist_group("own-cars")
def test_cars_regression_gated_on_mean_absolute_error(state, cars):
    code, log, states = train(state, "cars", cars, module_file=str(CARS_MODULE), model_type="regression",
                              label_key="Miles_per_Gallon_xf", eval_metric="AUC")
    assert code != 0  # refused by the run's first task: nothing ingested, nothing trained
    assert_failed_once_at(log, states, "CsvExampleGen", "CsvExampleGen: the run cannot succeed: Evaluator: metric AUC "
                          "is for binary models, not regression: use one of MeanSquaredError")
    assert states["Transform"] == "upstream_failed" and not (state["state_dir"] / "models" / "cars").exists()
    code, log, states = train(state, "cars", cars, module_file=str(CARS_MODULE), model_type="regression",
                              label_key="Miles_per_Gallon_xf", eval_metric="MeanAbsoluteError", eval_threshold=8,
                              slice_features="Origin", train_steps=300)
    assert code == 0 and set(states.values()) == {"success"}, (states, log[-6000:])
    assert "the model is BLESSED (mean_absolute_error <= 8)" in log
    assert re.search(r"slice Origin=Japan: .*mean_absolute_error=\d+\.\d{4}", log)
    assert "never uses Horovod" in log
    spec = feature_spec(state, "cars")
    assert "Miles_per_Gallon" not in spec
    assert spec["Acceleration"] == {"dtype": "float", "required": True, "kind": "numeric"}
    assert spec["Origin"]["kind"] == "categorical"
    status, body = predict(state, "cars", {"Cylinders": 4, "Displacement": 97, "Horsepower": 88,
                                           "Weight_in_lbs": 2130, "Acceleration": 15, "Origin": "Japan"})
    assert status == 200, body
    mpg = body["data"]["ndarray"][0]
    assert 5 < (mpg[0] if isinstance(mpg, list) else mpg) < 60


@pytest.mark.xdist_group("own-cars-config")
def test_a_tfma_eval_config_file_replaces_the_generated_gate(state, cars, tmp_path):
    forgot = tmp_path / "forgot.pbtxt"  # the label is a transformed feature, but TFMA is told to read raw examples
    forgot.write_text('model_specs { label_key: "Miles_per_Gallon_xf" }\n'
                      'metrics_specs { metrics { class_name: "MeanSquaredError" } }\n')
    code, log, states = train(state, "cars_config", cars, module_file=str(CARS_MODULE), model_type="regression",
                              label_key="Miles_per_Gallon_xf", eval_config=str(forgot), train_steps=50)
    assert code != 0
    assert_failed_once_at(log, states, "Evaluator", "label_key 'Miles_per_Gallon_xf' is an output of the model's "
                          "'transform_features' signature, but the EvalConfig reads the label from the raw examples: "
                          'add preprocessing_function_names: "transform_features"')
    assert "add_input failed" not in log  # refused before TFMA ran
    config = tmp_path / "eval_config.pbtxt"
    config.write_text("""
        model_specs { label_key: "Miles_per_Gallon_xf" preprocessing_function_names: "transform_features" }
        slicing_specs {}
        slicing_specs { feature_keys: "Cylinders" }
        metrics_specs {
          metrics { class_name: "ExampleCount" }
          metrics { class_name: "RootMeanSquaredError"
                    threshold { value_threshold { upper_bound { value: 12.0 } } } }
        }
    """)
    code, log, states = train(state, "cars_config", cars, module_file=str(CARS_MODULE), model_type="regression",
                              label_key="ignored_when_a_file_is_given", eval_config=str(config), train_steps=300)
    assert code == 0 and set(states.values()) == {"success"}, (states, log[-6000:])
    assert f"the model is BLESSED (the thresholds of {config})" in log
    assert re.search(r"slice Cylinders=4: .*root_mean_squared_error=\d+\.\d{4}", log)


# -- TFX's own taxi module ------------------------------------------------------------------------------
@pytest.mark.xdist_group("own-tfx-taxi")
def test_tfx_taxi_module_unchanged_with_its_label(state, tfx_runtime, taxi_csv):
    data = state["root"] / "taxi"
    write_slice(taxi_csv, data / "span-1" / "data.csv", 0, 2000)
    module = tfx_example(tfx_runtime, "chicago_taxi_pipeline/taxi_utils_native_keras.py")
    code, log, states = train(state, "tfx_taxi", data, module_file=module, label_key="tips_xf", eval_threshold=0.0,
                              train_steps=100)
    assert code == 0 and set(states.values()) == {"success"}, (states, log[-6000:])
    assert "the model is BLESSED (auc >= 0" in log
    spec = feature_spec(state, "tfx_taxi")
    assert "tips" not in spec and spec["fare"]["dtype"] == "float"


# -- module file errors ---------------------------------------------------------------------------------
@pytest.mark.xdist_group("own-module-errors")
@pytest.mark.parametrize(("text", "task", "message"), [
    ("def preprocessing_fn(inputs):\n    return {k: v for k, v in inputs.items()\n",
     "Transform", "line 2: syntax error: '{' was never closed"),
    ("import lightgbm\ndef preprocessing_fn(inputs):\n    return inputs\ndef run_fn(fn_args):\n    pass\n",
     "Transform", "imports 'lightgbm', which the tfx runtime does not have"),
])
def test_a_broken_module_file_fails_at_transform_saying_what(state, penguins, tmp_path, text, task, message):
    module = tmp_path / "user_module.py"
    module.write_text(text)
    code, log, states = train(state, "broken", penguins["ready"], module_file=str(module), model_type="multiclass",
                              label_key="species_xf")
    assert code != 0
    assert_failed_once_at(log, states, task, message)
    assert "Beam" not in log.split(message)[0][-2000:]  # refused before TFX ran the component


@pytest.mark.xdist_group("own-module-errors")
def test_a_module_without_run_fn_fails_at_the_trainer_before_training(state, penguins, tfx_runtime, tmp_path):
    source = Path(tfx_example(tfx_runtime, "penguin/penguin_utils_keras.py")).read_text()
    module = tmp_path / "no_run_fn.py"
    module.write_text(source.replace("def run_fn(", "def train_fn("))
    code, log, states = train(state, "no_run_fn", penguins["ready"], module_file=str(module),
                              model_type="multiclass", label_key="species_xf")
    assert code != 0
    assert states["Transform"] == "success"
    assert_failed_once_at(log, states, "Trainer", "defines no run_fn, which this component calls (it defines: ")
    assert "starting 2 Horovod worker" not in log and "starting 1 Horovod worker" not in log
