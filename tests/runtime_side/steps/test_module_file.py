"""Checks of a user's TFX module file (airflow_mlops.runtime_side.steps.module_file), on small module files."""

from __future__ import annotations

import pytest

from airflow_mlops.runtimes.contract import RejectedInput
from airflow_mlops.runtime_side.steps.module_file import load_module_file, uses_horovod


def module(tmp_path, text: str, name: str = "user_module.py") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_module_with_both_functions_loads_and_may_import_its_neighbours(tmp_path):
    module(tmp_path, "SCALE = 3\n", name="helpers.py")
    path = module(tmp_path, "import helpers\ndef preprocessing_fn(inputs):\n    return inputs\n"
                            "def run_fn(fn_args):\n    return helpers.SCALE\n")
    loaded = load_module_file(path, ("preprocessing_fn", "run_fn"))
    assert loaded.run_fn(None) == 3


@pytest.mark.parametrize(("text", "message"), [
    ("def preprocessing_fn(inputs):\n    return inputs +\n", r"user_module.py line 2: syntax error: invalid syntax"),
    ("import no_such_package_xyz\ndef run_fn(a):\n    pass\n",
     r"imports 'no_such_package_xyz', which the tfx runtime does not have"),
    ("raise RuntimeError('boom')\n", r"fails when imported: RuntimeError: boom"),
    ("def preprocessing_fn(inputs):\n    return inputs\ndef helper():\n    pass\n",
     r"defines no run_fn, which this component calls \(it defines: helper, preprocessing_fn\)"),
    ("run_fn = 3\n", r"defines no run_fn"),
])
def test_broken_module_files_are_rejected_naming_the_problem(tmp_path, text, message):
    with pytest.raises(RejectedInput, match=message):
        load_module_file(module(tmp_path, text), ("run_fn",))


def test_a_missing_module_file_is_named(tmp_path):
    with pytest.raises(RejectedInput, match=r"module_file .*/nope.py does not exist"):
        load_module_file(str(tmp_path / "nope.py"), ("run_fn",))


def test_horovod_use_is_found_at_the_top_or_inside_a_function(tmp_path):
    plain = load_module_file(module(tmp_path, "import os\ndef run_fn(a):\n    return os.sep\n", "plain.py"), ("run_fn",))
    nested = load_module_file(module(tmp_path, "def run_fn(a):\n    import horovod.tensorflow as hvd\n", "nested.py"),
                              ("run_fn",))
    from_import = load_module_file(module(tmp_path, "def run_fn(a):\n    from horovod.tensorflow import keras\n", "top.py"),
                           ("run_fn",))
    assert not uses_horovod(plain.run_fn)
    assert uses_horovod(nested.run_fn) and uses_horovod(from_import.run_fn)


def test_horovod_use_is_found_in_a_module_loaded_as_tfx_loads_them(tmp_path, monkeypatch):
    """TFX loads a module file as ``user_module_0`` without ``__file__`` (inspect.getsource(module) fails)."""
    import sys
    import types

    path = tmp_path / "taxi_like.py"
    path.write_text("import os\n\ndef run_fn(fn_args):\n    import horovod.tensorflow as hvd\n    return hvd\n")
    module = types.ModuleType("user_module_0")
    exec(compile(path.read_text(), str(path), "exec"), module.__dict__)  # noqa: S102 - the test's own file
    monkeypatch.setitem(sys.modules, "user_module_0", module)
    module.run_fn.__module__ = "user_module_0"
    assert uses_horovod(module.run_fn)
