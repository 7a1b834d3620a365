"""Wait, without holding a worker slot, until an MPIJob (Horovod training) ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import TriggerEvent

from airflow_mlops.triggers.kubernetes import KubernetesObjectTrigger


class MPIJobTrigger(KubernetesObjectTrigger):
    """Poll an MPIJob's conditions with the asyncio Kubernetes client until it ``Succeeded`` or ``Failed``.

    Yields one event: ``status`` is ``success``, ``failed`` (with the condition's ``reason``
    and ``message``), ``timeout``, or ``error`` (the job was deleted, the MPI Operator is not
    installed, the API kept failing: ``message`` says which). API calls are retried with
    backoff (:func:`airflow_mlops.kubernetes.api.acall`); nothing blocks the event loop.

    :param name: the MPIJob.
    :param namespace: its namespace.
    :param kubernetes_conn_id: the Airflow Kubernetes connection.
    :param poll_interval: seconds between polls.
    :param timeout: seconds before giving up (None: wait as long as the job runs).
    """

    def __init__(self, name: str, namespace: str, kubernetes_conn_id: str, poll_interval: float = 10.0,
                 timeout: float | None = None) -> None:
        super().__init__(name, namespace, kubernetes_conn_id, poll_interval, timeout)

    def _event(self, status: str, **fields: Any) -> TriggerEvent:
        return TriggerEvent({"status": status, "name": self.name, "namespace": self.namespace, **fields})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook
        from kubernetes_asyncio.client import CustomObjectsApi

        from airflow_mlops.kubernetes.api import KubernetesApiError, acall
        from airflow_mlops.kubernetes.mpijob import GROUP, KIND, PLURAL, VERSION, mpijob_state

        where = f"{KIND} {self.namespace}/{self.name}"
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        seen = None
        async with AsyncKubernetesHook(conn_id=self.kubernetes_conn_id).get_conn() as client:
            api = CustomObjectsApi(client)
            while True:
                try:
                    job = await acall(f"reading {where}", api.get_namespaced_custom_object,
                                      GROUP, VERSION, self.namespace, PLURAL, self.name, api_group=GROUP)
                except KubernetesApiError as exc:
                    message = f"{where} was deleted before it ended" if exc.not_found else str(exc)
                    yield self._event("error", message=message)
                    return
                state, reason, message = mpijob_state(job)
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
