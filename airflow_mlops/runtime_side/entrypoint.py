"""Run one step request inside a runtime: ``python -m airflow_mlops.runtime_side.entrypoint REQ RES``.

Standard library only at import time. The process always tries to write a result file:
``succeeded`` with the step's outputs, or ``failed`` with the error's type, message and
details (a :class:`~airflow_mlops.runtimes.contract.StepError` is an expected failure;
any other exception is logged with its traceback). It exits 0 when a result was written,
so the caller reads the status from the result; it exits non-zero only when it could not
write one.

Each step gets its own temporary directory (``TMPDIR`` and :data:`tempfile.tempdir`, so
the processes it starts inherit it): the request's ``scratch_dir`` (its caller removes it
after the step, even one that crashed), else a new one; it is emptied when the step ends or
is stopped. So libraries that leave
``tempfile.mkdtemp()`` directories behind (TFX writes a ~50 MB package for every Beam
component run and never removes it) cannot fill the machine's ``/tmp``.

The process owns everything the step starts: it is a child subreaper, it gets SIGTERM
when its parent (the Airflow task) dies, and on SIGTERM it stops all its descendants,
detached ones included (Horovod's workers), before it exits.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from airflow_mlops.runtimes.contract import (
    RESULT_MARKER,
    STATUS_FAILED,
    STATUS_SUCCEEDED,
    ContractError,
    RejectedInput,
    StepError,
    StepRequest,
    StepResult,
    write_json_atomic,
)
from airflow_mlops.runtimes import reaper
from airflow_mlops.runtime_side.steps import STEPS

log = logging.getLogger("airflow_mlops.runtime")

#: The running step's temporary directory, removed on SIGTERM too (see :func:`step_tempdir`).
_step_tmp: str | None = None


def resolve_step(name: str):
    """Import and return the function registered for step ``name``."""
    try:
        target = STEPS[name]
    except KeyError:
        raise ContractError(f"unknown step {name!r}; this runtime knows {sorted(STEPS)}") from None
    module_name, _, func_name = target.partition(":")
    return getattr(importlib.import_module(module_name), func_name)


def execute(request: StepRequest) -> StepResult:
    """Run ``request`` in this process and turn every outcome into a :class:`StepResult`."""
    started = time.monotonic()
    try:
        func = resolve_step(request.step)
        outputs: dict[str, Any] = func(request.params, request.context) or {}
    except StepError as err:
        log.error("step %s failed: %s", request.step, err.message)
        return StepResult(
            status=STATUS_FAILED,
            error={"type": err.kind, "message": err.message, "details": err.details},
        )
    except RejectedInput as err:  # the user's input cannot work as given: not retried
        log.error("step %s refused its input: %s", request.step, err)
        return StepResult(status=STATUS_FAILED, error={"type": "InvalidInput", "message": str(err), "details": []})
    except Exception as err:  # noqa: BLE001 - every failure must become a result
        log.error("step %s raised:\n%s", request.step, traceback.format_exc())
        return StepResult(
            status=STATUS_FAILED,
            error={"type": type(err).__name__, "message": str(err) or repr(err), "details": []},
        )
    log.info("step %s succeeded in %.1f s", request.step, time.monotonic() - started)
    return StepResult(status=STATUS_SUCCEEDED, outputs=outputs)


@contextmanager
def step_tempdir(path: str | None = None) -> Iterator[str]:
    """``path`` (created if missing) or a new directory, as the temporary directory of one step
    and the processes it starts; removed when the step ends."""
    global _step_tmp
    if path:
        os.makedirs(path, exist_ok=True)
    else:
        path = tempfile.mkdtemp(prefix="airflow-mlops-step-")
    _step_tmp = path
    saved_env, saved_default = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = path
    tempfile.tempdir = path
    try:
        yield path
    finally:
        tempfile.tempdir = saved_default
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(path, ignore_errors=True)
        _step_tmp = None


def _on_sigterm(signum: int, frame: Any) -> None:
    reaper.stop_descendants(grace=3.0)
    if _step_tmp:
        shutil.rmtree(_step_tmp, ignore_errors=True)
    os._exit(128 + signum)


def own_process_tree() -> None:
    """Make the step's whole process tree stop with this process (see the module docstring)."""
    reaper.become_subreaper()
    signal.signal(signal.SIGTERM, _on_sigterm)
    reaper.die_with_parent(signal.SIGTERM)


USAGE = (
    "usage: python -m airflow_mlops.runtime_side.entrypoint REQUEST.json RESULT.json\n"
    "   or: python -m airflow_mlops.runtime_side.entrypoint --request-env VAR --result-stdout   (in a pod)"
)


def main(argv: list[str] | None = None) -> int:
    """Run one request: from a file to a result file, or (in a pod) from an environment
    variable to a result line on stdout (see :data:`~airflow_mlops.runtimes.contract.RESULT_MARKER`)."""
    argv = sys.argv[1:] if argv is None else argv
    in_pod = len(argv) == 3 and argv[0] == "--request-env" and argv[2] == "--result-stdout"
    if len(argv) != 2 and not in_pod:
        print(USAGE, file=sys.stderr)
        return 2
    # force: in a warm runtime, preloaded libraries (absl) already configured the root logger
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    try:
        if in_pod:
            text = os.environ.get(argv[1])
            if not text:
                raise ValueError(f"the environment variable {argv[1]} holding the step request is not set")
            data = json.loads(text)
        else:
            with open(argv[0]) as handle:
                data = json.load(handle)
        request = StepRequest.from_dict(data)
    except (OSError, ValueError) as err:
        result = StepResult(
            status=STATUS_FAILED, error={"type": "ContractError", "message": str(err), "details": []}
        )
    else:
        with step_tempdir(request.scratch_dir):
            result = execute(request)
    if in_pod:
        sys.stderr.flush()
        sys.stdout.write(f"\n{RESULT_MARKER}{result.to_json()}\n")
        sys.stdout.flush()
        return 0 if result.succeeded else 1  # a failed step is a failed pod (kept to inspect, not re-adopted)
    try:
        write_json_atomic(argv[1], result.to_json())
    except OSError as err:
        print(f"could not write the step result to {argv[1]}: {err}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    own_process_tree()
    sys.exit(main())
