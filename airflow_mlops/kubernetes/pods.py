"""Runtime steps as pods (Kubernetes backend): the pod's manifest, and running it to a result.

A step pod runs the runtime's image with the same entrypoint as a local runtime, in its pod
form: the :class:`~airflow_mlops.runtimes.contract.StepRequest` comes in the environment
variable :data:`~airflow_mlops.runtimes.contract.REQUEST_ENV` and the result is the last
:data:`~airflow_mlops.runtimes.contract.RESULT_MARKER` line of the pod's log. Paths in the
request mean the same in the pod as in Airflow: the ``kubernetes_volume_claim`` is mounted at
the state directory in both (or the paths are object-store URLs).

:class:`PodStepRunner` drives the pod with the cncf-kubernetes provider's ``PodManager`` (its
start-up checks, log following and completion wait) and adds what a step needs: deterministic
names and labels so that a retry reattaches to the pod of its earlier try (or reads the
result of a pod that already succeeded), the result read from the log, a failure message
with the container's exit code, reason and the log's last lines, and deletion on kill.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from functools import wraps
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import airflow_mlops
from airflow_mlops.exceptions import InvalidArgumentError
from airflow_mlops.kubernetes.api import (
    DEFAULT_BACKOFF,
    DELETE_TIMEOUT,
    RUN_ANNOTATION,
    Backoff,
    KubernetesApiError,
    call,
    create_or_adopt,
    label_selector,
    read_log,
    wait_gone,
)
from airflow_mlops.runtimes.contract import REQUEST_ENV, ContractError, StepRequest, StepResult, is_result_line, \
    result_from_log
from airflow_mlops.settings import MlopsSettings
from airflow_mlops.shared import IMAGE_UID

log = logging.getLogger(__name__)

CONTAINER = "step"
STEP_LABEL, RUNTIME_LABEL, CALL_LABEL = "airflow-mlops/step", "airflow-mlops/runtime", "airflow-mlops/call"
#: The command of every step pod (and of an MPIJob's launcher).
STEP_COMMAND = ("python", "-m", "airflow_mlops.runtime_side.entrypoint", "--request-env", REQUEST_ENV, "--result-stdout")
ON_FINISH_ACTIONS = ("delete_pod", "delete_succeeded_pod", "keep_pod")
#: Log lines kept to explain a failure.
TAIL_LINES = 40


class PodStepError(KubernetesApiError):
    """A step pod could not start, failed, or gave no result; the message says which and why.

    :param fault: the limit the pod hit, where it hit one: ``OOMKilled`` (its memory limit) or
        ``DeadlineExceeded`` (its ``activeDeadlineSeconds``).
    """

    def __init__(self, message: str, *, fault: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.fault = fault


def _as_step_error(method: Callable[..., Any]) -> Callable[..., Any]:
    """Any API failure of a step's pod reaches the task as a :class:`PodStepError`."""

    @wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except PodStepError:
            raise
        except KubernetesApiError as exc:
            raise PodStepError(str(exc), status=exc.status, reason=exc.reason) from exc

    return wrapper


@dataclass(frozen=True)
class PodSettings:
    """Where and how step pods run.

    :param namespace: the namespace of the pods.
    :param image: the runtime's image.
    :param service_account: the pods' ServiceAccount (None: the namespace's default).
    :param volume_claim: a PersistentVolumeClaim mounted at ``mount_path`` (None: no volume).
    :param mount_path: where the claim is mounted: the provider's state directory.
    :param resources: ``requests``/``limits`` of the step container.
    :param on_finish_action: ``delete_pod``, ``delete_succeeded_pod`` or ``keep_pod``.
    :param startup_timeout: seconds a pod may stay Pending.
    :param env: more environment variables of the step container.
    """

    namespace: str
    image: str
    service_account: str | None = None
    volume_claim: str | None = None
    mount_path: str | None = None
    resources: Mapping[str, Any] = field(default_factory=dict)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, Any]] = ()
    on_finish_action: str = "delete_succeeded_pod"
    startup_timeout: int = 600
    env: Mapping[str, str] = field(default_factory=dict)

    def errors(self) -> list[str]:
        found = []
        if not self.image:
            found.append("image: no image is configured for this runtime ([mlops] kubernetes_image)")
        if self.on_finish_action not in ON_FINISH_ACTIONS:
            found.append(f"on_finish_action: must be one of {ON_FINISH_ACTIONS}, got {self.on_finish_action!r}")
        if self.volume_claim and not (self.mount_path or "").startswith("/"):
            found.append(f"mount_path: the volume claim needs an absolute mount path, got {self.mount_path!r}")
        if not isinstance(self.startup_timeout, int) or self.startup_timeout < 1:
            found.append(f"startup_timeout: must be a positive number of seconds, got {self.startup_timeout!r}")
        return found


def runtime_image(settings: MlopsSettings, runtime: str) -> str:
    """The image of ``runtime``'s pods.

    :param settings: its ``kubernetes_image``: a template (``{runtime}``, ``{version}``) or a JSON object by runtime.
    :param runtime: the runtime's name.
    """
    value = settings.kubernetes_image.strip()
    if value.startswith("{"):  # one setting for every runtime: read for this one here
        try:
            images = json.loads(value)
        except ValueError as err:
            raise InvalidArgumentError(f"[mlops] kubernetes_image must be JSON, got {value!r}: {err}") from None
        if not isinstance(images, dict) or runtime not in images:
            raise InvalidArgumentError(
                f"[mlops] kubernetes_image names images for {sorted(images) if isinstance(images, dict) else images},"
                f" not for runtime {runtime!r}"
            )
        return str(images[runtime])
    return value.replace("{runtime}", runtime).replace("{version}", airflow_mlops.__version__)


def pod_namespace(settings: MlopsSettings, connection_namespace: Callable[[], str | None]) -> str:
    """The namespace of step pods: ``kubernetes_namespace``, else the connection's, else ``default``.

    :param connection_namespace: gives the Kubernetes connection's namespace (called only when needed).
    """
    return settings.kubernetes_namespace or connection_namespace() or "default"


def pod_settings(settings: MlopsSettings, runtime: str, *, state_dir: str | Path,
                 connection_namespace: Callable[[], str | None]) -> PodSettings:
    """Where and how ``runtime``'s step pods run, from the settings; refused when they are wrong.

    :param state_dir: the provider's state directory: where the volume claim is mounted.
    :param connection_namespace: gives the Kubernetes connection's namespace (see :func:`pod_namespace`).
    :raises InvalidArgumentError: the Kubernetes settings are wrong.
    """
    claim = settings.kubernetes_volume_claim or None
    result = PodSettings(
        namespace=pod_namespace(settings, connection_namespace),
        image=runtime_image(settings, runtime),
        service_account=settings.kubernetes_service_account or None,
        volume_claim=claim,
        mount_path=str(state_dir) if claim else None,
        resources=settings.kubernetes_resources,
        node_selector=settings.kubernetes_node_selector,
        tolerations=settings.kubernetes_tolerations,
        on_finish_action=settings.kubernetes_on_finish_action,
        startup_timeout=settings.kubernetes_startup_timeout,
    )
    if problems := result.errors():
        raise InvalidArgumentError("the Kubernetes settings are wrong: " + "; ".join(problems))
    return result


VOLUME = "mlops-data"


def pod_spec(
    containers: list[dict[str, Any]],
    *,
    volume_claim: str | None = None,
    mount_path: str | None = None,
    service_account: str | None = None,
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Mapping[str, Any]] = (),
    run_as: int | None = IMAGE_UID,
) -> dict[str, Any]:
    """A pod spec for the project's images: the claim mounted at ``mount_path`` in every container,
    run as the images' non-root user (group-writable volume), placed as asked. Step pods and
    MPIJob pods are built with it."""
    pod: dict[str, Any] = {"containers": containers}
    if volume_claim:
        for container in containers:
            container["volumeMounts"] = [{"name": VOLUME, "mountPath": mount_path}]
        pod["volumes"] = [{"name": VOLUME, "persistentVolumeClaim": {"claimName": volume_claim}}]
    if run_as is not None:
        pod["securityContext"] = {"runAsNonRoot": run_as != 0, "runAsUser": run_as, "runAsGroup": run_as,
                                  **({"fsGroup": run_as} if volume_claim else {})}
    if service_account:
        pod["serviceAccountName"] = service_account
    if node_selector:
        pod["nodeSelector"] = dict(node_selector)
    if tolerations:
        pod["tolerations"] = [dict(t) for t in tolerations]
    return pod


def step_pod(
    name: str,
    request: StepRequest,
    settings: PodSettings,
    *,
    labels: Mapping[str, str],
    run_id: str | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """The manifest of the pod that runs ``request``.

    :param timeout: seconds the step may run (the pod's ``activeDeadlineSeconds``).
    """
    problems = settings.errors()
    if problems:
        raise PodStepError(f"step pod {name!r}: " + "; ".join(problems))
    env = {"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "1", **settings.env, REQUEST_ENV: request.to_json()}
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": settings.image,
        "command": list(STEP_COMMAND),
        "env": [{"name": key, "value": str(value)} for key, value in env.items()],
    }
    if settings.resources:
        container["resources"] = {key: dict(value) for key, value in settings.resources.items()}
    spec = {"restartPolicy": "Never", **pod_spec(
        [container], volume_claim=settings.volume_claim, mount_path=settings.mount_path,
        service_account=settings.service_account, node_selector=settings.node_selector,
        tolerations=settings.tolerations)}
    if timeout:
        spec["activeDeadlineSeconds"] = max(1, int(timeout))
    metadata: dict[str, Any] = {"name": name, "namespace": settings.namespace, "labels": dict(labels)}
    if run_id:
        metadata["annotations"] = {RUN_ANNOTATION: run_id}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def _terminated(pod: Any) -> Any:
    for status in (getattr(pod.status, "container_statuses", None) or []):
        if status.name == CONTAINER and status.state and status.state.terminated:
            return status.state.terminated
    return None


def describe_end(pod: Any) -> str:
    """``phase Failed: exit code 137 (OOMKilled)`` for a finished pod."""
    phase = getattr(pod.status, "phase", None)
    terminated = _terminated(pod)
    parts = [f"phase {phase}"]
    if terminated is not None:
        parts.append(f"exit code {terminated.exit_code}" + (f" ({terminated.reason})" if terminated.reason else ""))
        if terminated.message:
            parts.append(terminated.message.strip())
    elif getattr(pod.status, "reason", None):
        parts.append(f"{pod.status.reason}: {pod.status.message or ''}".strip())
    return ", ".join(parts)


def limit_hit(pod: Any) -> tuple[str, str] | None:
    """``(fault, what happened and what to do)`` for a pod that ended because it hit one of its limits: its
    container killed by its memory limit (``OOMKilled``), or the pod stopped at its ``activeDeadlineSeconds``
    (``DeadlineExceeded``); None otherwise."""
    terminated = _terminated(pod)
    if terminated is not None and terminated.reason == "OOMKilled":
        container = next((c for c in (pod.spec.containers or []) if c.name == CONTAINER), None)
        limits = (container.resources.limits if container is not None and container.resources else None) or {}
        limit = limits.get("memory")
        return "OOMKilled", (
            f"was killed by its memory limit (OOMKilled, limits.memory={limit or 'the namespace default'}): raise it "
            "in [mlops] kubernetes_resources (e.g. {\"limits\": {\"memory\": \"4Gi\"}}; an operator's "
            "kubernetes={\"resources\": ...} for this task alone) and run again; the task is not retried, as the "
            "same limit would kill it again")
    if getattr(pod.status, "reason", None) == "DeadlineExceeded":
        deadline = getattr(pod.spec, "active_deadline_seconds", None)
        return "DeadlineExceeded", (
            f"ran past its deadline and was stopped (DeadlineExceeded: activeDeadlineSeconds={deadline}, the task's "
            "step_timeout): raise step_timeout if the step needs longer; the task is retried where it has retries")
    return None


class PodStepRunner:
    """Run step pods through a ``CoreV1Api`` and the cncf-kubernetes provider's ``PodManager``.

    :param core_v1: a configured ``kubernetes.client.CoreV1Api``.
    :param prefix: put before each log line of the pod (``[tfx]``).
    :param poll_interval: seconds between status reads while a pod starts.
    """

    def __init__(
        self,
        core_v1: Any,
        *,
        prefix: str = "",
        poll_interval: float = 1.0,
        backoff: Backoff = DEFAULT_BACKOFF,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from airflow.providers.cncf.kubernetes.utils.pod_manager import PodManager

        self.core_v1 = core_v1
        self.pod_manager = PodManager(core_v1)
        self.prefix = prefix
        self.poll_interval = poll_interval
        self.backoff = backoff
        self.sleep = sleep
        self.current: tuple[str, str] | None = None

    # -- API calls ----------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return call(what, fn, *args, backoff=self.backoff, sleep=self.sleep, **kwargs)

    def read(self, name: str, namespace: str) -> Any:
        return self._call(f"reading pod {namespace}/{name}", self.core_v1.read_namespaced_pod, name, namespace)

    def delete(self, name: str, namespace: str) -> bool:
        """Delete the pod; False when it was already gone."""
        try:
            self._call(f"deleting pod {namespace}/{name}", self.core_v1.delete_namespaced_pod, name, namespace,
                       grace_period_seconds=5)
        except KubernetesApiError as exc:
            if exc.not_found:
                return False
            raise
        return True

    def log_text(self, name: str, namespace: str, tail_lines: int | None = None) -> str:
        kwargs = {"tail_lines": tail_lines} if tail_lines else {}
        try:
            return read_log(self.core_v1, f"reading the log of pod {namespace}/{name}", name, namespace,
                            container=CONTAINER, backoff=self.backoff, sleep=self.sleep, **kwargs)
        except KubernetesApiError as exc:
            log.warning("%s", exc)
            return ""

    # -- running ----------------------------------------------------------------------------
    def start(self, manifest: dict[str, Any], labels: Mapping[str, str]) -> Any:
        """Create the pod, or reattach to the one an earlier try created.

        An earlier try's pod that failed is deleted and created again (the retry runs the step
        again); one that succeeded or is still running is adopted.
        """
        name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
        what = f"creating pod {namespace}/{name}"
        for _ in range(2):
            pod, adopted = create_or_adopt(
                what,
                lambda: self.core_v1.create_namespaced_pod(namespace, manifest),
                lambda: self.core_v1.read_namespaced_pod(name, namespace),
                labels, backoff=self.backoff, sleep=self.sleep,
            )
            self.current = (name, namespace)
            if not adopted:
                log.info("created pod %s/%s (image %s)", namespace, name, manifest["spec"]["containers"][0]["image"])
                return pod
            phase = pod.status.phase if pod.status else None
            if phase != "Failed":
                log.info("reattached to pod %s/%s of an earlier try (phase %s)", namespace, name, phase)
                return pod
            log.info("pod %s/%s of an earlier try failed (%s); deleting it to run the step again",
                     namespace, name, describe_end(pod))
            self._delete_and_wait(name, namespace)
        raise PodStepError(f"{what}: the failed pod of an earlier try could not be replaced")

    def _exists(self, name: str, namespace: str) -> bool:
        try:
            self.read(name, namespace)
        except KubernetesApiError as exc:
            if exc.not_found:
                return False
            raise
        return True

    def _delete_and_wait(self, name: str, namespace: str) -> None:
        self.delete(name, namespace)
        if not wait_gone(lambda: self._exists(name, namespace), poll=self.poll_interval, sleep=self.sleep):
            raise PodStepError(f"pod {namespace}/{name} was still there {DELETE_TIMEOUT:g} s after it was deleted")

    @_as_step_error
    def run(
        self,
        manifest: dict[str, Any],
        labels: Mapping[str, str],
        *,
        on_finish_action: str = "delete_succeeded_pod",
        startup_timeout: int = 600,
    ) -> StepResult:
        """Start (or reattach to) the pod, stream its log into this process's log, return its result.

        :raises PodStepError: the pod did not start, ended without a result, or the API failed.
        """
        from airflow.providers.cncf.kubernetes.utils.pod_manager import PodLaunchTimeoutException
        from airflow.providers.cncf.kubernetes.kubernetes_helper_functions import PodLaunchFailedException

        name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
        where = f"pod {namespace}/{name}"
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        found: list[str] = []
        started = succeeded = False
        try:
            pod = self.start(manifest, labels)  # a pod of the same name that is not ours is never touched
            started = True
            try:
                asyncio.run(self.pod_manager.await_pod_start(
                    pod, schedule_timeout=startup_timeout, startup_timeout=startup_timeout,
                    check_interval=max(1, round(self.poll_interval))))
            except (PodLaunchTimeoutException, PodLaunchFailedException) as exc:
                events = self._events(name, namespace)
                self.delete(name, namespace)  # left there, it could still start later and run the step unseen
                raise PodStepError(f"{where} did not start (deleted): {exc}{events}") from exc

            def on_line(container: str, line: str) -> str:
                if is_result_line(line):
                    found.append(line)
                    return f"{self.prefix}(the step's result: {len(line)} characters)"
                tail.append(line)
                return f"{self.prefix}{line}"

            self.pod_manager.fetch_container_logs(pod, CONTAINER, follow=True, log_formatter=on_line)
            remote = self.pod_manager.await_pod_completion(pod, container_name=CONTAINER)
            if not found:  # the stream was cut, or this try reattached to a pod that had already ended
                text = self.log_text(name, namespace)
                found = [line for line in text.splitlines() if is_result_line(line)]
                if not tail:
                    tail.extend(text.splitlines()[-TAIL_LINES:])
            result = self._result(where, remote, found, tail)
            succeeded = remote.status.phase == "Succeeded"
            return result
        finally:
            self.current = None
            if started:
                self._finish(name, namespace, on_finish_action, succeeded)

    def _result(self, where: str, pod: Any, lines: Sequence[str], tail: Sequence[str]) -> StepResult:
        """The result line among ``lines``; else a :class:`PodStepError` with how the pod ended and its ``tail``."""
        try:
            return result_from_log(list(lines))
        except ContractError as exc:
            if hit := limit_hit(pod):
                raise PodStepError(f"{where} {hit[1]} ({describe_end(pod)})" + self._tail(tail), fault=hit[0]) from None
            raise PodStepError(f"{where} ended ({describe_end(pod)}) without a usable result: {exc}"
                               + self._tail(tail)) from None

    def _finish(self, name: str, namespace: str, on_finish_action: str, succeeded: bool) -> None:
        """Apply ``on_finish_action`` to an ended pod (a failed delete is only logged)."""
        if on_finish_action == "delete_pod" or (on_finish_action == "delete_succeeded_pod" and succeeded):
            try:
                self.delete(name, namespace)
            except KubernetesApiError as exc:
                log.warning("could not delete pod %s/%s: %s", namespace, name, exc)

    @_as_step_error
    def collect(self, name: str, namespace: str, *, on_finish_action: str = "delete_succeeded_pod") -> StepResult:
        """The result of a pod that has ended (waited for elsewhere, e.g. by a trigger); its log
        is logged here, and ``on_finish_action`` applied."""
        where = f"pod {namespace}/{name}"
        succeeded = False
        try:
            pod = self.read(name, namespace)
            text = self.log_text(name, namespace)
            lines = text.splitlines()
            for line in lines:
                if not is_result_line(line):
                    log.info("%s%s", self.prefix, line)
            tail = [line for line in lines if not is_result_line(line)][-TAIL_LINES:]
            result = self._result(where, pod, lines, tail)
            succeeded = pod.status.phase == "Succeeded"
            return result
        finally:
            self._finish(name, namespace, on_finish_action, succeeded)

    def _events(self, name: str, namespace: str) -> str:
        try:
            events = self._call(f"reading the events of pod {namespace}/{name}", self.core_v1.list_namespaced_event,
                                namespace, field_selector=f"involvedObject.name={name}")
        except KubernetesApiError:
            return ""
        lines = [f"{e.reason}: {e.message}" for e in events.items or [] if e.reason or e.message]
        return ("; events: " + " | ".join(lines[-5:])) if lines else ""

    @staticmethod
    def _tail(lines: Sequence[str]) -> str:
        return ("\nlast lines of its log:\n  " + "\n  ".join(lines)) if lines else ""

    def kill(self) -> None:
        """Delete the pod this runner is running (``on_kill``)."""
        current = self.current
        if current is not None:
            name, namespace = current
            log.warning("deleting pod %s/%s", namespace, name)
            try:
                self.delete(name, namespace)
            except KubernetesApiError as exc:
                log.warning("could not delete pod %s/%s: %s", namespace, name, exc)

    def find(self, namespace: str, labels: Mapping[str, str]) -> list[Any]:
        """The pods in ``namespace`` carrying ``labels``."""
        listed = self._call(f"listing pods {label_selector(labels)} in {namespace}", self.core_v1.list_namespaced_pod,
                            namespace, label_selector=label_selector(labels))
        return list(listed.items or [])
