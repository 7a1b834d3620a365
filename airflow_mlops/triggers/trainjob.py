"""Wait, without holding a worker slot, until a Kubeflow Trainer v2 TrainJob (Horovod training) ends."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from airflow_mlops.triggers.kubernetes import TrainingJobTrigger


class TrainJobTrigger(TrainingJobTrigger):
    """Poll a TrainJob (``trainer.kubeflow.org/v1alpha1``) with the asyncio Kubernetes client until it
    ``Succeeded`` (condition ``Complete``) or ``Failed``.

    The events are :class:`~airflow_mlops.triggers.mpijob.MPIJobTrigger`'s: ``status`` is ``success``,
    ``failed`` (with the condition's ``reason`` and ``message``), ``timeout``, or ``error`` (the job
    was deleted, Kubeflow Trainer v2 is not installed, the API kept failing).

    :param name: the TrainJob.
    :param namespace: its namespace.
    :param kubernetes_conn_id: the Airflow Kubernetes connection.
    :param poll_interval: seconds between polls.
    :param timeout: seconds before giving up (None: wait as long as the job runs).
    """

    def resource(self) -> tuple[str, str, str, str, Callable[[Mapping[str, Any]], tuple[str, str, str]]]:
        from airflow_mlops.kubernetes.trainjob import GROUP, KIND, PLURAL, VERSION, trainjob_state

        return GROUP, VERSION, PLURAL, KIND, trainjob_state
