"""Module files that cannot run, each failing once at the right task saying what (see ``conftest.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import assert_failed_once_at, tfx_example, train

pytestmark = pytest.mark.integration


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
