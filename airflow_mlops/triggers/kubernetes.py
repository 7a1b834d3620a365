"""The part the triggers that wait on one Kubernetes object share: where it is, and how to wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class KubernetesObjectTrigger(BaseTrigger):
    """Base of a trigger that polls one namespaced object through an Airflow Kubernetes connection.

    Stores its arguments and serializes them under the subclass's own class path; subclasses
    give the defaults and ``run``.

    :param name: the object.
    :param namespace: its namespace.
    :param kubernetes_conn_id: the Airflow Kubernetes connection.
    :param poll_interval: seconds between polls.
    :param timeout: seconds before giving up (None: no limit).
    """

    def __init__(self, name: str, namespace: str, kubernetes_conn_id: str, poll_interval: float = 10.0,
                 timeout: float | None = None) -> None:
        super().__init__()
        self.name = name
        self.namespace = namespace
        self.kubernetes_conn_id = kubernetes_conn_id
        self.poll_interval = poll_interval
        self.timeout = timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"name": self.name, "namespace": self.namespace, "kubernetes_conn_id": self.kubernetes_conn_id,
                 "poll_interval": self.poll_interval, "timeout": self.timeout})


class TrainingJobTrigger(KubernetesObjectTrigger):
    """Base of a trigger that polls a training job's state (an MPIJob, a TrainJob) until it ``Succeeded`` or ``Failed``.

    Yields one event: ``status`` is ``success``, ``failed`` (with the job's ``reason`` and
    ``message``), ``timeout``, or ``error`` (the job was deleted, its operator is not installed,
    the API kept failing: ``message`` says which). API calls are retried with backoff
    (:func:`airflow_mlops.kubernetes.api.acall`); nothing blocks the event loop. Subclasses name
    the resource and how its state is read (:meth:`resource`).
    """

    def resource(self) -> tuple[str, str, str, str, Callable[[Mapping[str, Any]], tuple[str, str, str]]]:
        """``(group, version, plural, kind, state)``: ``state(job) -> (state, reason, message)``."""
        raise NotImplementedError

    def _event(self, status: str, **fields: Any) -> TriggerEvent:
        return TriggerEvent({"status": status, "name": self.name, "namespace": self.namespace, **fields})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook
        from kubernetes_asyncio.client import CustomObjectsApi

        from airflow_mlops.kubernetes.api import KubernetesApiError, acall

        group, version, plural, kind, job_state = self.resource()
        where = f"{kind} {self.namespace}/{self.name}"
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        seen = None
        async with AsyncKubernetesHook(conn_id=self.kubernetes_conn_id).get_conn() as client:
            api = CustomObjectsApi(client)
            while True:
                try:
                    job = await acall(f"reading {where}", api.get_namespaced_custom_object,
                                      group, version, self.namespace, plural, self.name, api_group=group)
                except KubernetesApiError as exc:
                    message = f"{where} was deleted before it ended" if exc.not_found else str(exc)
                    yield self._event("error", message=message)
                    return
                state, reason, message = job_state(job)
                if state != seen:
                    self.log.info("%s: %s%s", where, state, f" ({reason}: {message})" if reason else "")
                    seen = state
                if state == "Succeeded":
                    yield self._event("success", state=state, reason=reason, message=message)
                    return
                if state == "Failed":
                    yield self._event("failed", state=state, reason=reason, message=message)
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    yield self._event("timeout", state=state,
                                      message=f"{where} still {state} after {self.timeout:.0f} s")
                    return
                await asyncio.sleep(self.poll_interval)
