"""Errors of this provider; all are :class:`AirflowException` so Airflow fails the task with them."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException


class MlopsException(AirflowException):
    """Base class of this provider's errors."""


class InvalidArgumentError(MlopsException, AirflowFailException):
    """An operator argument (often a rendered DAG param) is wrong; retrying cannot help."""


class SeldonDeployError(MlopsException):
    """A model version could not be deployed; the deployment keeps serving what it served before."""


class RuntimeUnavailableError(MlopsException):
    """A runtime cannot be built or started on this machine (the message says why and what to do)."""


class RuntimeStepFailed(MlopsException):
    """A runtime step failed: non-zero exit, no result, or a result with ``status: failed``."""

    def __init__(self, message: str, *, step: str, error: dict[str, Any] | None = None, outputs: dict | None = None):
        super().__init__(message)
        self.step = step
        self.error = error or {}
        self.outputs = outputs or {}

    @property
    def details(self) -> list[dict[str, Any]]:
        return list(self.error.get("details") or [])


class DataValidationError(MlopsException, AirflowFailException):
    """ExampleValidator found anomalies: one entry per (split, feature).

    The task fails without retrying: the same data gives the same anomalies.
    """

    def __init__(self, message: str, anomalies: list[dict[str, Any]]):
        super().__init__(message)
        self.anomalies = anomalies


class RuntimeStepRejected(RuntimeStepFailed, AirflowFailException):
    """A step failed on its input (e.g. a malformed CSV): the task fails without retrying."""


class StepOutOfMemory(RuntimeStepFailed, AirflowFailException):
    """A step's container was killed by its memory limit (``OOMKilled``): the task fails without retrying, as
    the same limit would kill it again; the message names the limit and the setting that raises it."""


#: How a step that hit one of its limits fails: an ``OOMKilled`` container is not retried; a step stopped at
#: its deadline (``DeadlineExceeded``) is, as Airflow retries a task past its ``execution_timeout``.
LIMIT_FAILURES: dict[str, type[RuntimeStepFailed]] = {"OOMKilled": StepOutOfMemory}


def limit_failure(fault: str | None) -> type[RuntimeStepFailed]:
    """The error class of a step that ended on ``fault`` (``OOMKilled``, ``DeadlineExceeded``, or None)."""
    return LIMIT_FAILURES.get(fault or "", RuntimeStepFailed)


#: Error types a runtime reports for bad input: retrying the same request gives the same answer.
NON_RETRYABLE_ERRORS = frozenset({"MalformedInput", "ContractError", "InvalidInput"})


def step_failure(error: dict[str, Any] | None) -> type[RuntimeStepFailed]:
    """The error class of a step that failed with ``error`` (its result's): :class:`RuntimeStepRejected`
    for bad input (not retried), else :class:`RuntimeStepFailed` — whatever ran the step."""
    return RuntimeStepRejected if (error or {}).get("type") in NON_RETRYABLE_ERRORS else RuntimeStepFailed
