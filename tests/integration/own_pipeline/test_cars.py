"""A regression module of our own on Vega's cars, gated on MeanAbsoluteError (see ``conftest.py``).
"""

from __future__ import annotations

import re

import pytest

from .conftest import CARS_MODULE, assert_failed_once_at, feature_spec, predict, train

pytestmark = pytest.mark.integration


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
