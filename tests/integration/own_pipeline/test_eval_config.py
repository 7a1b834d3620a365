"""A TFMA EvalConfig file instead of the generated gate (see ``conftest.py``).
"""

from __future__ import annotations

import re

import pytest

from .conftest import CARS_MODULE, assert_failed_once_at, train

pytestmark = pytest.mark.integration


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
