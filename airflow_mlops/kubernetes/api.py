"""Calls to the Kubernetes API as the provider makes them: retried, adopted, explained.

No Airflow here: hooks build the clients, this module only uses them.

* :func:`call` runs one client call. Throttling (429, honouring ``Retry-After``), server
  errors (500, 502, 503, 504) and dropped connections are retried with exponential backoff;
  anything else becomes a :class:`KubernetesApiError` that names the call, the HTTP status and
  the API server's message. A 404 from a custom resource whose CRD is not installed becomes a
  :class:`CrdMissingError` that says which controller to install.
* :func:`acall` is the same for the asyncio client (triggers).
* :func:`owner_labels` and :func:`object_name` give the objects of a task deterministic names
  and labels (from dag_id, task_id, run_id, map_index), so a retry finds what its earlier
  try created; :func:`create_or_adopt` creates an object or, on 409, adopts the existing one
  when those labels say it is ours (and refuses when they do not).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Answers worth asking again: throttled, or the server (or a proxy in front of it) failed.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MANAGED_BY_LABEL, MANAGED_BY = "app.kubernetes.io/managed-by", "airflow-mlops"
DAG_LABEL, TASK_LABEL, RUN_LABEL = "airflow-mlops/dag-id", "airflow-mlops/task-id", "airflow-mlops/run-key"
RUN_ANNOTATION = "airflow-mlops/run-id"

#: The controller that serves each custom API group, and how to get it.
CONTROLLERS: dict[str, str] = {
    "kubeflow.org": "the Kubeflow MPI Operator (kubeflow.org/v2beta1 MPIJob); install it as "
                    "deploy/kubernetes/README.md says",
    "machinelearning.seldon.io": "the Seldon Core v1 operator (machinelearning.seldon.io/v1 SeldonDeployment); "
                                 "install it as deploy/kubernetes/README.md says",
    "trainer.kubeflow.org": "Kubeflow Trainer v2 (trainer.kubeflow.org/v1alpha1 TrainJob, for launcher=\"trainjob\"); "
                            "install it and the provider's TrainingRuntimes as deploy/kubernetes/README.md says, "
                            "or use launcher=\"mpijob\"",
}


class KubernetesApiError(Exception):
    """A call to the API server failed.

    :param message: what was being done, and the API server's answer.
    :param status: the HTTP status, or None when the server could not be reached.
    :param reason: the ``reason`` of the Status object (``AlreadyExists``, ``Conflict``…).
    """

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason

    @property
    def not_found(self) -> bool:
        """The object asked for does not exist (a 404 for it; not one for a resource type the server lacks)."""
        return self.status == 404


class CrdMissingError(KubernetesApiError):
    """The custom resource is not known to the API server: its operator is not installed."""

    @property
    def not_found(self) -> bool:
        return False


@dataclass(frozen=True)
class Backoff:
    """How often and how patiently to retry.

    :param attempts: calls in all (the first one included).
    :param initial: seconds before the second call; doubled each time, with jitter.
    :param maximum: longest wait between two calls (``Retry-After`` included).
    """

    attempts: int = 5
    initial: float = 1.0
    maximum: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.maximum)
        base = min(self.initial * 2 ** (attempt - 1), self.maximum)
        return base * random.uniform(0.8, 1.0)


DEFAULT_BACKOFF = Backoff()


def status_body(exc: Any) -> dict[str, Any]:
    """The ``kind: Status`` object of an ``ApiException`` (sync or asyncio client), or {}."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def api_message(exc: Any) -> str:
    """The ``message`` of the Status object the API server sent, else its reason."""
    return str(status_body(exc).get("message") or exc.reason or exc.body or "no message")


def _retry_after(exc: Any) -> float | None:
    value = (getattr(exc, "headers", None) or {}).get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def is_missing_resource_type(exc: Any) -> bool:
    """A 404 about the resource type itself (no such API), not about one object of it."""
    if getattr(exc, "status", None) != 404:
        return False
    body = status_body(exc)
    return not (body.get("details") or {}).get("name") and "could not find the requested resource" in str(
        body.get("message") or exc.body or ""
    )


def _error(what: str, exc: Any, group: str | None) -> KubernetesApiError:
    body = status_body(exc)
    if group and is_missing_resource_type(exc):
        controller = CONTROLLERS.get(group, f"the controller of the {group} API group")
        return CrdMissingError(
            f"{what}: the API server does not know the {group} API: {controller}", status=404, reason="NotFound"
        )
    return KubernetesApiError(
        f"{what}: the API server answered {exc.status} {exc.reason}: {api_message(exc)}",
        status=exc.status,
        reason=body.get("reason"),
    )


def _connection_errors() -> tuple[type[BaseException], ...]:
    from urllib3.exceptions import HTTPError

    return (HTTPError, ConnectionError)


def call(
    what: str,
    fn: Callable[..., T],
    *args: Any,
    api_group: str | None = None,
    backoff: Backoff = DEFAULT_BACKOFF,
    sleep: Callable[[float], None] = time.sleep,
    **kwargs: Any,
) -> T:
    """``fn(*args, **kwargs)`` with the retries and errors described in the module docstring.

    :param what: what the call does, for messages (``creating pod ns/name``).
    :param api_group: the custom API group the call is about (a 404 for the type names its controller).
    """
    from kubernetes.client.exceptions import ApiException

    for attempt in range(1, backoff.attempts + 1):
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            if exc.status not in RETRY_STATUSES or attempt == backoff.attempts:
                raise _error(what, exc, api_group) from exc
            delay = backoff.delay(attempt, _retry_after(exc) if exc.status == 429 else None)
            log.warning("%s: the API server answered %s %s, asking again in %.1f s (attempt %d of %d)",
                        what, exc.status, exc.reason, delay, attempt + 1, backoff.attempts)
        except _connection_errors() as exc:
            if attempt == backoff.attempts:
                raise KubernetesApiError(
                    f"{what}: cannot reach the API server after {backoff.attempts} attempts: {exc}"
                ) from exc
            delay = backoff.delay(attempt)
            log.warning("%s: %s, asking again in %.1f s (attempt %d of %d)",
                        what, exc, delay, attempt + 1, backoff.attempts)
        sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


async def acall(
    what: str,
    fn: Callable[..., Awaitable[T]],
    *args: Any,
    api_group: str | None = None,
    backoff: Backoff = DEFAULT_BACKOFF,
    **kwargs: Any,
) -> T:
    """:func:`call` for the ``kubernetes_asyncio`` client (waits with ``asyncio.sleep``)."""
    from aiohttp import ClientError
    from kubernetes_asyncio.client.exceptions import ApiException

    for attempt in range(1, backoff.attempts + 1):
        try:
            return await fn(*args, **kwargs)
        except ApiException as exc:
            if exc.status not in RETRY_STATUSES or attempt == backoff.attempts:
                raise _error(what, exc, api_group) from exc
            delay = backoff.delay(attempt, _retry_after(exc) if exc.status == 429 else None)
            log.warning("%s: the API server answered %s %s, asking again in %.1f s", what, exc.status, exc.reason,
                        delay)
        except (ClientError, ConnectionError, asyncio.TimeoutError) as exc:
            if attempt == backoff.attempts:
                raise KubernetesApiError(
                    f"{what}: cannot reach the API server after {backoff.attempts} attempts: {exc!r}"
                ) from exc
            delay = backoff.delay(attempt)
            log.warning("%s: %r, asking again in %.1f s", what, exc, delay)
        await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def read_log(core_v1: Any, what: str, name: str, namespace: str, *, backoff: Backoff = DEFAULT_BACKOFF,
             sleep: Callable[[float], None] = time.sleep, **kwargs: Any) -> str:
    """A pod's log as text. Read raw (``_preload_content=False``): the client's own decoding of
    ``read_namespaced_pod_log`` gives ``"b'...'"`` (the repr of the bytes) in kubernetes 36."""
    response = call(what, core_v1.read_namespaced_pod_log, name, namespace, _preload_content=False,
                    backoff=backoff, sleep=sleep, **kwargs)
    try:
        return response.data.decode("utf-8", errors="replace")
    finally:
        response.release_conn()


# -- ownership ------------------------------------------------------------------------------
def _label_value(value: str) -> str:
    """``value`` as a label value (<= 63 of ``[A-Za-z0-9_.-]``, alphanumeric at both ends)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", value).strip("-_.")
    if len(cleaned) > 63:
        digest = hashlib.sha256(value.encode()).hexdigest()[:8]
        cleaned = f"{cleaned[:54].rstrip('-_.')}-{digest}"
    return cleaned


def run_key(dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> str:
    """A short digest naming one task instance of one DAG run (all its tries)."""
    return hashlib.sha256(f"{dag_id}\0{task_id}\0{run_id}\0{map_index}".encode()).hexdigest()[:16]


def owner_labels(dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> dict[str, str]:
    """The labels marking an object as made by this task instance (any try of it)."""
    return {
        MANAGED_BY_LABEL: MANAGED_BY,
        DAG_LABEL: _label_value(dag_id),
        TASK_LABEL: _label_value(task_id),
        RUN_LABEL: run_key(dag_id, task_id, run_id, map_index),
    }


def label_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def object_name(prefix: str, dag_id: str, task_id: str, run_id: str, map_index: int = -1, *,
                max_length: int = 63) -> str:
    """A deterministic DNS-1123 name ``<prefix>-<task>-<digest>`` for a task instance's object."""
    digest = run_key(dag_id, task_id, run_id, map_index)[:10]
    readable = re.sub(r"[^a-z0-9]+", "-", f"{prefix}-{task_id}".lower()).strip("-")
    return f"{readable[:max_length - 11].rstrip('-')}-{digest}"


def is_ours(obj: Mapping[str, Any] | Any, labels: Mapping[str, str]) -> bool:
    """Whether ``obj`` (a dict or a client model) carries every label of ``labels``."""
    if isinstance(obj, Mapping):
        have = (obj.get("metadata") or {}).get("labels") or {}
    else:
        have = getattr(getattr(obj, "metadata", None), "labels", None) or {}
    return all(have.get(key) == value for key, value in labels.items())


#: Seconds a deleted object may take to go (graceful termination, finalizers) before a replacement gives up.
DELETE_TIMEOUT = 120.0


def wait_gone(exists: Callable[[], bool], *, timeout: float = DELETE_TIMEOUT, poll: float = 1.0,
              sleep: Callable[[float], None] = time.sleep) -> bool:
    """Poll ``exists()`` until it is False (an object deleted, its finalizers done); False after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while exists():
        if time.monotonic() >= deadline:
            return False
        sleep(poll)
    return True


def create_or_adopt(
    what: str,
    create: Callable[[], T],
    read: Callable[[], T],
    labels: Mapping[str, str],
    *,
    api_group: str | None = None,
    backoff: Backoff = DEFAULT_BACKOFF,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[T, bool]:
    """Create an object, or adopt the one with its name when it carries ``labels``.

    A create whose answer was lost (dropped connection) and is retried answers 409 too: then
    the object found is the one this call created, and it is adopted like an earlier try's.

    :returns: ``(object, adopted)``.
    :raises KubernetesApiError: 409 for an object of the same name that is not ours.
    """
    try:
        return call(what, create, api_group=api_group, backoff=backoff, sleep=sleep), False
    except KubernetesApiError as exc:
        if exc.status != 409:
            raise
    existing = call(f"{what} (reading the existing one)", read, api_group=api_group, backoff=backoff, sleep=sleep)
    if not is_ours(existing, labels):
        raise KubernetesApiError(
            f"{what}: an object of that name already exists and was not made by this task "
            f"(its labels do not match {label_selector(labels)}); delete or rename it",
            status=409, reason="AlreadyExists",
        )
    return existing, True
