"""Horovod training as an MPIJob (Kubeflow MPI Operator, ``kubeflow.org/v2beta1``): spec, manifest, state.

Spec and work are separate, as for SeldonDeployments (``serving/manifest.py``): an
:class:`MPIJobSpec` is checked field by field (:meth:`MPIJobSpec.errors`, every problem named
with its path), :func:`build_mpijob` turns it into the manifest the operator applies,
:func:`validate_mpijob` checks a manifest against the real CRD schema, and
:func:`mpijob_state` reads the state the MPI Operator reports in ``status.conditions``.

The launcher runs ``horovodrun`` over the workers the operator lists in ``/etc/mpi/hostfile``
(``-np`` = workers × slots); in elastic mode it runs ``--min-np``/``--max-np`` with the
operator's ``/etc/mpi/discover_hosts.sh`` and the Worker replica count is the maximum.
``slotsPerWorker`` is the GPUs per worker (1 on CPUs), each worker asks for that many
``nvidia.com/gpu``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_mlops.serving.manifest import (
    ManifestError,
    _errors,
    _label_errors,
    _resource_errors,
    _version_schema,
)

GROUP, VERSION, KIND, PLURAL = "kubeflow.org", "v2beta1", "MPIJob", "mpijobs"
CRD_FILENAME = "kubeflow.org_mpijobs.yaml"
CLEAN_POD_POLICIES = ("None", "Running", "All")
HOSTFILE, DISCOVER_HOSTS = "/etc/mpi/hostfile", "/etc/mpi/discover_hosts.sh"
#: pods are named <name>-launcher and <name>-worker-<i>; the job's Service is <name> (DNS-1035)
MAX_NAME = 48
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def job_name(dag_id: str, task_id: str, run_id: str, prefix: str = "hvd") -> str:
    """A deterministic MPIJob name for a task of a DAG run: a retry finds the job its earlier try made."""
    digest = hashlib.sha256(f"{dag_id}\0{task_id}\0{run_id}".encode()).hexdigest()[:10]
    readable = re.sub(r"[^a-z0-9]+", "-", f"{prefix}-{task_id}".lower()).strip("-")
    return f"{readable[:MAX_NAME - 11].rstrip('-')}-{digest}"


@dataclass(frozen=True)
class MPIJobSpec:
    """What a Horovod training job on Kubernetes needs.

    :param name: the MPIJob's name (see :func:`job_name`).
    :param image: the training image (the TFX + Horovod runtime's).
    :param command: what every rank runs, e.g. ``["python", "-m", "airflow_mlops.runtimes.entrypoint", ...]``.
    :param num_workers: worker pods (elastic: the initial count is ``min_workers``).
    :param gpus_per_worker: ``nvidia.com/gpu`` per worker, and ranks per worker (0: one CPU rank).
    :param min_workers: with ``max_workers``, elastic Horovod between the two.
    :param clean_pod_policy: pods removed when the job ends: ``None``, ``Running`` or ``All``.
    :param backoff_limit: launcher retries before the job fails.
    :param active_deadline_seconds: the job fails when running longer.
    :param ttl_seconds_after_finished: the finished job is deleted after this long.
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
            value = getattr(self, attr)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                found.append(f"{attr}: must be an integer >= {low}, got {value!r}")
        for attr in ("active_deadline_seconds", "ttl_seconds_after_finished"):
            value = getattr(self, attr)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                found.append(f"{attr}: must be an integer >= 0 or None, got {value!r}")
        if self.elastic:
            low, high = self.min_workers, self.max_workers
            if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high):
                found.append(f"min_workers/max_workers: elastic mode needs 1 <= min_workers <= max_workers, "
                             f"got {low!r}/{high!r}")
        if self.clean_pod_policy not in CLEAN_POD_POLICIES:
            found.append(f"clean_pod_policy: must be one of {CLEAN_POD_POLICIES}, got {self.clean_pod_policy!r}")
        found += [e.removeprefix("$.") for e in _label_errors("$.labels", dict(self.labels))]
        for kind, resources in (("worker_resources", self.worker_resources),
                                ("launcher_resources", self.launcher_resources)):
            found += [e.removeprefix("$.") for e in _resource_errors(f"$.{kind}", dict(resources))]
        if self.gpus_per_worker and "nvidia.com/gpu" in (self.worker_resources.get("limits") or {}):
            found.append("worker_resources.limits: nvidia.com/gpu comes from gpus_per_worker; do not set both")
        return found


def _container(name: str, spec: MPIJobSpec, command: list[str] | None, resources: Mapping[str, Any]) -> dict:
    container: dict[str, Any] = {"name": name, "image": spec.image}
    if command:
        container["command"] = command
    if spec.env:
        container["env"] = [{"name": k, "value": str(v)} for k, v in sorted(spec.env.items())]
    if resources:
        container["resources"] = {k: dict(v) for k, v in resources.items()}
    return container


def _pod_spec(spec: MPIJobSpec, container: dict) -> dict:
    pod: dict[str, Any] = {"containers": [container]}
    if spec.service_account:
        pod["serviceAccountName"] = spec.service_account
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod["tolerations"] = [dict(t) for t in spec.tolerations]
    return pod


def launcher_command(spec: MPIJobSpec) -> list[str]:
    """``horovodrun`` over the operator's hostfile (or, elastic, its host-discovery script)."""
    slots = spec.slots_per_worker
    if spec.elastic:
        assert spec.min_workers is not None and spec.max_workers is not None
        head = ["horovodrun", "-np", str(spec.min_workers * slots), "--min-np", str(spec.min_workers * slots),
                "--max-np", str(spec.max_workers * slots), "--host-discovery-script", DISCOVER_HOSTS]
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
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels},
        "spec": {
            "slotsPerWorker": spec.slots_per_worker,
            "runPolicy": run_policy,
            "mpiImplementation": "OpenMPI",
            "mpiReplicaSpecs": {
                "Launcher": {
                    "replicas": 1,
                    "restartPolicy": "OnFailure",
                    "template": {"metadata": {"labels": labels},
                                 "spec": _pod_spec(spec, _container("launcher", spec, launcher_command(spec),
                                                                    spec.launcher_resources))},
                },
                "Worker": {
                    "replicas": replicas,
                    "template": {"metadata": {"labels": labels},
                                 "spec": _pod_spec(spec, _container("worker", spec, None, worker_resources))},
                },
            },
        },
    }


@functools.lru_cache(maxsize=4)
def _load_crd(path: str, mtime_ns: int, size: int) -> dict:
    import yaml

    with open(path, encoding="utf-8") as stream:
        for document in yaml.load_all(stream, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition" \
                    and document.get("spec", {}).get("names", {}).get("kind") == KIND:
                return document
    raise ManifestError(f"{path}: no CustomResourceDefinition of kind {KIND}")


def _crd_file(crd_path: str | os.PathLike[str]) -> str:
    return os.path.join(crd_path, CRD_FILENAME) if os.path.isdir(crd_path) else str(crd_path)


def validate_mpijob(manifest: Mapping[str, Any], crd_path: str | os.PathLike[str], *, strict: bool = True) -> None:
    """Check an MPIJob manifest against the CRD's ``v2beta1`` schema (the file or its folder); raise on errors.

    :raises ManifestError: every error with its JSON path.
    :raises FileNotFoundError: when the CRD is not there.
    """
    from airflow_mlops.serving.manifest import openapi_to_jsonschema

    path = _crd_file(crd_path)
    stat = os.stat(path)
    schema = _version_schema(_load_crd(os.path.realpath(path), stat.st_mtime_ns, stat.st_size), VERSION, path)
    problems = []
    if manifest.get("apiVersion") != f"{GROUP}/{VERSION}" or manifest.get("kind") != KIND:
        problems.append(f"$: must be {GROUP}/{VERSION} {KIND}, got {manifest.get('apiVersion')} {manifest.get('kind')}")
    problems += _errors(manifest, openapi_to_jsonschema(schema, strict=strict))
    if problems:
        raise ManifestError(f"MPIJob {manifest.get('metadata', {}).get('name')!r} is invalid against {path}:\n  "
                            + "\n  ".join(problems))


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
