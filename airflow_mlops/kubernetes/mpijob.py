"""Horovod training as an MPIJob (Kubeflow MPI Operator, ``kubeflow.org/v2beta1``): spec, manifest, state.

Spec and work are separate, as for SeldonDeployments (``serving/manifest.py``): an
:class:`MPIJobSpec` is checked field by field (:meth:`MPIJobSpec.errors`, every problem named
with its path), :func:`build_mpijob` turns it into the manifest the operator applies,
:func:`validate_mpijob` checks a manifest against the real CRD schema, and
:func:`mpijob_state` reads the state the MPI Operator reports in ``status.conditions``.

The launcher runs ``horovodrun`` over the workers the operator lists in ``/etc/mpi/hostfile``
(``-np`` = workers × slots); in elastic mode it runs ``--min-np``/``--max-np`` with the
operator's ``/etc/mpi/discover_hosts.sh`` (which names the running workers without their slots:
``--slots-per-host``) and the Worker replica count is the maximum.
With ``horovodrun=False`` the launcher runs ``command`` itself and learns the same from
:func:`horovod_env` (``AIRFLOW_MLOPS_HOROVOD_*``): that is how a TFX Trainer runs, its node
execution (ML Metadata, inputs, outputs) once in the launcher and its ``run_fn`` on every rank.
Workers run ``worker_command`` (the images' sshd, ``docker/README.md``); the launcher reaches
them over ssh with the keys the operator mounts at ``ssh_auth_mount_path``.
``slotsPerWorker`` is the GPUs per worker (1 on CPUs), each worker asks for that many
``nvidia.com/gpu``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_mlops.kubernetes.api import object_name
from airflow_mlops.kubernetes.jobs import FINAL_STATES, JobController  # noqa: F401 (FINAL_STATES: runners import it here)
from airflow_mlops.kubernetes.pods import pod_spec
from airflow_mlops.shared import ENV_DISCOVERY, ENV_HOSTFILE, ENV_MAX_NP, ENV_MIN_NP, ENV_NP, IMAGE_UID
from airflow_mlops.kubernetes.schema import ManifestError, label_errors, manifest_errors, refuse_invalid, resource_errors

GROUP, VERSION, KIND, PLURAL = "kubeflow.org", "v2beta1", "MPIJob", "mpijobs"
CRD_FILENAME = "kubeflow.org_mpijobs.yaml"
CLEAN_POD_POLICIES = ("None", "Running", "All")
HOSTFILE, DISCOVER_HOSTS = "/etc/mpi/hostfile", "/etc/mpi/discover_hosts.sh"
#: What the TFX images (docker/README.md) run as MPI workers, where their user's ssh keys go, and its uid.
WORKER_COMMAND = ("airflow-mlops-mpi-worker",)
SSH_AUTH_MOUNT_PATH = "/home/mlops/.ssh"
#: The workers' sshd port (docker/tfx/mpi/sshd_config): a worker is ready when it answers there.
SSH_PORT = 2222

#: pods are named <name>-launcher and <name>-worker-<i>; the job's Service is <name> (DNS-1035)
MAX_NAME = 48
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def job_name(dag_id: str, task_id: str, run_id: str, map_index: int = -1, prefix: str = "hvd") -> str:
    """A deterministic MPIJob name for a task of a DAG run: a retry finds the job its earlier try made."""
    return object_name(prefix, dag_id, task_id, run_id, map_index, max_length=MAX_NAME)


@dataclass(frozen=True)
class MPIJobSpec:
    """What a Horovod training job on Kubernetes needs.

    :param name: the MPIJob's name (see :func:`job_name`).
    :param image: the training image (the TFX + Horovod runtime's).
    :param command: what every rank runs, e.g. ``["python", "-m", "airflow_mlops.runtime_side.entrypoint", ...]``.
    :param num_workers: worker pods (elastic: the initial count is ``min_workers``).
    :param gpus_per_worker: ``nvidia.com/gpu`` per worker, and ranks per worker (0: one CPU rank).
    :param min_workers: with ``max_workers``, elastic Horovod between the two.
    :param clean_pod_policy: pods removed when the job ends: ``None``, ``Running`` or ``All``.
    :param backoff_limit: launcher retries before the job fails.
    :param active_deadline_seconds: the job fails when running longer.
    :param ttl_seconds_after_finished: the finished job is deleted after this long.
    :param horovodrun: the launcher runs ``horovodrun … command`` (True), or ``command`` itself
        with :func:`horovod_env` in its environment (False).
    :param volume_claim: a PersistentVolumeClaim mounted at ``mount_path`` in launcher and workers.
    :param worker_command: what the workers run (the image's sshd); None: the image's default.
    """

    name: str
    image: str
    command: Sequence[str]
    namespace: str = "default"
    num_workers: int = 2
    gpus_per_worker: int = 0
    min_workers: int | None = None
    max_workers: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    worker_resources: Mapping[str, Any] = field(default_factory=dict)
    launcher_resources: Mapping[str, Any] = field(
        default_factory=lambda: {"requests": {"cpu": "100m", "memory": "256Mi"}})
    service_account: str | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, Any]] = ()
    clean_pod_policy: str = "Running"
    backoff_limit: int = 0
    active_deadline_seconds: int | None = None
    ttl_seconds_after_finished: int | None = 3600
    horovodrun: bool = True
    volume_claim: str | None = None
    mount_path: str | None = None
    worker_command: Sequence[str] | None = WORKER_COMMAND
    ssh_auth_mount_path: str | None = SSH_AUTH_MOUNT_PATH
    run_as_user: int | None = IMAGE_UID

    @property
    def elastic(self) -> bool:
        return self.min_workers is not None or self.max_workers is not None

    @property
    def slots_per_worker(self) -> int:
        return self.gpus_per_worker if self.gpus_per_worker > 0 else 1

    def errors(self) -> list[str]:
        """Every problem of the spec, each with its path; empty when the spec is valid."""
        found = []
        if not isinstance(self.name, str) or len(self.name) > MAX_NAME or not _NAME.match(self.name):
            found.append(f"name: {self.name!r} must be 1-{MAX_NAME} characters of a-z, 0-9 and '-', start with a "
                         "letter and end with a letter or digit (its pods and Service are named after it)")
        if not isinstance(self.image, str) or not self.image.strip():
            found.append("image: a container image is required")
        if not self.command or not all(isinstance(part, str) and part for part in self.command):
            found.append(f"command: a non-empty list of non-empty strings is required, got {list(self.command)!r}")
        for attr, low in (("num_workers", 1), ("gpus_per_worker", 0), ("backoff_limit", 0)):
            value: Any = getattr(self, attr)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                found.append(f"{attr}: must be an integer >= {low}, got {value!r}")
        for attr in ("active_deadline_seconds", "ttl_seconds_after_finished"):
            value = getattr(self, attr)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                found.append(f"{attr}: must be an integer >= 0 or None, got {value!r}")
        if self.elastic:
            least, most = self.min_workers, self.max_workers
            if not (isinstance(least, int) and isinstance(most, int) and 1 <= least <= most):
                found.append(f"min_workers/max_workers: elastic mode needs 1 <= min_workers <= max_workers, "
                             f"got {least!r}/{most!r}")
        if self.clean_pod_policy not in CLEAN_POD_POLICIES:
            found.append(f"clean_pod_policy: must be one of {CLEAN_POD_POLICIES}, got {self.clean_pod_policy!r}")
        found += [e.removeprefix("$.") for e in label_errors("$.labels", dict(self.labels))]
        for kind, resources in (("worker_resources", self.worker_resources),
                                ("launcher_resources", self.launcher_resources)):
            found += [e.removeprefix("$.") for e in resource_errors(f"$.{kind}", dict(resources))]
        if self.volume_claim and not (self.mount_path or "").startswith("/"):
            found.append(f"mount_path: the volume claim needs an absolute mount path, got {self.mount_path!r}")
        if self.gpus_per_worker and "nvidia.com/gpu" in (self.worker_resources.get("limits") or {}):
            found.append("worker_resources.limits: nvidia.com/gpu comes from gpus_per_worker; do not set both")
        return found


def horovod_env(spec: MPIJobSpec) -> dict[str, str]:
    """What a launcher running ``command`` itself needs to start the ranks like :func:`launcher_command`."""
    slots = spec.slots_per_worker
    if spec.elastic:
        assert spec.min_workers is not None and spec.max_workers is not None
        return {ENV_NP: str(spec.min_workers * slots), ENV_MIN_NP: str(spec.min_workers * slots),
                ENV_MAX_NP: str(spec.max_workers * slots), ENV_DISCOVERY: DISCOVER_HOSTS}
    return {ENV_NP: str(spec.num_workers * slots), ENV_HOSTFILE: HOSTFILE}


def _container(name: str, spec: MPIJobSpec, command: Sequence[str] | None, resources: Mapping[str, Any],
               env: Mapping[str, str]) -> dict:
    container: dict[str, Any] = {"name": name, "image": spec.image}
    if command:
        container["command"] = list(command)
    if env:
        container["env"] = [{"name": k, "value": str(v)} for k, v in sorted(env.items())]
    if resources:
        container["resources"] = {k: dict(v) for k, v in resources.items()}
    return container


def _pod_spec(spec: MPIJobSpec, container: dict) -> dict:
    return pod_spec([container], volume_claim=spec.volume_claim, mount_path=spec.mount_path,
                    service_account=spec.service_account, node_selector=spec.node_selector,
                    tolerations=spec.tolerations, run_as=spec.run_as_user)


def launcher_command(spec: MPIJobSpec) -> list[str]:
    """``horovodrun`` over the operator's hostfile (or, elastic, its host-discovery script)."""
    slots = spec.slots_per_worker
    if spec.elastic:
        assert spec.min_workers is not None and spec.max_workers is not None
        # the operator's discover_hosts.sh names the hosts without their slots: Horovod needs --slots-per-host
        head = ["horovodrun", "-np", str(spec.min_workers * slots), "--min-np", str(spec.min_workers * slots),
                "--max-np", str(spec.max_workers * slots), "--host-discovery-script", DISCOVER_HOSTS,
                "--slots-per-host", str(slots)]
    else:
        head = ["horovodrun", "-np", str(spec.num_workers * slots), "--hostfile", HOSTFILE]
    return [*head, *spec.command]


def build_mpijob(spec: MPIJobSpec) -> dict[str, Any]:
    """The MPIJob manifest for ``spec``; raises :class:`ManifestError` listing every problem of the spec."""
    problems = spec.errors()
    if problems:
        raise ManifestError(f"MPIJob {spec.name!r}: " + "; ".join(problems))
    worker_resources = {k: dict(v) for k, v in spec.worker_resources.items()}
    if spec.gpus_per_worker:
        worker_resources.setdefault("limits", {})["nvidia.com/gpu"] = spec.gpus_per_worker
    run_policy: dict[str, Any] = {"cleanPodPolicy": spec.clean_pod_policy, "backoffLimit": spec.backoff_limit}
    if spec.active_deadline_seconds is not None:
        run_policy["activeDeadlineSeconds"] = spec.active_deadline_seconds
    if spec.ttl_seconds_after_finished is not None:
        run_policy["ttlSecondsAfterFinished"] = spec.ttl_seconds_after_finished
    replicas = spec.max_workers if spec.elastic else spec.num_workers
    labels = {"app.kubernetes.io/managed-by": "airflow-mlops", **spec.labels}
    if spec.horovodrun:
        launcher = _container("launcher", spec, launcher_command(spec), spec.launcher_resources, spec.env)
    else:
        launcher = _container("launcher", spec, spec.command, spec.launcher_resources,
                              {**spec.env, **horovod_env(spec)})
    extra: dict[str, Any] = {}
    if spec.ssh_auth_mount_path:
        extra["sshAuthMountPath"] = spec.ssh_auth_mount_path
    worker = _container("worker", spec, spec.worker_command, worker_resources, spec.env)
    if spec.worker_command:
        # the launcher starts once every worker's sshd answers: Horovod's ssh gives up fast
        extra["launcherCreationPolicy"] = "WaitForWorkersReady"
        worker["readinessProbe"] = {"tcpSocket": {"port": SSH_PORT}, "periodSeconds": 2}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels},
        "spec": {
            "slotsPerWorker": spec.slots_per_worker,
            **extra,
            "runPolicy": run_policy,
            "mpiImplementation": "OpenMPI",
            "mpiReplicaSpecs": {
                "Launcher": {
                    "replicas": 1,
                    "restartPolicy": "OnFailure",
                    "template": {"metadata": {"labels": labels}, "spec": _pod_spec(spec, launcher)},
                },
                "Worker": {
                    "replicas": replicas,
                    "template": {"metadata": {"labels": labels},
                                 "spec": _pod_spec(spec, worker)},
                },
            },
        },
    }


def validate_mpijob(manifest: Mapping[str, Any], crd_path: str | os.PathLike[str], *, strict: bool = True) -> None:
    """Check an MPIJob manifest against the CRD's ``v2beta1`` schema (the file or its folder); raise on errors.

    :raises ManifestError: every error with its JSON path.
    :raises FileNotFoundError: when the CRD is not there.
    """
    refuse_invalid(manifest, KIND, *manifest_errors(manifest, crd_path, CRD_FILENAME, GROUP, KIND, VERSION,
                                                     strict=strict))


def mpijob_state(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(state, reason, message)`` of an MPIJob from its newest true condition.

    ``state`` is ``Succeeded``, ``Failed``, ``Running``, ``Restarting``, ``Suspended``,
    ``Created`` or ``Pending`` (no condition yet).
    """
    conditions = [c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]
    for final in ("Succeeded", "Failed"):
        for condition in conditions:
            if condition.get("type") == final:
                return final, condition.get("reason", ""), condition.get("message", "")
    if not conditions:
        return "Pending", "", ""
    newest = max(conditions, key=lambda c: c.get("lastTransitionTime") or "")
    return newest.get("type", "Pending"), newest.get("reason", ""), newest.get("message", "")


LAUNCHER_SELECTOR = "training.kubeflow.org/job-name={name},training.kubeflow.org/job-role=launcher"


class MPIJobController(JobController):
    """Submit, follow and delete MPIJobs through a ``kubernetes.client.ApiClient``.

    Every call is retried and explained by :func:`airflow_mlops.kubernetes.api.call`; a cluster
    without the MPI Operator answers :class:`~airflow_mlops.kubernetes.api.CrdMissingError`. The
    methods are those of :class:`~airflow_mlops.kubernetes.jobs.JobController`: ``submit`` (create,
    or adopt an earlier try's job; a failed one is replaced), ``get``, ``delete``, ``launcher_pod``,
    ``launcher_log``, ``wait``.

    :param api_client: a configured ``kubernetes.client.ApiClient`` (``KubernetesHook.api_client``).
    """

    GROUP, VERSION, PLURAL, KIND = GROUP, VERSION, PLURAL, KIND
    LAUNCHER_SELECTOR = LAUNCHER_SELECTOR
    launcher_container = "launcher"

    def job_state(self, obj: Mapping[str, Any]) -> tuple[str, str, str]:
        return mpijob_state(obj)
