"""The part the triggers that wait on one Kubernetes object share: where it is, and how to wait."""

from __future__ import annotations

from typing import Any

from airflow.triggers.base import BaseTrigger


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

    def __init__(self, name: str, namespace: str, kubernetes_conn_id: str, poll_interval: float,
                 timeout: float | None) -> None:
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
