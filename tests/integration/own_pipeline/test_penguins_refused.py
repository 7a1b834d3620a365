"""TFX's penguin module on data it cannot use: the published columns stop at Transform, a binary gate is
refused before TFMA (see ``conftest.py``).
"""

from __future__ import annotations

import pytest

from .conftest import assert_failed_once_at, tfx_example, train

pytestmark = pytest.mark.integration


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
