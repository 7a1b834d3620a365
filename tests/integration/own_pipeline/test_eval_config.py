"""A TFMA EvalConfig file instead of the generated gate (see ``conftest.py``).
"""

from __future__ import annotations

import re

import pytest

from airflow_mlops.utils.model_registry import ModelRegistry

from ..conftest import run_script
from .conftest import CARS_MODULE, train

pytestmark = pytest.mark.integration


def test_a_tfma_eval_config_file_replaces_the_generated_gate(state, cars, tmp_path, tfx_runtime):
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

    # the same model against a file that forgot preprocessing_function_names: the label is a transformed
    # feature, but TFMA is told to read it from the raw examples. The Evaluator's executor runs this check before
    # TFMA (a failing check fails the task once, without a retry: test_penguins.py runs that end to end)
    forgot = tmp_path / "forgot.pbtxt"
    forgot.write_text('model_specs { label_key: "Miles_per_Gallon_xf" }\n'
                      'metrics_specs { metrics { class_name: "MeanSquaredError" } }\n')
    model = ModelRegistry(state["state_dir"] / "models" / "cars_config").get("latest").path
    log = run_script(tfx_runtime, "eval_config_check.py", model, str(config), str(forgot),
                     binds=(str(tmp_path), model))
    verdicts = [line for line in log.splitlines() if line.startswith(("ACCEPTED: ", "REJECTED: "))]
    assert len(verdicts) == 2, log[-3000:]  # one line per file, in their order
    right, forgot_verdict = verdicts
    assert right.startswith("ACCEPTED: "), verdicts
    assert forgot_verdict == (
        "REJECTED: label_key 'Miles_per_Gallon_xf' is an output of the model's 'transform_features' signature, but "
        'the EvalConfig reads the label from the raw examples: add preprocessing_function_names: "transform_features" '
        "to its model_specs"), verdicts
