"""Horovod training as a Kubeflow Trainer v2 ``TrainJob`` (``trainer.kubeflow.org/v1alpha1``): spec, manifest, state.

The same training as :mod:`.mpijob`, on the successor of the MPI Operator. Trainer v2 runs a
TrainJob from a *runtime*: the provider ships the ``TrainingRuntime`` objects ``airflow-mlops-horovod``
(CPU image) and ``airflow-mlops-horovod-cuda`` (CUDA image) in ``deploy/kubernetes/trainer/``. A
runtime holds what an MPIJob spelled out per job: ``mlPolicy.mpi`` (OpenMPI, the ssh keys at
``/home/mlops/.ssh``, ``runLauncherAsNode``) and a JobSet template with the replicated jobs ``node``
(the images' sshd on port 2222, :data:`~.mpijob.WORKER_COMMAND`, Ready when it answers) and
``launcher`` (``dependsOn: node Ready``). Trainer's MPI plugin makes the ssh key Secret and the
hostfile ConfigMap (mounted at ``/etc/mpi/hostfile``, the path :func:`~.mpijob.horovod_env` names).

A TrainJob only says what differs per job: ``spec.trainer`` (``image``, ``command``, ``env``,
``numNodes``, ``numProcPerNode``, ``resourcesPerNode``), ``activeDeadlineSeconds``, and
``runtimePatches`` (pod labels, the state volume, service account, node selector, tolerations).
How Trainer v2 applies them decides the design (kubeflow/trainer at 8c0f5059bd51, after v2.3.0:
``pkg/runtime/core/trainingruntime.go``, ``pkg/runtime/framework/plugins/jobset/builder.go``,
``plugins/mpi/mpi.go``):

* ``image``/``command`` go to the container ``node`` of the replicated job labelled
  ``trainer.kubeflow.org/trainjob-ancestor-step: trainer``, the launcher. The nodes keep the
  runtime's image, so :meth:`TrainJobController.submit` refuses a runtime whose node image is not
  the step's (ranks on two images would mix versions).
* ``resourcesPerNode`` (and ``env``) reach the ``node`` replicated job only with
  ``runLauncherAsNode: true``; without it the GPUs would go to the launcher alone. So the launcher is
  one of the nodes: it is listed in the hostfile and runs ranks itself, there are ``numNodes - 1``
  node pods (but at least one: ``max(numNodes-1, 1)``, so one worker still starts a node pod, where
  the single rank runs: the hostfile lists the nodes first), and every pod gets ``gpus_per_worker``
  GPUs (``numProcPerNode`` = slots, as ``slotsPerWorker`` of an MPIJob).
* No elasticity: the MPI plugin writes a fixed hostfile (no host-discovery script), ``spec.trainer``
  is immutable, and the ElasticPolicy API (PyTorch only) was removed in v2.2 (kubeflow/trainer#3235;
  "Elastic TrainJobs" is roadmap item kubeflow/trainer#2903). An elastic spec is refused: elastic
  Horovod needs ``launcher="mpijob"``.
* Retries inside the job, cleanup and the TTL are the runtime's (``backoffLimit: 0``,
  ``failurePolicy.maxRestarts: 0``, JobSet ``ttlSecondsAfterFinished``; a finished JobSet deletes its
  still-running Jobs, i.e. the nodes, as ``cleanPodPolicy: Running``): a spec that asks otherwise
  is refused rather than silently not honoured.

States: Trainer v2 sets only the conditions ``Complete``, ``Failed`` (reasons from the JobSet:
``AllJobsCompleted``, ``FailedJobs``; ``DeadlineExceeded``) and ``Suspended``;
:func:`trainjob_state` reads the rest (``Created``, ``Running``) from ``status.jobsStatus`` and
answers in the vocabulary of :func:`~.mpijob.mpijob_state`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_mlops.kubernetes.api import MANAGED_BY, MANAGED_BY_LABEL, KubernetesApiError
from airflow_mlops.kubernetes.jobs import JobController
from airflow_mlops.kubernetes.mpijob import (
    IMAGE_UID,
    SSH_AUTH_MOUNT_PATH,
    WORKER_COMMAND,
    MPIJobSpec,
    horovod_env,
    launcher_command,
)
from airflow_mlops.kubernetes.schema import ManifestError, manifest_errors, refuse_invalid

GROUP, VERSION, KIND, PLURAL = "trainer.kubeflow.org", "v1alpha1", "TrainJob", "trainjobs"
RUNTIME_KIND, RUNTIME_PLURAL = "TrainingRuntime", "trainingruntimes"
CRD_FILENAME = "trainer.kubeflow.org_trainjobs.yaml"
RUNTIME_CRD_FILENAME = "trainer.kubeflow.org_trainingruntimes.yaml"

#: The provider's TrainingRuntimes (deploy/kubernetes/trainer/): the tfx image's, and the tfx-cuda image's.
RUNTIME, CUDA_RUNTIME = "airflow-mlops-horovod", "airflow-mlops-horovod-cuda"
#: Trainer v2's names: the replicated jobs of an MPI runtime; ``node`` is also the container that runs.
LAUNCHER, NODE = "launcher", "node"
ANCESTOR_LABEL, ANCESTOR_TRAINER = "trainer.kubeflow.org/trainjob-ancestor-step", "trainer"
#: The container a job of each ancestor step must have (Trainer's TrainingRuntime webhook).
_ANCESTOR_CONTAINERS = {ANCESTOR_TRAINER: NODE, "model-initializer": "model-initializer",
                        "dataset-initializer": "dataset-initializer"}
#: JobSet's labels on every pod (kubernetes-sigs/jobset api/jobset/v1alpha2/jobset_types.go).
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"
REPLICATED_JOB_LABEL = "jobset.sigs.k8s.io/replicatedjob-name"
LAUNCHER_SELECTOR = f"{JOBSET_NAME_LABEL}={{name}},{REPLICATED_JOB_LABEL}={LAUNCHER}"
#: Who owns the TrainJob's runtime patch (a domain-prefixed path, as Trainer's webhook requires).
PATCH_MANAGER = "airflow-mlops/horovod"
#: Set by Trainer's MPI plugin; a TrainJob may not (constants.MPIReservedEnvNames).
MPI_RESERVED_ENV = frozenset({"OMPI_MCA_orte_default_hostfile", "OMPI_MCA_plm_rsh_args",
                              "OMPI_MCA_orte_keep_fqdn_hostnames", "OMPI_MCA_orte_set_default_slots"})
#: The volume name of the state claim in the pods (as step pods and MPIJobs name it, kubernetes/pods.py).
VOLUME = "mlops-data"
MANAGED_BY_VALUES = ("trainer.kubeflow.org/trainjob-controller", "kueue.x-k8s.io/multikueue")

_RFC1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_HTTP_PATH = re.compile(r"^[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$")
_USE_MPIJOB = 'use launcher="mpijob"'


@dataclass(frozen=True)
class TrainJobSpec(MPIJobSpec):
    """What a Horovod training as a TrainJob needs: the fields of :class:`~.mpijob.MPIJobSpec` (same
    meaning, so a runner builds either from the same arguments) and the runtime it runs from.

    Fields the TrainJob API cannot set per job are the runtime's; a value other than the runtime's
    is refused by :meth:`errors`, naming what to do instead: elastic (``min_workers``/``max_workers``),
    ``clean_pod_policy`` other than ``Running``, ``backoff_limit`` above 0, a
    ``ttl_seconds_after_finished``, ``launcher_resources`` (the launcher is a node and gets
    ``worker_resources``), and another ``worker_command``, ``ssh_auth_mount_path`` or ``run_as_user``.

    :param runtime: the TrainingRuntime (in the job's namespace); None: :data:`RUNTIME`, or
        :data:`CUDA_RUNTIME` when ``gpus_per_worker`` is set.
    """

    launcher_resources: Mapping[str, Any] = field(default_factory=dict)
    ttl_seconds_after_finished: int | None = None
    runtime: str | None = None

    @property
    def runtime_name(self) -> str:
        return self.runtime or (CUDA_RUNTIME if self.gpus_per_worker else RUNTIME)

    def errors(self) -> list[str]:
        found = super().errors()
        if self.runtime is not None and not (isinstance(self.runtime, str) and len(self.runtime) <= 253
                                             and _SUBDOMAIN.match(self.runtime)):
            found.append(f"runtime: {self.runtime!r} is no TrainingRuntime name (a DNS-1123 subdomain)")
        if self.elastic:
            found.append("min_workers/max_workers: Kubeflow Trainer v2 has no elastic MPI training (its MPI plugin "
                         "writes a fixed hostfile, spec.trainer is immutable, and its only elastic API, PyTorch's "
                         f"ElasticPolicy, was removed in v2.2): {_USE_MPIJOB} for elastic Horovod")
        if self.clean_pod_policy != "Running":
            found.append(f"clean_pod_policy: a TrainJob has none; its JobSet deletes the nodes that still run when "
                         f"it ends (what 'Running' means), got {self.clean_pod_policy!r}: {_USE_MPIJOB}")
        if self.backoff_limit:
            found.append(f"backoff_limit: the TrainingRuntime sets it (0, and JobSet failurePolicy maxRestarts 0; "
                         f"the task's retries train again), got {self.backoff_limit!r}: {_USE_MPIJOB} to retry "
                         "the launcher inside the job")
        if self.ttl_seconds_after_finished is not None:
            found.append("ttl_seconds_after_finished: the TrainingRuntime sets it (its JobSet's "
                         f"ttlSecondsAfterFinished), not a TrainJob; got {self.ttl_seconds_after_finished!r}")
        if self.active_deadline_seconds == 0:
            found.append("active_deadline_seconds: a TrainJob's is at least 1 (or None), got 0")
        if self.launcher_resources:
            found.append("launcher_resources: the launcher is one of the nodes (runLauncherAsNode) and gets "
                         "worker_resources like them")
        if self.worker_command is None or tuple(self.worker_command) != WORKER_COMMAND:
            found.append(f"worker_command: the TrainingRuntime sets it ({list(WORKER_COMMAND)}), "
                         f"got {self.worker_command!r}")
        if self.ssh_auth_mount_path != SSH_AUTH_MOUNT_PATH:
            found.append(f"ssh_auth_mount_path: the TrainingRuntime sets it ({SSH_AUTH_MOUNT_PATH}), "
                         f"got {self.ssh_auth_mount_path!r}")
        if self.run_as_user not in (None, IMAGE_UID):
            found.append(f"run_as_user: the TrainingRuntime runs the pods as {IMAGE_UID} (the images' user, whose "
                         f"sshd the nodes run), got {self.run_as_user!r}")
        reserved = sorted(MPI_RESERVED_ENV & set(self.env))
        if reserved:
            found.append(f"env: {reserved} are set by Trainer's MPI plugin, not by a TrainJob")
        return found


def _env(values: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": str(v)} for k, v in sorted(values.items())]


def build_trainjob(spec: TrainJobSpec) -> dict[str, Any]:
    """The TrainJob manifest for ``spec``; raises :class:`ManifestError` listing every problem of the spec."""
    problems = spec.errors()
    if problems:
        raise ManifestError(f"TrainJob {spec.name!r}: " + "; ".join(problems))
    labels = {MANAGED_BY_LABEL: MANAGED_BY, **spec.labels}
    resources = {k: dict(v) for k, v in spec.worker_resources.items()}
    if spec.gpus_per_worker:
        resources.setdefault("limits", {})["nvidia.com/gpu"] = spec.gpus_per_worker
    if spec.horovodrun:
        command, env = launcher_command(spec), dict(spec.env)
    else:
        command, env = list(spec.command), {**spec.env, **horovod_env(spec)}
    trainer: dict[str, Any] = {"image": spec.image, "command": list(command), "numNodes": spec.num_workers,
                               "numProcPerNode": spec.slots_per_worker}
    if env:
        trainer["env"] = _env(env)
    if resources:
        trainer["resourcesPerNode"] = resources
    pod: dict[str, Any] = {}
    if spec.volume_claim:
        pod["volumes"] = [{"name": VOLUME, "persistentVolumeClaim": {"claimName": spec.volume_claim}}]
        pod["containers"] = [{"name": NODE, "volumeMounts": [{"name": VOLUME, "mountPath": spec.mount_path}]}]
    if spec.service_account:
        pod["serviceAccountName"] = spec.service_account
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod["tolerations"] = [dict(t) for t in spec.tolerations]
    template: dict[str, Any] = {"metadata": {"labels": dict(labels)}}
    if pod:
        template["spec"] = pod
    patch = {"manager": PATCH_MANAGER, "trainingRuntimeSpec": {"template": {
        "metadata": {"labels": dict(labels)},
        "spec": {"replicatedJobs": [{"name": job, "template": {"spec": {"template": template}}}
                                    for job in (LAUNCHER, NODE)]},
    }}}
    job: dict[str, Any] = {"runtimeRef": {"apiGroup": GROUP, "kind": RUNTIME_KIND, "name": spec.runtime_name},
                           "trainer": trainer, "runtimePatches": [patch]}
    if spec.active_deadline_seconds is not None:
        job["activeDeadlineSeconds"] = spec.active_deadline_seconds
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels},
        "spec": job,
    }


def _webhook_errors(manifest: Mapping[str, Any]) -> list[str]:
    """The TrainJob rules the schema alone does not hold: its CEL rules, and those of Trainer's webhook."""
    problems = []
    name = (manifest.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not _RFC1035.match(name) or len(name) > 63:
        problems.append(f"$.metadata.name: {name!r} must be an RFC 1035 label of at most 63 characters")
    spec = manifest.get("spec") or {}
    trainer = spec.get("trainer") or {}
    nproc = trainer.get("numProcPerNode")
    if isinstance(nproc, int) and nproc < 1:
        problems.append(f"$.spec.trainer.numProcPerNode: must be >= 1, got {nproc}")
    if "managedBy" in spec and spec["managedBy"] not in MANAGED_BY_VALUES:
        problems.append(f"$.spec.managedBy: must be one of {list(MANAGED_BY_VALUES)}, got {spec['managedBy']!r}")
    reserved = sorted(MPI_RESERVED_ENV & {e.get("name") for e in trainer.get("env") or [] if isinstance(e, Mapping)})
    if reserved:
        problems.append(f"$.spec.trainer.env: must not set the MPI plugin's {reserved}")
    for i, patch in enumerate(spec.get("runtimePatches") or []):
        manager = patch.get("manager") if isinstance(patch, Mapping) else None
        host, _, path = str(manager).partition("/")
        if not (isinstance(manager, str) and host and path and len(host) <= 253 and _SUBDOMAIN.match(host)
                and _HTTP_PATH.match(path)):
            problems.append(f"$.spec.runtimePatches[{i}].manager: {manager!r} must be a domain-prefixed path "
                            "(such as 'acme.io/foo')")
        jobs = ((((patch or {}).get("trainingRuntimeSpec") or {}).get("template") or {}).get("spec") or {})
        for j, job in enumerate(jobs.get("replicatedJobs") or []):
            pod = ((((job.get("template") or {}).get("spec") or {}).get("template") or {}).get("spec") or {})
            for c in pod.get("containers") or []:
                if c.get("name") == NODE and c.get("env"):
                    problems.append(f"$.spec.runtimePatches[{i}].trainingRuntimeSpec.template.spec.replicatedJobs[{j}]"
                                    f": must not patch the env of the container {NODE!r} (spec.trainer.env does)")
    return problems


def validate_trainjob(manifest: Mapping[str, Any], crd_path: str | os.PathLike[str], *, strict: bool = True) -> None:
    """Check a TrainJob manifest against the CRD's ``v1alpha1`` schema (the file or its folder) and the rules
    of its CEL validations and of Trainer's webhook that need no cluster; raise on errors.

    :raises ManifestError: every error with its JSON path.
    :raises FileNotFoundError: when the CRD is not there.
    """
    path, problems = manifest_errors(manifest, crd_path, CRD_FILENAME, GROUP, KIND, VERSION, strict=strict)
    refuse_invalid(manifest, KIND, path, problems + _webhook_errors(manifest))


def _replicated_jobs(runtime: Mapping[str, Any]) -> list[dict]:
    return list((((runtime.get("spec") or {}).get("template") or {}).get("spec") or {}).get("replicatedJobs") or [])


def _containers(job: Mapping[str, Any]) -> list[dict]:
    return list(((((job.get("template") or {}).get("spec") or {}).get("template") or {}).get("spec") or {})
                .get("containers") or [])


def validate_trainingruntime(manifest: Mapping[str, Any], crd_path: str | os.PathLike[str], *,
                             strict: bool = True) -> None:
    """Check a TrainingRuntime manifest against its CRD's ``v1alpha1`` schema and the rules of its CEL
    validations, Trainer's webhook and JobSet that need no cluster (one ML policy; ``numProcPerNode`` >= 1;
    a job labelled with an ancestor step has one replica and that step's container, ``node`` for the
    trainer; ``dependsOn`` names an earlier replicated job and is not combined with an ``InOrder``
    startup policy); raise on errors.

    :raises ManifestError: every error with its JSON path.
    :raises FileNotFoundError: when the CRD is not there.
    """
    path, problems = manifest_errors(manifest, crd_path, RUNTIME_CRD_FILENAME, GROUP, RUNTIME_KIND, VERSION,
                                     strict=strict)
    spec = manifest.get("spec") or {}
    policy = spec.get("mlPolicy") or {}
    frameworks = [k for k in ("torch", "mpi", "jax", "xgboost", "flux") if k in policy]
    if len(frameworks) > 1:
        problems.append(f"$.spec.mlPolicy: only one of the policies can be configured, got {frameworks}")
    nproc = (policy.get("mpi") or {}).get("numProcPerNode")
    if isinstance(nproc, int) and nproc < 1:
        problems.append(f"$.spec.mlPolicy.mpi.numProcPerNode: must be >= 1, got {nproc}")
    jobset = (spec.get("template") or {}).get("spec") or {}
    jobs = _replicated_jobs(manifest)
    earlier: set[str] = set()
    for i, job in enumerate(jobs):
        for dep in job.get("dependsOn") or []:
            if dep.get("name") not in earlier:
                problems.append(f"$.spec.template.spec.replicatedJobs[{i}].dependsOn: {dep.get('name')!r} is not a "
                                "replicated job listed before it")
        earlier.add(str(job.get("name")))
        ancestor = (((job.get("template") or {}).get("metadata") or {}).get("labels") or {}).get(ANCESTOR_LABEL)
        if ancestor in _ANCESTOR_CONTAINERS:
            if job.get("replicas", 1) != 1:
                problems.append(f"$.spec.template.spec.replicatedJobs[{i}].replicas: must be 1 for a job labelled "
                                f"{ANCESTOR_LABEL}, got {job.get('replicas')!r}")
            if _ANCESTOR_CONTAINERS[ancestor] not in [c.get("name") for c in _containers(job)]:
                problems.append(f"$.spec.template.spec.replicatedJobs[{i}].template.spec.template.spec.containers: "
                                f"a {ancestor} job needs a container {_ANCESTOR_CONTAINERS[ancestor]!r}")
    if ((jobset.get("startupPolicy") or {}).get("startupPolicyOrder") == "InOrder"
            and any(job.get("dependsOn") for job in jobs)):
        problems.append("$.spec.template.spec: StartupPolicy and DependsOn APIs are mutually exclusive")
    refuse_invalid(manifest, RUNTIME_KIND, path, problems)


def runtime_errors(runtime: Mapping[str, Any], manifest: Mapping[str, Any]) -> list[str]:
    """Why the TrainingRuntime ``runtime`` cannot run the TrainJob ``manifest`` as this module builds it (empty: it can).

    The runtime must be an MPI runtime with ``runLauncherAsNode`` (the nodes' GPUs), the ssh keys where
    the images' sshd reads them, a ``launcher`` job (ancestor ``trainer``) and a ``node`` job each
    with a container ``node``, and the node image must be the step's (a TrainJob sets the launcher's only).
    """
    where = f"{RUNTIME_KIND} {runtime.get('metadata', {}).get('namespace')}/{runtime.get('metadata', {}).get('name')}"
    mpi = ((runtime.get("spec") or {}).get("mlPolicy") or {}).get("mpi")
    if not isinstance(mpi, Mapping):
        return [f"{where} has no MPI policy (spec.mlPolicy.mpi): it is no Horovod runtime"]
    problems = []
    if mpi.get("runLauncherAsNode") is not True:
        problems.append(f"{where}: spec.mlPolicy.mpi.runLauncherAsNode must be true (Trainer v2 gives "
                        "spec.trainer.resourcesPerNode, the GPUs, to the node pods only then)")
    if mpi.get("sshAuthMountPath") != SSH_AUTH_MOUNT_PATH:
        problems.append(f"{where}: spec.mlPolicy.mpi.sshAuthMountPath must be {SSH_AUTH_MOUNT_PATH} (where the "
                        f"images' sshd reads the keys), got {mpi.get('sshAuthMountPath')!r}")
    jobs = {job.get("name"): job for job in _replicated_jobs(runtime)}
    image = ((manifest.get("spec") or {}).get("trainer") or {}).get("image")
    for name in (LAUNCHER, NODE):
        job = jobs.get(name)
        container = next((c for c in _containers(job or {}) if c.get("name") == NODE), None)
        if job is None or container is None:
            problems.append(f"{where}: no replicated job {name!r} with a container {NODE!r}")
            continue
        ancestor = ((job.get("template") or {}).get("metadata") or {}).get("labels", {}).get(ANCESTOR_LABEL)
        if name == LAUNCHER and ancestor != ANCESTOR_TRAINER:
            problems.append(f"{where}: the {LAUNCHER!r} job must be labelled {ANCESTOR_LABEL}: {ANCESTOR_TRAINER} "
                            "(the job a TrainJob's image and command go to)")
        if name == NODE and container.get("image") != image:
            problems.append(f"{where} runs the nodes on {container.get('image')!r} but the step's image is "
                            f"{image!r}; a TrainJob sets the launcher's image only: set the runtime's image to the "
                            "step's (deploy/kubernetes/README.md, Kubeflow Trainer v2)")
    return problems


def trainjob_state(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(state, reason, message)`` of a TrainJob, in the states of :func:`~.mpijob.mpijob_state`.

    ``Succeeded`` (condition ``Complete``), ``Failed``, ``Suspended`` (from the conditions); else from
    ``status.jobsStatus``: ``Running`` (the launcher job is active: it starts only once the nodes are
    Ready), ``Created`` (the JobSet's jobs exist, nodes starting), ``Pending`` (nothing yet). The
    message of the last three summarises the jobs (``launcher: 1 active; node: 1 active, 1 ready``).
    """
    status = obj.get("status") or {}
    true = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    for condition, state in (("Complete", "Succeeded"), ("Failed", "Failed"), ("Suspended", "Suspended")):
        if condition in true:
            return state, true[condition].get("reason", ""), true[condition].get("message", "")
    jobs = [j for j in status.get("jobsStatus") or [] if isinstance(j, Mapping)]
    if not jobs:
        return "Pending", "", ""
    summary = "; ".join(
        f"{j.get('name')}: " + (", ".join(f"{j[k]} {k}" for k in ("active", "ready", "succeeded", "failed", "suspended")
                                          if j.get(k)) or "no pods yet")
        for j in jobs)
    launcher = next((j for j in jobs if j.get("name") == LAUNCHER), {})
    return ("Running" if launcher.get("active") or launcher.get("ready") else "Created"), "", summary


class TrainJobController(JobController):
    """Submit, follow and delete TrainJobs; the methods and their meaning are :class:`~.jobs.JobController`'s
    (those of :class:`~.mpijob.MPIJobController`).

    :meth:`submit` first reads the job's TrainingRuntime and refuses (:class:`ManifestError`) one that is
    missing or cannot run it (:func:`runtime_errors`). A cluster without Kubeflow Trainer v2 answers
    :class:`~airflow_mlops.kubernetes.api.CrdMissingError`. The launcher pod is the one JobSet labels
    ``jobset.sigs.k8s.io/replicatedjob-name=launcher``; its container is ``node``.
    """

    GROUP, VERSION, PLURAL, KIND = GROUP, VERSION, PLURAL, KIND
    LAUNCHER_SELECTOR = LAUNCHER_SELECTOR
    launcher_container = NODE

    def job_state(self, obj: Mapping[str, Any]) -> tuple[str, str, str]:
        return trainjob_state(obj)

    def _log_kwargs(self) -> dict[str, Any]:
        return {"container": self.launcher_container}

    def read_runtime(self, name: str, namespace: str) -> dict | None:
        """The TrainingRuntime ``namespace/name``, or None when it does not exist."""
        try:
            return self._call(f"reading {RUNTIME_KIND} {namespace}/{name}", self.custom.get_namespaced_custom_object,
                              GROUP, VERSION, namespace, RUNTIME_PLURAL, name)
        except KubernetesApiError as exc:
            if exc.not_found:
                return None
            raise

    def submit(self, manifest: Mapping[str, Any], labels: Mapping[str, str]) -> tuple[dict, bool]:
        """Check the job's TrainingRuntime, then create the job or adopt the one of an earlier try (a failed
        one is deleted and created again).

        :returns: ``(job, adopted)``.
        :raises ManifestError: the runtime is missing or cannot run the job (a configuration error:
            retrying does not help).
        """
        namespace = manifest["metadata"]["namespace"]
        ref = manifest["spec"]["runtimeRef"]
        if ref.get("kind") != RUNTIME_KIND:
            raise ManifestError(f"{KIND} {namespace}/{manifest['metadata']['name']}: runtimeRef must name a "
                                f"{RUNTIME_KIND}, got {ref.get('kind')!r}")
        runtime = self.read_runtime(ref["name"], namespace)
        if runtime is None:
            raise ManifestError(f"{RUNTIME_KIND} {namespace}/{ref['name']} does not exist: apply "
                                "deploy/kubernetes/trainer (deploy/kubernetes/README.md, Kubeflow Trainer v2), "
                                f"or {_USE_MPIJOB}")
        problems = runtime_errors(runtime, manifest)
        if problems:
            raise ManifestError(problems, context=f"{KIND} {namespace}/{manifest['metadata']['name']} cannot run "
                                                  f"on {RUNTIME_KIND} {namespace}/{ref['name']}")
        return super().submit(manifest, labels)

