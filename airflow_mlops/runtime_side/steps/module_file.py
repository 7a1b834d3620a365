"""Checks of a user's TFX module file before TFX runs it (runs in the TFX runtime).

TFX reports a broken module file from deep inside Transform's Beam job or the Trainer, after
the data was read; these checks load the file first and say, in one line, what is wrong:
a file that does not exist, a syntax error (file and line), an import of a package the
runtime lacks (named), a function the component needs that the file does not define (with
those it does). They raise :class:`~airflow_mlops.runtimes.contract.RejectedInput`: the task
fails without a retry. :func:`uses_horovod` tells whether a ``run_fn`` can train data-parallel.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from airflow_mlops.runtimes.contract import RejectedInput

#: the functions each component calls
def load_module_file(path: str, functions: Sequence[str]) -> ModuleType:
    """Import the module file at ``path`` (its directory on ``sys.path`` meanwhile) and check ``functions``."""
    if not os.path.isfile(path):
        raise RejectedInput(f"module_file {path} does not exist (give the path of a Python file, as the "
                            "Airflow workers and the runtime see it)")
    with open(path, encoding="utf-8", errors="replace") as handle:
        source = handle.read()
    try:
        compile(source, path, "exec")
    except SyntaxError as err:
        raise RejectedInput(f"module_file {path} line {err.lineno}: syntax error: {err.msg}") from None
    name = "_airflow_mlops_module_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except ModuleNotFoundError as err:
        raise RejectedInput(
            f"module_file {path} imports {err.name!r}, which the tfx runtime does not have: install it into a "
            "runtime of your own (a lock file of your own, RuntimeSpec(lock_file=...); README, Runtimes) or "
            "drop the import") from None
    except Exception as err:  # noqa: BLE001 - any error of the user's code at import time
        raise RejectedInput(f"module_file {path} fails when imported: {type(err).__name__}: {err}") from None
    finally:
        if sys.path and sys.path[0] == folder:
            sys.path.pop(0)
    missing = [f for f in functions if not callable(getattr(module, f, None))]
    if missing:
        defined = sorted(n for n, v in vars(module).items() if inspect.isfunction(v) and v.__module__ == name)
        raise RejectedInput(f"module_file {path} defines no {', '.join(missing)}, which this component calls "
                            f"(it defines: {', '.join(defined) or 'no function'})")
    return module


def uses_horovod(fn: Any) -> bool:
    """Whether the file defining ``fn`` imports Horovod anywhere (at the top or inside a function).

    Read from the function's code object: TFX loads module files under generated names
    (``user_module_0``) without ``__file__``, where ``inspect.getsource(module)`` fails.
    """
    code = getattr(fn, "__code__", None)
    try:
        with open(code.co_filename, encoding="utf-8", errors="replace") as handle:
            source = handle.read()
    except (AttributeError, OSError):
        try:
            source = inspect.getsource(fn)
        except (OSError, TypeError):
            return False
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "horovod" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "horovod":
            return True
    return False
