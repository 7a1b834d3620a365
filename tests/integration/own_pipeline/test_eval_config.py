"""A TFMA EvalConfig file instead of the generated gate (see ``conftest.py``).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

import airflow_mlops.runtime_side.modules as modules
from airflow_mlops.runtimes.local import runtime_command
from airflow_mlops.utils.model_registry import ModelRegistry

from .conftest import CARS_MODULE, train

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).parents[1] / "scripts" / "eval_config_check.py"


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
    package_parent = str(Path(modules.__file__).parents[3])
    answers = {}
    for name, file in (("right", config), ("forgot", forgot)):
        command, env = runtime_command(tfx_runtime, ["python", str(SCRIPT), model, str(file)],
                                       env={"PYTHONPATH": package_parent, "TF_CPP_MIN_LOG_LEVEL": "2"},
                                       binds=[package_parent, str(SCRIPT.parent), str(tmp_path), model])
        out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        answers[name] = out.stdout.strip().splitlines()[-1]
    assert answers["right"].startswith("ACCEPTED: "), answers
    assert answers["forgot"] == (
        "REJECTED: label_key 'Miles_per_Gallon_xf' is an output of the model's 'transform_features' signature, but "
        'the EvalConfig reads the label from the raw examples: add preprocessing_function_names: "transform_features" '
        "to its model_specs"), answers
