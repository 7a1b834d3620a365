"""Wait, without holding a worker slot, until an MPIJob (Horovod training) ends."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from airflow_mlops.triggers.kubernetes import TrainingJobTrigger


class MPIJobTrigger(TrainingJobTrigger):
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

    def resource(self) -> tuple[str, str, str, str, Callable[[Mapping[str, Any]], tuple[str, str, str]]]:
        from airflow_mlops.kubernetes.mpijob import GROUP, KIND, PLURAL, VERSION, mpijob_state

        return GROUP, VERSION, PLURAL, KIND, mpijob_state
