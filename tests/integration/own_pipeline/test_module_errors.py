"""Module files that cannot run, each failing once at the right task saying what (see ``conftest.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import assert_failed_once_at, tfx_example, train

pytestmark = pytest.mark.integration


def test_a_broken_module_file_fails_at_transform_saying_what(state, penguins, tmp_path):
    # a syntax error here; an import the runtime lacks, an import that raises, a missing function are refused by the
    # same check (load_module_file, before TFX runs the component): tests/runtime_side/steps/test_module_file.py
    module = tmp_path / "user_module.py"
    module.write_text("def preprocessing_fn(inputs):\n    return {k: v for k, v in inputs.items()\n")
    message = "line 2: syntax error: '{' was never closed"
    code, log, states = train(state, "broken", penguins["ready"], module_file=str(module), model_type="multiclass",
                              label_key="species_xf")
    assert code != 0
    assert_failed_once_at(log, states, "Transform", message)
    assert "Beam" not in log.split(message)[0][-2000:]  # refused before TFX ran the component


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
