"""What the controllers of the two training-job APIs share: submit, follow and delete one custom resource.

A Horovod training on Kubernetes is one custom object whose operator starts a launcher pod (which
runs the step) and the pods of the other nodes: an ``MPIJob`` of the Kubeflow MPI Operator
(:mod:`.mpijob`) or a ``TrainJob`` of Kubeflow Trainer v2 (:mod:`.trainjob`). Both controllers are a
:class:`JobController` with the same methods and meaning (``submit`` adopts an earlier try's job
by its labels and replaces a failed one, ``get``, ``delete``, ``launcher_pod``, ``launcher_log``,
``wait``), so a runner uses either one through the same calls (:mod:`.launchers`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from airflow_mlops.kubernetes.api import (
    DEFAULT_BACKOFF,
    DELETE_TIMEOUT,
    Backoff,
    KubernetesApiError,
    call,
    create_or_adopt,
    read_log,
    wait_gone,
)

#: The states every controller's ``job_state`` may answer that end a job.
FINAL_STATES = ("Succeeded", "Failed")


class JobController:
    """Submit, follow and delete training jobs of one custom resource through a ``kubernetes.client.ApiClient``.

    Every call is retried and explained by :func:`airflow_mlops.kubernetes.api.call`; a cluster
    without the resource's operator answers :class:`~airflow_mlops.kubernetes.api.CrdMissingError`.
    Subclasses name the resource (``GROUP``, ``VERSION``, ``PLURAL``, ``KIND``), how its launcher
    pods are found (``LAUNCHER_SELECTOR``, formatted with ``name``) and which container of that pod
    runs the step (``launcher_container``), and read its state (:meth:`job_state`).

    :param api_client: a configured ``kubernetes.client.ApiClient`` (``KubernetesHook.api_client``).
    """

    GROUP: ClassVar[str]
    VERSION: ClassVar[str]
    PLURAL: ClassVar[str]
    KIND: ClassVar[str]
    LAUNCHER_SELECTOR: ClassVar[str]
    #: the container of the launcher pod that runs the step (whose log is the step's)
    launcher_container: ClassVar[str]

    def __init__(self, api_client: Any, *, backoff: Backoff = DEFAULT_BACKOFF,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        from kubernetes.client import CoreV1Api, CustomObjectsApi

        self.custom = CustomObjectsApi(api_client)
        self.core = CoreV1Api(api_client)
        self._kw: dict[str, Any] = {"backoff": backoff, "sleep": sleep}
        self.sleep = sleep

    @property
    def kind(self) -> str:
        return self.KIND

    def job_state(self, obj: Mapping[str, Any]) -> tuple[str, str, str]:
        """``(state, reason, message)`` of a job object (states: see :func:`.mpijob.mpijob_state`)."""
        raise NotImplementedError

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return call(what, fn, *args, api_group=self.GROUP, **self._kw, **kwargs)

    def get(self, name: str, namespace: str) -> dict | None:
        """The job, or None when it does not exist."""
        try:
            return self._call(f"reading {self.KIND} {namespace}/{name}", self.custom.get_namespaced_custom_object,
                              self.GROUP, self.VERSION, namespace, self.PLURAL, name)
        except KubernetesApiError as exc:
            if exc.not_found:
                return None
            raise

    def delete(self, name: str, namespace: str) -> bool:
        """Delete the job and (foreground) its pods; False when it was already gone."""
        try:
            self._call(f"deleting {self.KIND} {namespace}/{name}", self.custom.delete_namespaced_custom_object,
                       self.GROUP, self.VERSION, namespace, self.PLURAL, name, propagation_policy="Foreground")
        except KubernetesApiError as exc:
            if exc.not_found:
                return False
            raise
        return True

    def submit(self, manifest: Mapping[str, Any], labels: Mapping[str, str]) -> tuple[dict, bool]:
        """Create the job, or adopt the one of an earlier try (see :func:`~.api.create_or_adopt`).

        An adopted job that failed is deleted and created again: the retry trains again.

        :returns: ``(job, adopted)``.
        :raises KubernetesApiError: a call failed, or the failed job was not gone in time (a retry may help).
        """
        name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
        for _ in range(2):
            job, adopted = create_or_adopt(
                f"creating {self.KIND} {namespace}/{name}",
                lambda: self.custom.create_namespaced_custom_object(self.GROUP, self.VERSION, namespace, self.PLURAL,
                                                                    dict(manifest)),
                lambda: self.custom.get_namespaced_custom_object(self.GROUP, self.VERSION, namespace, self.PLURAL,
                                                                 name),
                labels, api_group=self.GROUP, **self._kw,
            )
            if not adopted or self.job_state(job)[0] != "Failed":
                return job, adopted
            self.delete(name, namespace)
            if not wait_gone(lambda: self.get(name, namespace) is not None, sleep=self.sleep):
                raise KubernetesApiError(f"{self.KIND} {namespace}/{name} was still there {DELETE_TIMEOUT:g} s after "
                                         "it was deleted", status=409, reason="Conflict")
        raise AssertionError("unreachable")  # pragma: no cover

    def launcher_pod(self, name: str, namespace: str) -> Any | None:
        """The newest launcher pod of the job, or None."""
        pods = self._call(f"listing the launcher pods of {self.KIND} {namespace}/{name}",
                          self.core.list_namespaced_pod, namespace,
                          label_selector=self.LAUNCHER_SELECTOR.format(name=name)).items or []
        if not pods:
            return None
        return max(pods, key=lambda p: (p.metadata.creation_timestamp or 0, p.metadata.name))

    def _log_kwargs(self) -> dict[str, Any]:
        return {}

    def launcher_log(self, name: str, namespace: str, tail_lines: int | None = None) -> str:
        """The launcher's log ('' when there is no launcher pod, or its log cannot be read)."""
        pod = self.launcher_pod(name, namespace)
        if pod is None:
            return ""
        kwargs: dict[str, Any] = {"tail_lines": tail_lines} if tail_lines else {}
        try:
            return read_log(self.core, f"reading the log of {namespace}/{pod.metadata.name}", pod.metadata.name,
                            namespace, **self._kw, **self._log_kwargs(), **kwargs)
        except KubernetesApiError:
            return ""

    def wait(
        self,
        name: str,
        namespace: str,
        *,
        poll_interval: float = 10.0,
        timeout: float | None = None,
        follow: Callable[[Any], None] | None = None,
    ) -> tuple[str, str, str]:
        """Wait until the job ``Succeeded`` or ``Failed``; ``follow(pod)`` each launcher pod once it runs.

        ``follow`` (e.g. a log follower) blocks until the launcher's container ends; a launcher
        that is restarted is followed again.

        :returns: ``(state, reason, message)``; state ``Timeout`` after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        followed: set[str] = set()
        while True:
            job = self.get(name, namespace)
            if job is None:
                raise KubernetesApiError(f"{self.KIND} {namespace}/{name} was deleted before it ended", status=404)
            state, reason, message = self.job_state(job)
            if state in FINAL_STATES:
                return state, reason, message
            if follow is not None:
                pod = self.launcher_pod(name, namespace)
                phase = getattr(getattr(pod, "status", None), "phase", None)
                if pod is not None and pod.metadata.name not in followed and phase in ("Running", "Succeeded", "Failed"):
                    followed.add(pod.metadata.name)
                    follow(pod)
                    continue
            if deadline is not None and time.monotonic() >= deadline:
                return "Timeout", "", f"{self.KIND} {namespace}/{name} still {state} after {timeout:g} s"
            self.sleep(poll_interval)
