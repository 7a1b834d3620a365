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

The fixtures and helpers of those tests, which are split into the files of this folder, which share nothing but these (each runs
pipelines of its own), so that pytest-xdist runs them side by side.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from airflow_mlops.hooks.seldon import SeldonHook
from airflow_mlops.utils.model_registry import ModelRegistry
from airflow_mlops.utils.public_datasets import write_cars, write_penguins

from ..conftest import stop_deployments
from ..test_ingest_dag import dags_test, task_states
from ..test_serving import post

DAG_ID = "mlops_train_deploy"
CARS_MODULE = Path(__file__).parents[1] / "modules" / "cars_regression.py"


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
