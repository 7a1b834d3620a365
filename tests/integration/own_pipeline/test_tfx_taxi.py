"""TFX's own taxi module, unchanged, with its label (see ``conftest.py``).
"""

from __future__ import annotations

import pytest

from .conftest import feature_spec, tfx_example, train
from ..test_ingest_dag import write_slice

pytestmark = pytest.mark.integration


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
