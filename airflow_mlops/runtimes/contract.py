"""The versioned contract between Airflow and a runtime (standard library only).

A step is run by starting ``python -m airflow_mlops.runtime_side.entrypoint REQUEST RESULT``
inside the runtime. ``REQUEST`` is a JSON file holding a :class:`StepRequest`; the
runtime writes a :class:`StepResult` to ``RESULT`` (atomically) and streams its log on
stdout/stderr. The same request can be run by any backend (a local process, a chroot,
a Kubernetes pod): only the way the process is started differs.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Bumped on any incompatible change of the request or result shape.
CONTRACT_VERSION = 1

STATUS_SUCCEEDED = "succeeded"
STATUS_FAILED = "failed"
STATUSES = (STATUS_SUCCEEDED, STATUS_FAILED)


#: In a pod (Kubernetes backend) the request comes in this environment variable ...
REQUEST_ENV = "AIRFLOW_MLOPS_STEP_REQUEST"
#: ... and the result is printed on stdout as one line starting with this marker.
RESULT_MARKER = "AIRFLOW_MLOPS_RESULT "


def is_result_line(line: str) -> bool:
    """Whether a log line is a pod's result line (see :data:`RESULT_MARKER`)."""
    return line.lstrip().startswith(RESULT_MARKER)


def result_from_log(lines: list[str] | str) -> StepResult:
    """The :class:`StepResult` a pod printed (the last marker line of its log)."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    for line in reversed(lines):
        if is_result_line(line):
            try:
                return StepResult.from_dict(json.loads(line.lstrip()[len(RESULT_MARKER):]))
            except json.JSONDecodeError as err:
                raise ContractError(f"the step's result line is not valid JSON: {err}") from None
    raise ContractError("the step printed no result line (it died before it could, or its log was cut)")


class ContractError(ValueError):
    """A request or result does not follow the contract."""


@dataclass
class StepRequest:
    """What to run: a step name (``"tfx.run_node"``), its JSON parameters and context.

    :param step: name of a step registered in :data:`airflow_mlops.runtime_side.steps.STEPS`.
    :param params: JSON-serialisable parameters of the step.
    :param context: where the request comes from (dag_id, task_id, run_id, try_number).
    :param scratch_dir: the step's temporary directory (``TMPDIR``), created by the caller and
        removed by it after the step, whatever happened; None: the runtime makes its own.
    """

    step: str
    params: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    scratch_dir: str | None = None
    contract_version: int = CONTRACT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> StepRequest:
        if not isinstance(data, dict):
            raise ContractError(f"a step request must be a JSON object, got {type(data).__name__}")
        version = data.get("contract_version")
        if version != CONTRACT_VERSION:
            raise ContractError(
                f"step request has contract_version {version!r}; this runtime speaks {CONTRACT_VERSION}"
            )
        step = data.get("step")
        if not isinstance(step, str) or not step:
            raise ContractError("step request has no 'step' name")
        params = data.get("params", {})
        context = data.get("context", {})
        if not isinstance(params, dict) or not isinstance(context, dict):
            raise ContractError("step request 'params' and 'context' must be JSON objects")
        scratch_dir = data.get("scratch_dir")
        if scratch_dir is not None and not (isinstance(scratch_dir, str) and os.path.isabs(scratch_dir)):
            raise ContractError(f"step request 'scratch_dir' must be an absolute path, got {scratch_dir!r}")
        return cls(step=step, params=params, context=context, scratch_dir=scratch_dir)


@dataclass
class StepResult:
    """What came back: ``status`` is ``succeeded`` or ``failed``.

    :param outputs: the step's JSON outputs (for a failed step, what is known so far).
    :param error: for a failed step: ``type``, ``message`` and a list of ``details``.
    """

    status: str
    outputs: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    contract_version: int = CONTRACT_VERSION

    @property
    def succeeded(self) -> bool:
        return self.status == STATUS_SUCCEEDED

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, data: Any) -> StepResult:
        if not isinstance(data, dict):
            raise ContractError(f"a step result must be a JSON object, got {type(data).__name__}")
        if data.get("contract_version") != CONTRACT_VERSION:
            raise ContractError(
                f"step result has contract_version {data.get('contract_version')!r}; "
                f"expected {CONTRACT_VERSION}"
            )
        status = data.get("status")
        if status not in STATUSES:
            raise ContractError(f"step result has status {status!r}; expected one of {STATUSES}")
        return cls(status=status, outputs=data.get("outputs") or {}, error=data.get("error"))

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> StepResult:
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            raise ContractError(f"the runtime wrote no result file at {path}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ContractError(f"the result file {path} is not valid JSON: {err}") from None
        return cls.from_dict(data)


@contextmanager
def directory_lock(directory: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the exclusive lock of ``directory`` (its ``.lock`` file, created with the directory if need be):
    changes of what it holds, from any process, wait for each other."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    with open(Path(directory) / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_json_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class StepError(Exception):
    """Raised by a step for an expected failure: the message and details reach the task log.

    :param message: one line saying what is wrong and where.
    :param details: a list of JSON objects (for example one per data anomaly).
    """

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None, *, kind: str = "StepError"):
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.kind = kind


class RejectedInput(Exception):
    """Raised inside a runtime (by a step or a TFX executor) when the user's input cannot work as given:
    a label or output the model lacks, a module file that does not load, data without a feature the
    module reads. The step fails with kind ``InvalidInput``, which is not retried; the message says what
    to set."""
