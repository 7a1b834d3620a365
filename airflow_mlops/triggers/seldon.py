"""Wait, without holding a worker slot, until a deployment serves a model version."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_mlops.triggers.kubernetes import KubernetesObjectTrigger


class SeldonDeploymentTrigger(BaseTrigger):
    """Poll a local model server's ``/health/status`` until it serves ``version`` (any version when None).

    Yields one event: ``status`` is ``success`` (with ``version``), ``failed`` (the version
    failed to load: ``message``) or ``timeout``.

    :param url: the server's base URL.
    :param version: the model version to wait for, or None.
    :param poll_interval: seconds between polls.
    :param timeout: seconds before giving up.
    """

    def __init__(self, url: str, version: int | None = None, poll_interval: float = 2.0,
                 timeout: float = 600.0) -> None:
        super().__init__()
        self.url = url
        self.version = version
        self.poll_interval = poll_interval
        self.timeout = timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("airflow_mlops.triggers.seldon.SeldonDeploymentTrigger",
                {"url": self.url, "version": self.version, "poll_interval": self.poll_interval,
                 "timeout": self.timeout})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_mlops.serving.local import server_status

        deadline = time.monotonic() + self.timeout
        while True:
            status = await asyncio.to_thread(server_status, self.url)  # a short HTTP call, off the event loop
            if status:
                if status.get("version") is not None and self.version in (None, status["version"]):
                    yield TriggerEvent({"status": "success", "version": status["version"], "url": self.url})
                    return
                error = status.get("error") or {}
                if self.version is not None and error.get("version") == self.version:
                    yield TriggerEvent({"status": "failed", "version": self.version, "url": self.url,
                                        "message": error.get("message", "")})
                    return
            if time.monotonic() >= deadline:
                yield TriggerEvent({"status": "timeout", "version": self.version, "url": self.url,
                                    "message": f"no answer serving version {self.version} within {self.timeout:.0f} s"})
                return
            await asyncio.sleep(self.poll_interval)


class SeldonDeploymentKubernetesTrigger(KubernetesObjectTrigger):
    """Poll a ``SeldonDeployment`` until it is ``Available`` (and has observed its latest spec) or ``Failed``.

    Yields one event: ``status`` is ``success``, ``failed`` (with ``message``: the resource's
    status description) or ``timeout``. The Kubernetes calls run in a thread, off the event loop.

    :param name: the SeldonDeployment.
    :param namespace: its namespace.
    :param kubernetes_conn_id: the Airflow Kubernetes connection.
    :param poll_interval: seconds between polls.
    :param timeout: seconds before giving up.
    """

    def __init__(self, name: str, namespace: str, kubernetes_conn_id: str, poll_interval: float = 5.0,
                 timeout: float = 600.0) -> None:
        super().__init__(name, namespace, kubernetes_conn_id, poll_interval, timeout)

    def _controller(self):
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        from airflow_mlops.serving.kubernetes import SeldonKubernetesController

        return SeldonKubernetesController(KubernetesHook(conn_id=self.kubernetes_conn_id).api_client)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_mlops.serving.manifest import deployment_state, is_ready

        controller = await asyncio.to_thread(self._controller)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout  # None: no limit
        while True:
            try:
                obj = await asyncio.to_thread(controller.get, self.name, self.namespace)
            except Exception as err:  # noqa: BLE001 - reported as the event, the task decides
                yield TriggerEvent({"status": "failed", "message": str(err)})
                return
            if obj is not None:
                state, description = deployment_state(obj)
                if is_ready(obj):
                    yield TriggerEvent({"status": "success", "state": state, "message": description})
                    return
                if state == "Failed":
                    yield TriggerEvent({"status": "failed", "state": state, "message": description})
                    return
            if deadline is not None and time.monotonic() >= deadline:
                yield TriggerEvent({"status": "timeout", "message": f"SeldonDeployment {self.namespace}/{self.name} "
                                    f"not Available within {self.timeout:.0f} s"})
                return
            await asyncio.sleep(self.poll_interval)
