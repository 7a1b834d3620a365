"""A FAKE Kubernetes API server for tests. THIS IS NOT KUBERNETES.

No cluster, no etcd, no scheduler, no container runtime: :class:`FakeKubeAPI` is a threaded
``http.server`` on ``127.0.0.1:0`` that answers the Kubernetes REST API the way the real API
server does, so that the real ``kubernetes`` / ``kubernetes_asyncio`` clients, and the
cncf-kubernetes provider's hooks and ``PodManager`` built on them, can be tested against it.
Everything on the client side of HTTP is real; everything behind it is FAKED:

* **API server** (HTTP/1.1, keep-alive, ``Content-Length``; streams are
  ``Transfer-Encoding: chunked``): core v1 ``pods`` (+ ``status``, ``log``), ``events``,
  ``configmaps``, ``services``, ``secrets``; batch v1 ``jobs`` (+ ``status``); custom resources
  behind CRDs ``kubeflow.org/v2beta1 mpijobs``, ``machinelearning.seldon.io/v1
  seldondeployments``, ``trainer.kubeflow.org/v1alpha1 trainjobs`` (+ ``status``) and
  ``trainingruntimes``, each registered or not (``crds=``; Kubeflow Trainer v2's two are not by
  default: :meth:`FakeKubeAPI.register_crd` them). Verbs: create, get,
  list (``labelSelector``, ``fieldSelector`` on dotted paths), ``watch=true``, replace
  (``resourceVersion`` checked), patch (merge, strategic-merge, JSON patch), delete
  (propagation policies, garbage collection of ``ownerReferences`` dependents), discovery.
  Errors are the real ``kind: Status`` bodies (NotFound, AlreadyExists, Conflict, Invalid, ...).
* **kubelet** (scripted): pods go Pending → Running → Succeeded/Failed with real status
  shapes; what a pod does is a :class:`PodRun` returned by the pluggable ``kubelet`` callback
  (:class:`ScriptedKubelet`, or :class:`LocalProcessKubelet` which runs the container's command
  as a LOCAL subprocess). Its output is the pod log (``follow``, ``timestamps``, ...).
* **controllers** (scripted): a batch/v1 Job controller, the Kubeflow MPI Operator (v2beta1),
  Kubeflow Trainer v2 with JobSet for TrainJobs of MPI runtimes (:meth:`FakeKubeAPI._reconcile_trainjob`)
  and the Seldon controller of the older ``tests/serving/fake_kube_api.py`` (status written on
  reads: see :meth:`FakeKubeAPI.outcome`).
* **fault injection**: :meth:`FakeKubeAPI.fail_next`, :meth:`FakeKubeAPI.drop_next`,
  :meth:`FakeKubeAPI.before_next`; every request is recorded in :attr:`FakeKubeAPI.requests`.

What it does NOT fake is listed in :data:`NOT_FAKED`.
"""

from __future__ import annotations

import base64
import copy
import fnmatch
import hashlib
import json
import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

NOT_FAKED = """\
Not faked (the fake answers these differently from a real cluster, or not at all):
authentication/authorization (no RBAC: every request is allowed unless fail_next says
otherwise); namespaces (every namespace exists); admission webhooks and CRD OpenAPI schema
validation (only a few checks: names, pod containers, job restartPolicy, mpiReplicaSpecs);
server-side apply (415); pagination (limit/continue ignored); fieldSelector accepts any
dotted path; resourceVersion semantics of list/get; watch bookmarks and 410 Gone;
exec/attach/port-forward/proxy; finalizers (deletion never waits for them); graceful pod
termination (gone at once unless pod_deletion_delay); a pod's activeDeadlineSeconds IS applied
(its container stopped, the pod Failed with reason DeadlineExceeded); container restarts (restartPolicy is
ignored: every container runs once, no CrashLoopBackOff, no restartCount) and Job retry
back-off delays (replacement pods start at once); init containers (reported Completed);
sidecar containers (exit 0 with the first container); probes, resources and QoS enforcement,
volumes, configMap/secret env, images (nothing is pulled); strategic merge patch directives
beyond name-keyed lists and $patch; Job parallelism/completions > 1, indexed jobs, suspend,
pod failure policies; MPIJob suspend, elastic scaling, gang scheduling, the TTL of MPIJobs
(the launcher Job's ttlSecondsAfterFinished IS applied); events are not aggregated.
Kubeflow Trainer v2: only TrainJobs of namespaced TrainingRuntimes with an MPI policy (OpenMPI)
run (ClusterTrainingRuntimes are not served; other runtimes get a TrainJobResourcesCreationFailed
event and nothing else); no JobSet object and no node Jobs: the fake makes the node pods itself,
owned by the TrainJob (in a cluster: Indexed Job <name>-node-0 of JobSet <name>), and the launcher
as a batch Job <name>-launcher-0 owned by the TrainJob, whose pod is named <name>-launcher-0-<random>
(in a cluster <name>-launcher-0-0-<random>); JobSet failurePolicy restarts, startupPolicy,
coordinator, successPolicy other than the launcher's, volumeClaimPolicies, group labels and the
JobSet's own status; the JobSet's ttlSecondsAfterFinished is applied to the launcher Job only;
runtimePatches are merged with the fake's strategic merge patch (lists of named objects by name);
the webhooks check only that the runtime exists; the ssh keys are not real keys; TrainJob events
are not emitted except TrainJobResourcesCreationFailed."""

# ----------------------------------------------------------------------------- resources


@dataclass(frozen=True)
class ResourceType:
    """One REST resource of the fake API server."""

    group: str
    version: str
    plural: str
    kind: str
    singular: str
    short_names: tuple[str, ...] = ()
    crd: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``pods``, ``jobs.batch``, ``mpijobs.kubeflow.org``: how errors name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        """``Pod``, ``Job.batch``: how Invalid errors name the kind."""
        return f"{self.kind}.{self.group}" if self.group else self.kind


POD = ResourceType("", "v1", "pods", "Pod", "pod", ("po",))
EVENT = ResourceType("", "v1", "events", "Event", "event", ("ev",))
CONFIGMAP = ResourceType("", "v1", "configmaps", "ConfigMap", "configmap", ("cm",))
SERVICE = ResourceType("", "v1", "services", "Service", "service", ("svc",))
SECRET = ResourceType("", "v1", "secrets", "Secret", "secret")
JOB = ResourceType("batch", "v1", "jobs", "Job", "job")
MPIJOB = ResourceType("kubeflow.org", "v2beta1", "mpijobs", "MPIJob", "mpijob", ("mpij",), crd=True)
SELDON = ResourceType(
    "machinelearning.seldon.io", "v1", "seldondeployments", "SeldonDeployment", "seldondeployment", ("sdep",), crd=True
)
TRAINJOB = ResourceType("trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob", "trainjob", crd=True)
TRAININGRUNTIME = ResourceType("trainer.kubeflow.org", "v1alpha1", "trainingruntimes", "TrainingRuntime",
                               "trainingruntime", crd=True)
RESOURCES: dict[str, ResourceType] = {rt.plural: rt for rt in (POD, EVENT, CONFIGMAP, SERVICE, SECRET, JOB, MPIJOB, SELDON,
                                                              TRAINJOB, TRAININGRUNTIME)}
CUSTOM_RESOURCES = ("mpijobs", "seldondeployments", "trainjobs", "trainingruntimes")
#: The CRDs a FakeKubeAPI installs unless told (``crds=``): Kubeflow Trainer v2 is an optional extra.
DEFAULT_CRDS = ("mpijobs", "seldondeployments")
_WITH_STATUS = {"pods", "jobs", "mpijobs", "seldondeployments", "trainjobs"}

# the names of tests/serving/fake_kube_api.py (SeldonDeployments)
GROUP, VERSION, PLURAL = SELDON.group, SELDON.version, SELDON.plural
RESOURCE = SELDON.qualified

# labels of the MPI Operator, pkg/apis/kubeflow/v2beta1/constants.go
MPI_OPERATOR_NAME_LABEL = "training.kubeflow.org/operator-name"
MPI_JOB_NAME_LABEL = "training.kubeflow.org/job-name"
MPI_JOB_ROLE_LABEL = "training.kubeflow.org/job-role"
MPI_REPLICA_INDEX_LABEL = "training.kubeflow.org/replica-index"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
# labels of JobSet (kubernetes-sigs/jobset api/jobset/v1alpha2/jobset_types.go, pkg/constants) and Kubeflow Trainer v2
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"
JOBSET_REPLICATED_JOB_LABEL = "jobset.sigs.k8s.io/replicatedjob-name"
JOBSET_REPLICAS_LABEL = "jobset.sigs.k8s.io/replicatedjob-replicas"
JOBSET_JOB_INDEX_LABEL = "jobset.sigs.k8s.io/job-index"
JOBSET_RESTARTS_LABEL = "jobset.sigs.k8s.io/restart-attempt"
TRAINJOB_ANCESTOR_LABEL = "trainer.kubeflow.org/trainjob-ancestor-step"

NOT_FOUND_BODY = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "the server could not find the requested resource",
    "reason": "NotFound",
    "details": {},
    "code": 404,
}
_REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
    406: "NotAcceptable", 409: "Conflict", 410: "Expired", 415: "UnsupportedMediaType", 422: "Invalid",
    429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
}
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_RAND_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand


@dataclass
class Recorded:
    """One request the fake received (``body``: parsed JSON, else text, else None)."""

    method: str
    path: str
    query: str
    body: Any
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, str]:
        """The query parameters (last value of each)."""
        return {k: v[-1] for k, v in parse_qs(self.query, keep_blank_values=True).items()}


def status_object(
    code: int,
    message: str,
    *,
    reason: str | None = None,
    name: str | None = None,
    group: str | None = None,
    kind: str | None = None,
    details: Mapping[str, Any] | None = None,
    retry_after: int | None = None,
) -> dict:
    """A ``kind: Status`` failure as the API server sends it."""
    extra: dict[str, Any] = {}
    for key, value in (("name", name), ("group", group), ("kind", kind)):
        if value:
            extra[key] = value
    extra.update(details or {})
    if retry_after is not None:
        extra["retryAfterSeconds"] = retry_after
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or _REASONS.get(code, "Unknown"),
        "details": extra,
        "code": code,
    }


class ApiError(Exception):
    """An error answer of the fake API server (a Status body)."""

    def __init__(self, code: int, body: dict, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(body.get("message"))
        self.code, self.body, self.headers = code, body, dict(headers or {})


def _details(rt: ResourceType, name: str | None, kind: str | None = None) -> dict[str, str]:
    return {k: v for k, v in (("name", name), ("group", rt.group), ("kind", kind or rt.plural)) if v}


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, status_object(404, f'{rt.qualified} "{name}" not found', details=_details(rt, name)))


def already_exists(rt: ResourceType, name: str) -> ApiError:
    body = status_object(409, f'{rt.qualified} "{name}" already exists', reason="AlreadyExists",
                         details=_details(rt, name))
    return ApiError(409, body)


def conflict(rt: ResourceType, name: str) -> ApiError:
    message = (f'Operation cannot be fulfilled on {rt.qualified} "{name}": the object has been modified; '
               "please apply your changes to the latest version and try again")
    return ApiError(409, status_object(409, message, reason="Conflict", details=_details(rt, name)))


def invalid(rt: ResourceType, name: str, causes: Sequence[tuple[str, str, str]]) -> ApiError:
    """422 Invalid; ``causes``: ``(field, cause reason, message)`` like ``("spec.x", "FieldValueRequired", ...)``."""
    texts = [f"{f}: {m}" for f, _, m in causes]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    details = {**_details(rt, name, rt.kind), "causes": [{"reason": r, "message": m, "field": f} for f, r, m in causes]}
    return ApiError(422, status_object(422, f'{rt.qualified_kind} "{name}" is invalid: {joined}', details=details))


def bad_request(message: str) -> ApiError:
    body = status_object(400, message)
    del body["details"]
    return ApiError(400, body)


# ----------------------------------------------------------------------------- helpers


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rfc3339_nano(ns: int) -> str:
    """``2026-11-27T10:00:00.123456789Z``: the kubelet's fixed-width log timestamp."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


def _parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _rand(n: int = 5) -> str:
    return "".join(random.choice(_RAND_ALPHABET) for _ in range(n))


def _hex(seed: str, n: int = 64) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:n]


def _full_image(image: str) -> str:
    """``python:3.11`` → ``docker.io/library/python:3.11`` as the kubelet reports it."""
    name = image
    if "/" not in name.split(":")[0]:
        name = f"library/{name}"
    first = name.split("/")[0]
    if "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    if ":" not in name.rsplit("/", 1)[-1] and "@" not in name:
        name += ":latest"
    return name


def _image_id(image: str) -> str:
    full = _full_image(image)
    return f"{full.rsplit(':', 1)[0]}@sha256:{_hex(full)}"


def _flag(query: Mapping[str, str], key: str) -> bool:
    """A boolean query parameter as Go's ``strconv.ParseBool`` reads it (the Python client sends ``True``)."""
    return query.get(key, "") in ("1", "t", "T", "true", "True", "TRUE")


def _path_get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(part)
    return obj


def _split_terms(text: str) -> list[str]:
    terms, depth, buf = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            terms.append(buf)
            buf = ""
        else:
            buf += ch
    terms.append(buf)
    return [t for t in terms if t.strip()]


_REQ_SET = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_REQ_EQ = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")
_REQ_EXISTS = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*$")


def label_matcher(selector: str | None) -> Callable[[Mapping[str, str]], bool]:
    """A predicate on labels for a ``labelSelector`` (``a=b``, ``a!=b``, ``a in (x,y)``, ``a notin (..)``, ``a``, ``!a``)."""
    preds: list[Callable[[Mapping[str, str]], bool]] = []
    for term in _split_terms(selector or ""):
        if m := _REQ_SET.match(term):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",") if v.strip()}
            if op == "in":
                preds.append(lambda lab, k=key, vs=values: lab.get(k) in vs)
            else:
                preds.append(lambda lab, k=key, vs=values: lab.get(k) not in vs)
        elif m := _REQ_EQ.match(term):
            key, op, value = m.groups()
            if op == "!=":
                preds.append(lambda lab, k=key, v=value: lab.get(k) != v)
            else:
                preds.append(lambda lab, k=key, v=value: k in lab and lab[k] == v)
        elif m := _REQ_EXISTS.match(term):
            neg, key = m.groups()
            preds.append((lambda lab, k=key: k not in lab) if neg else (lambda lab, k=key: k in lab))
        else:
            raise bad_request(f"unable to parse requirement: {term.strip()!r}: invalid label selector {selector!r}")
    return lambda labels: all(p(labels) for p in preds)


def field_matcher(selector: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate on objects for a ``fieldSelector`` of ``path=value`` / ``path!=value`` terms (any dotted path)."""
    preds: list[Callable[[Mapping[str, Any]], bool]] = []
    for term in _split_terms(selector or ""):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not m:
            raise bad_request(f"invalid field selector: {term!r}")
        path, op, value = m.groups()

        def text(obj: Mapping[str, Any], p: str = path) -> str:
            got = _path_get(obj, p)
            return "" if got is None else (str(got).lower() if isinstance(got, bool) else str(got))

        preds.append((lambda o, v=value, t=text: t(o) != v) if op == "!=" else (lambda o, v=value, t=text: t(o) == v))
    return lambda obj: all(p(obj) for p in preds)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """A merge patch that merges lists of named objects (containers, env, volumes, ...) by ``name``."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        current = result.get(key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and isinstance(current, list) and _named(value) and _named(current):
            merged = [copy.deepcopy(c) for c in current]
            for item in value:
                index = next((i for i, c in enumerate(merged) if c["name"] == item["name"]), None)
                if item.get("$patch") == "delete":
                    if index is not None:
                        del merged[index]
                elif index is None:
                    merged.append(strategic_merge_patch({}, item))
                else:
                    merged[index] = strategic_merge_patch(merged[index], item)
            result[key] = merged
        else:
            result[key] = strategic_merge_patch(current, value)
    return result


def _named(items: list) -> bool:
    return all(isinstance(i, Mapping) and "name" in i for i in items)


def json_patch(doc: Any, operations: Sequence[Mapping[str, Any]]) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test); raises ``ValueError``."""
    doc = copy.deepcopy(doc)

    def tokens(pointer: str) -> list[str]:
        if pointer == "":
            return []
        if not pointer.startswith("/"):
            raise ValueError(f"invalid JSON pointer {pointer!r}")
        return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]

    def parent(path: str) -> tuple[Any, str]:
        parts = tokens(path)
        if not parts:
            raise ValueError("cannot patch the root")
        node = doc
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node, parts[-1]

    def get(path: str) -> Any:
        node = doc
        for part in tokens(path):
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node

    def add(path: str, value: Any) -> None:
        node, last = parent(path)
        if isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), value)
        else:
            node[last] = value

    def remove(path: str) -> Any:
        node, last = parent(path)
        return node.pop(int(last)) if isinstance(node, list) else node.pop(last)

    for op in operations:
        kind, path = op.get("op"), op.get("path", "")
        try:
            if kind == "add":
                add(path, copy.deepcopy(op["value"]))
            elif kind == "remove":
                remove(path)
            elif kind == "replace":
                remove(path)
                add(path, copy.deepcopy(op["value"]))
            elif kind == "move":
                add(path, remove(op["from"]))
            elif kind == "copy":
                add(path, copy.deepcopy(get(op["from"])))
            elif kind == "test":
                if get(path) != op.get("value"):
                    raise ValueError(f"testing value {path} failed")
            else:
                raise ValueError(f"Unexpected kind: {kind}")
        except (KeyError, IndexError, TypeError) as error:
            raise ValueError(f"jsonpatch {kind} operation does not apply: doc is missing path: {path}") from error
    return doc


def _is_mpi_worker(pod: Mapping[str, Any]) -> bool:
    """An MPI worker: an MPIJob's worker pod, or a node pod of a TrainJob (the fake runs TrainJobs of MPI runtimes
    only, whose ``node`` pods run sshd)."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    if labels.get(MPI_OPERATOR_NAME_LABEL) == "mpi-operator" and labels.get(MPI_JOB_ROLE_LABEL) == "worker":
        return True
    return bool(labels.get(JOBSET_NAME_LABEL)) and labels.get(JOBSET_REPLICATED_JOB_LABEL) == "node"


def _controller_ref(obj: Mapping[str, Any]) -> dict | None:
    return next((r for r in (obj.get("metadata") or {}).get("ownerReferences") or [] if r.get("controller")), None)


def _owner_ref(obj: Mapping[str, Any]) -> dict:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


# ----------------------------------------------------------------------------- kubelets


class ContainerStartError(Exception):
    """Raised by :attr:`PodRun.start` when the container cannot start (→ terminated ``StartError``, 128)."""


@dataclass
class PodRun:
    """What the fake kubelet makes of a pod (its first container; others just run alongside and exit 0).

    :param logs: the log lines (or a callable returning them, called when the container starts); may be
        a slow generator: lines reach ``follow`` readers as they are produced.
    :param exit_code: the exit code (or a callable, called after the last line); 0 → ``Succeeded``.
    :param reason: ``state.terminated.reason``; default ``Completed`` (0) or ``Error``; e.g. ``OOMKilled``.
    :param message: ``state.terminated.message`` (the termination message).
    :param interval: seconds between log lines.
    :param start_delay: seconds in ``ContainerCreating`` before ``Running``.
    :param pending_reason: the container stays ``waiting`` with this reason (``ErrImagePull``,
        ``ImagePullBackOff``, ``CreateContainerConfigError``, ...); the pod stays ``Pending``.
    :param pending_message: its message (default: what the kubelet says for image pull errors).
    :param unschedulable: the pod is never scheduled (``PodScheduled=False``, ``Unschedulable``, a
        ``FailedScheduling`` event); ``True`` or the scheduler's message.
    :param run_until_deleted: after the last line the container keeps running until the pod is deleted.
    :param pod_reason: ``status.reason`` of a failed pod (e.g. ``Evicted``), with ``pod_message``.
    :param start: called when the container starts; may raise :class:`ContainerStartError`.
    :param stop: called (in its own thread) when the pod is deleted or the fake stops.
    """

    logs: Iterable[str | bytes] | Callable[[], Iterable[str | bytes]] = ()
    exit_code: int | Callable[[], int] = 0
    reason: str | None = None
    message: str | None = None
    interval: float = 0.0
    start_delay: float = 0.0
    pending_reason: str | None = None
    pending_message: str | None = None
    unschedulable: bool | str = False
    run_until_deleted: bool = False
    pod_reason: str | None = None
    pod_message: str | None = None
    start: Callable[[], None] | None = None
    stop: Callable[[], None] | None = None


Kubelet = Callable[[dict], "PodRun | None"]
"""The kubelet callback: ``fn(pod) -> PodRun``; ``None``: the default (MPI workers idle until deleted, others exit 0)."""


class ScriptedKubelet:
    """Every pod prints ``lines`` and exits ``exit_code`` (default: nothing, 0).

    :param pods: per-pod :class:`PodRun` by ``fnmatch`` pattern of the pod name (first match wins),
        e.g. ``{"train-launcher-*": PodRun(logs=["done"])}``; ``logs`` should be a list or a callable.
    :param workers: what MPI worker pods do; default: stay Running until deleted (as ``sshd`` does).
    """

    def __init__(
        self,
        lines: Iterable[str] = (),
        exit_code: int = 0,
        *,
        reason: str | None = None,
        interval: float = 0.0,
        pods: Mapping[str, PodRun] | None = None,
        workers: PodRun | None = None,
    ) -> None:
        self.lines, self.exit_code, self.reason, self.interval = list(lines), exit_code, reason, interval
        self.pods, self.workers = dict(pods or {}), workers

    def __call__(self, pod: dict) -> PodRun | None:
        name = pod["metadata"]["name"]
        for pattern, run in self.pods.items():
            if fnmatch.fnmatchcase(name, pattern):
                return copy.copy(run)
        if _is_mpi_worker(pod):
            return copy.copy(self.workers) if self.workers else None
        return PodRun(logs=list(self.lines), exit_code=self.exit_code, reason=self.reason, interval=self.interval)


def use_local_python(executable: str = sys.executable) -> Callable[[list[str], dict[str, str]], tuple[list[str], dict[str, str]]]:
    """A :class:`LocalProcessKubelet` rewrite that runs the image's ``python``/``python3.x`` as ``executable``."""

    def rewrite(argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        if argv and re.fullmatch(r"python(\d+(\.\d+)?)?", os.path.basename(argv[0])):
            argv = [executable, *argv[1:]]
        return argv, env

    return rewrite


class _LocalProcess:
    def __init__(self, argv: list[str], env: dict[str, str], cwd: str | None, kill_after: float,
                 tmp: str | None = None) -> None:
        self.argv, self.env, self.cwd, self.kill_after, self.tmp = argv, env, cwd, kill_after, tmp
        self.proc: subprocess.Popen[bytes] | None = None

    def _remove_tmp(self) -> None:
        if self.tmp:
            import shutil

            shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self) -> None:
        try:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as error:
            self._remove_tmp()
            raise ContainerStartError(
                "failed to create containerd task: failed to create shim task: OCI runtime create failed: "
                f'runc create failed: unable to start container process: exec: "{self.argv[0]}": {error.strerror}: '
                "unknown") from error

    def lines(self) -> Iterator[bytes]:
        assert self.proc is not None and self.proc.stdout is not None
        yield from iter(self.proc.stdout.readline, b"")

    def exit_code(self) -> int:
        assert self.proc is not None
        code = self.proc.wait()
        self._remove_tmp()  # the container's /tmp goes with it
        return code if code >= 0 else 128 - code

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            self._remove_tmp()
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=self.kill_after)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._remove_tmp()


class LocalProcessKubelet:
    """Runs the first container's ``command`` + ``args`` as a LOCAL subprocess; its merged stdout/stderr is the log.

    The environment is ``PATH``/``HOME`` of this process (all of it with ``inherit_env``), ``HOSTNAME``,
    ``TMPDIR`` (a directory of the pod's own, removed when it ends, as a container's ``/tmp``), the container's ``env`` (``value`` and ``fieldRef``; ``$(VAR)`` expanded in command/args), then
    ``env``; ``rewrite(argv, env) -> (argv, env)`` may change both (see :func:`use_local_python`).
    The exit code decides the phase; deleting the pod sends SIGTERM (SIGKILL after ``kill_after`` s).

    :param workers: what MPI worker pods do; default: stay Running until deleted, nothing is run.
    """

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        rewrite: Callable[[list[str], dict[str, str]], tuple[list[str], dict[str, str]]] | None = None,
        cwd: str | None = None,
        inherit_env: bool = False,
        kill_after: float = 2.0,
        workers: PodRun | None = None,
    ) -> None:
        self.env, self.rewrite, self.cwd, self.inherit_env = dict(env or {}), rewrite, cwd, inherit_env
        self.kill_after, self.workers = kill_after, workers

    def __call__(self, pod: dict) -> PodRun | None:
        if _is_mpi_worker(pod):
            return copy.copy(self.workers) if self.workers else None
        container = pod["spec"]["containers"][0]
        env = dict(os.environ) if self.inherit_env else {
            k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
        env["HOSTNAME"] = pod["spec"].get("hostname") or pod["metadata"]["name"]
        for var in container.get("env") or []:
            value = self._value(pod, var)
            if value is not None:
                env[var["name"]] = _expand(value, env)
        env.update(self.env)
        argv = [_expand(a, env) for a in [*(container.get("command") or []), *(container.get("args") or [])]]
        if not container.get("command"):
            message = ("LocalProcessKubelet: the container has no command; the image's ENTRYPOINT is unknown to "
                       "this FAKE kubelet")
            return PodRun(start=_fail_start(message))
        # a container has a /tmp of its own, gone with it: TMPDIR points the process at one
        tmp = None
        if "TMPDIR" not in {var.get("name") for var in container.get("env") or []}:
            import tempfile

            tmp = env["TMPDIR"] = tempfile.mkdtemp(prefix="fake-pod-tmp-")
        if self.rewrite:
            argv, env = self.rewrite(argv, env)
        workdir = self.cwd or (container.get("workingDir") if os.path.isdir(container.get("workingDir") or "") else None)
        process = _LocalProcess(argv, env, workdir, self.kill_after, tmp)
        return PodRun(logs=process.lines, exit_code=process.exit_code, start=process.start, stop=process.stop)

    @staticmethod
    def _value(pod: dict, var: Mapping[str, Any]) -> str | None:
        if "value" in var:
            return str(var["value"])
        ref = (var.get("valueFrom") or {}).get("fieldRef")
        if not ref:
            return None
        path = ref.get("fieldPath", "")
        if m := re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path):
            return ((pod["metadata"].get(m.group(1)) or {}).get(m.group(2))) or ""
        got = _path_get(pod, path)
        return "" if got is None else str(got)


def _fail_start(message: str) -> Callable[[], None]:
    def start() -> None:
        raise ContainerStartError(message)

    return start


def _expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion (``$$(VAR)`` escapes)."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


# ----------------------------------------------------------------------------- internals


@dataclass
class _Rule:
    method: str
    skip: int
    path_contains: str | None
    action: tuple[Any, ...]

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and (self.path_contains is None or self.path_contains in path)


@dataclass
class _Reply:
    code: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


@dataclass
class _Stream:
    code: int
    chunks: Iterator[bytes]
    content_type: str


_DROP = object()


class _ContainerLog:
    def __init__(self) -> None:
        self.lines: list[tuple[int, str]] = []  # (time in ns, line)
        self.closed = False


class _PodRunState:
    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.stopped = threading.Event()
        self.expired = threading.Event()  # past the pod's activeDeadlineSeconds: the kubelet killed it
        self.run: PodRun | None = None
        self.thread: threading.Thread | None = None

    def expire(self) -> None:
        """The pod ran past its ``activeDeadlineSeconds``: stop its container (the pod stays, Failed)."""
        if self.stopped.is_set() or self.expired.is_set():
            return
        self.expired.set()
        run = self.run
        if run is not None and run.stop is not None:
            threading.Thread(target=run.stop, name="fake-kubelet-deadline", daemon=True).start()

    def stop(self) -> None:
        if self.stopped.is_set():
            return
        self.stopped.set()
        run = self.run
        if run is not None and run.stop is not None:
            threading.Thread(target=run.stop, name="fake-kubelet-stop", daemon=True).start()


# ----------------------------------------------------------------------------- the server


class FakeKubeAPI:
    """A FAKE Kubernetes API server (see the module docstring). Use as a context manager.

    :param stale_polls: SeldonDeployment reads after a spec change that still see the previous status.
    :param creating_polls: SeldonDeployment reads after those that see ``Creating``.
    :param crds: the custom resources whose CRD is installed (default :data:`DEFAULT_CRDS`; any of
        :data:`CUSTOM_RESOURCES`).
    :param kubelet: what pods do (default: :class:`ScriptedKubelet`: print nothing, exit 0);
        may be replaced any time through :attr:`kubelet` (pods use the kubelet current at their creation).
    :param pod_deletion_delay: seconds a deleted pod stays visible (terminating) before it goes; 0: at once.
    :param seldon_pods: the Seldon controller runs each predictor with a model-server image (``componentSpecs``) as
        a pod (its kubelet runs it); the SeldonDeployment is ``Available`` once they run, ``Failed`` when one
        fails. Off: its status is scripted (:meth:`outcome`).
    """

    def __init__(
        self,
        *,
        stale_polls: int = 1,
        creating_polls: int = 1,
        crds: Iterable[str] = DEFAULT_CRDS,
        kubelet: Kubelet | None = None,
        pod_deletion_delay: float = 0.0,
        node_name: str = "fake-node",
        seldon_pods: bool = False,
    ) -> None:
        self.seldon_pods = seldon_pods
        self.stale_polls = stale_polls
        self.creating_polls = creating_polls
        self.kubelet: Kubelet = kubelet or ScriptedKubelet()
        self.pod_deletion_delay = pod_deletion_delay
        self.node_name = node_name
        self.requests: list[Recorded] = []
        self.errors: list[str] = []  # unexpected exceptions inside the fake (tracebacks)
        self._crds: set[str] = set()
        for plural in crds:
            self.register_crd(plural)
        self._store: dict[str, dict[tuple[str, str], dict]] = {plural: {} for plural in RESOURCES}
        self._polls: dict[tuple[str, str], int] = {}
        self._rules: list[_Rule] = []
        self._before: list[_Rule] = []
        self._logs: dict[tuple[str, str], _ContainerLog] = {}  # (pod uid, container)
        self._runs: dict[str, _PodRunState] = {}  # pod uid → its kubelet run
        self._job_pods: dict[str, dict[str, str]] = {}  # job uid → {pod uid: phase}
        self._history: list[tuple[int, str, str, dict]] = []  # (resourceVersion, type, plural, object)
        self._queue: dict[tuple[str, str, str], None] = {}
        self._draining = False
        self._version = 1000
        self._uid = 0
        self._ips = 0
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-kube-api", daemon=True
        )
        self._ticker = threading.Thread(target=self._tick, name="fake-kube-controllers", daemon=True)

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        self._thread.start()
        self._ticker.start()
        return self

    def stop(self) -> None:
        """Stop serving, end every stream and kubelet run (local processes are killed)."""
        self._stopping.set()
        with self._lock:
            runs = list(self._runs.values())
            self._changed.notify_all()
        for run in runs:
            run.stop()
        if self._thread.is_alive():
            self._httpd.shutdown()
        for conn in list(self._connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._httpd.server_close()
        self._thread.join(timeout=5)
        if self._ticker.is_alive():
            self._ticker.join(timeout=5)
        for run in runs:
            if run.thread is not None and run.thread is not threading.current_thread():
                run.thread.join(timeout=0.5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting ------------------------------------------------------------------------
    def outcome(self, spec: dict) -> tuple[str, str] | None:
        """How the fake Seldon controller ends a rollout of ``spec``: ``(state, description)``, None: never."""
        uris = model_uris(spec)
        if broken := [u for u in uris if "broken" in u]:
            return "Failed", f"failed to download the model from {broken[0]}: storage initializer exited with code 1"
        if any("stuck" in u for u in uris):
            return None
        return "Available", ""

    def fail_next(
        self,
        method: str,
        code: int,
        message: str,
        *,
        skip: int = 0,
        path_contains: str | None = None,
        retry_after: int | None = None,
        reason: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` ``method`` requests (``"*"``: any; after ``skip`` of them; only paths
        containing ``path_contains``) with a Status error ``code`` (``Retry-After`` header with ``retry_after``)."""
        with self._lock:
            for i in range(times):
                action = ("fail", code, message, retry_after, reason)
                self._rules.append(_Rule(method, skip if i == 0 else 0, path_contains, action))

    def drop_next(self, method: str, *, skip: int = 0, path_contains: str | None = None, times: int = 1) -> None:
        """Close the connection of the next ``times`` matching requests without answering (the client sees the
        peer disconnect). urllib3 and aiohttp retry an idempotent request once or more: drop more than one."""
        with self._lock:
            for i in range(times):
                self._rules.append(_Rule(method, skip if i == 0 else 0, path_contains, ("drop",)))

    def before_next(
        self, method: str, action: Callable[[FakeKubeAPI], None], *, skip: int = 0, path_contains: str | None = None
    ) -> None:
        """Run ``action(self)`` just before handling the next matching request (a change "by another client")."""
        with self._lock:
            self._before.append(_Rule(method, skip, path_contains, (action,)))

    def requests_of(self, method: str, path_contains: str | None = None) -> list[Recorded]:
        """The recorded requests of one method (and path)."""
        return [r for r in self.requests if r.method == method and (path_contains is None or path_contains in r.path)]

    # -- CRDs -----------------------------------------------------------------------------
    @property
    def crds(self) -> frozenset[str]:
        return frozenset(self._crds)

    def register_crd(self, plural: str) -> None:
        """Install the CRD of a known custom resource (one of :data:`CUSTOM_RESOURCES`)."""
        if plural not in CUSTOM_RESOURCES:
            raise ValueError(f"unknown custom resource {plural!r}; known: {CUSTOM_RESOURCES}")
        self._crds.add(plural)

    def unregister_crd(self, plural: str) -> None:
        """Remove a CRD, and with it every object of that resource."""
        with self._lock:
            self._crds.discard(plural)
            for key in list(self._store[plural]):
                self._remove(RESOURCES[plural], *key)

    # -- direct access (no HTTP, not recorded) ----------------------------------------------
    @property
    def objects(self) -> dict[tuple[str, str], dict]:
        """The stored SeldonDeployments by ``(namespace, name)``, live (as in the older Seldon fake)."""
        return self._store[SELDON.plural]

    def store(self, plural: str) -> dict[tuple[str, str], dict]:
        """The live store of one resource by ``(namespace, name)``; change it under :meth:`modify`."""
        return self._store[plural]

    def create(self, manifest: Mapping[str, Any], *, status: Mapping[str, Any] | None = None) -> dict:
        """Create an object as a client would (defaults, controllers, kubelet), optionally with a status."""
        rt = self._type_of(manifest)
        namespace = (manifest.get("metadata") or {}).get("namespace") or "default"
        with self._lock:
            obj = self._create(rt, namespace, copy.deepcopy(dict(manifest)))
            if status is not None:
                obj["status"] = copy.deepcopy(dict(status))
                self._touch(rt, obj, spec_changed=False)
            self._drain()
            return copy.deepcopy(obj)

    def read(self, plural: str, namespace: str, name: str) -> dict | None:
        """A copy of a stored object, or None."""
        with self._lock:
            obj = self._store[plural].get((namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list_objects(self, plural: str, namespace: str | None = None, label_selector: str | None = None) -> list[dict]:
        """Copies of the stored objects of a resource, sorted by namespace and name."""
        match = label_matcher(label_selector)
        with self._lock:
            return [copy.deepcopy(o) for (ns, _), o in sorted(self._store[plural].items())
                    if (namespace is None or ns == namespace) and match(o["metadata"].get("labels") or {})]

    def delete(self, plural: str, namespace: str, name: str, *, propagation: str | None = None) -> None:
        """Delete an object as a client would (garbage collection included)."""
        with self._lock:
            self._delete(RESOURCES[plural], namespace, name, {"propagationPolicy": propagation} if propagation else {})
            self._drain()

    def seed(self, manifest: dict, *, state: str = "Available", description: str = "") -> dict:
        """Store a SeldonDeployment ``manifest`` as if created and rolled out already (status of its generation)."""
        with self._lock:
            obj = self._create(SELDON, manifest["metadata"]["namespace"], copy.deepcopy(manifest))
            obj["status"] = {"state": state, "description": description, "observedGeneration": 1}
            return copy.deepcopy(obj)

    def modify(self, namespace: str, name: str, change: Callable[[dict], None], *, resource: str = PLURAL) -> None:
        """Change a stored object as another client would (new resourceVersion, generation on spec change)."""
        with self._lock:
            obj = self._store[resource][(namespace, name)]
            before = {k: copy.deepcopy(v) for k, v in obj.items() if k not in ("metadata", "status")}
            change(obj)
            after = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
            self._touch(RESOURCES[resource], obj, spec_changed=after != before)
            self._drain()

    def add_event(
        self,
        involved: Mapping[str, Any],
        reason: str,
        message: str,
        *,
        type: str = "Normal",
        component: str = "kubelet",
        field_path: str | None = None,
    ) -> dict:
        """Record a core v1 Event about ``involved`` (an object)."""
        with self._lock:
            return copy.deepcopy(self._event(involved, reason, message, type, component, field_path))

    def events(self, namespace: str | None = None, involved_name: str | None = None) -> list[dict]:
        """Copies of the stored events, oldest first."""
        with self._lock:
            found = [e for (ns, _), e in self._store["events"].items() if namespace in (None, ns)
                     and involved_name in (None, e["involvedObject"]["name"])]
            return copy.deepcopy(sorted(found, key=lambda e: int(e["metadata"]["resourceVersion"])))

    def pod_logs(self, namespace: str, name: str, container: str | None = None) -> list[str]:
        """The log lines of a pod's container so far (first container by default)."""
        with self._lock:
            pod = self._store["pods"].get((namespace, name))
            if pod is None:
                return []
            container = container or pod["spec"]["containers"][0]["name"]
            log = self._logs.get((pod["metadata"]["uid"], container))
            return [line for _, line in log.lines] if log else []

    def wait_until(self, predicate: Callable[[], Any], timeout: float = 5.0, what: str = "the condition") -> Any:
        """Poll ``predicate`` until it returns something truthy (returned); AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"FakeKubeAPI: timed out after {timeout} s waiting for {what}")
            with self._lock:
                self._changed.wait(0.02)

    def wait_for_pod(
        self, namespace: str, name: str, phases: Iterable[str] = ("Succeeded", "Failed"), timeout: float = 5.0
    ) -> dict:
        """Wait until a pod is in one of ``phases``; returns a copy of it."""
        wanted = set(phases)

        def ready() -> dict | None:
            pod = self.read("pods", namespace, name)
            return pod if pod and pod.get("status", {}).get("phase") in wanted else None

        return self.wait_until(ready, timeout, f"pod {namespace}/{name} in {sorted(wanted)}")

    # -- HTTP -----------------------------------------------------------------------------
    def _handle_http(self, method: str, target: str, headers: Mapping[str, str], raw: bytes) -> Any:
        parts = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        body: Any = None
        bad_json = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body, bad_json = raw.decode(errors="replace"), True
        rule = None
        with self._lock:
            self.requests.append(Recorded(method, parts.path, parts.query, copy.deepcopy(body), dict(headers)))
            hook = self._take(self._before, method, parts.path)
            if hook is not None:
                hook.action[0](self)
            rule = self._take(self._rules, method, parts.path)
        if rule is not None:
            if rule.action[0] == "drop":
                return _DROP
            _, code, message, retry_after, reason = rule.action
            extra = {} if retry_after is None else {"Retry-After": str(retry_after)}
            details = self._path_details(parts.path)
            return _Reply(code, status_object(code, message, reason=reason, details=details, retry_after=retry_after),
                          extra)
        if bad_json:
            return _Reply(400, status_object(400, "the request body is not valid JSON"))
        try:
            with self._lock:
                answer = self._route(method, parts.path, query, body, content_type)
                self._drain()
            return answer
        except ApiError as error:
            return _Reply(error.code, error.body, error.headers)
        except Exception as error:  # noqa: BLE001 - a bug of the fake: say so loudly
            self.errors.append(traceback.format_exc())
            return _Reply(500, status_object(500, f"FAKE API server error: {error!r}"))

    @staticmethod
    def _take(rules: list[_Rule], method: str, path: str) -> _Rule | None:
        for i, rule in enumerate(rules):
            if rule.matches(method, path):
                if rule.skip > 0:
                    rule.skip -= 1
                    return None
                del rules[i]
                return rule
        return None

    @staticmethod
    def _path_details(path: str) -> dict[str, str]:
        m = _CORE.match(path) or _GROUP.match(path)
        if not m:
            return {}
        found = m.groupdict()
        return {k: v for k, v in (("name", found.get("name")), ("group", found.get("group")),
                                  ("kind", found.get("plural"))) if v}

    def _route(self, method: str, path: str, query: dict[str, str], body: Any, content_type: str) -> Any:
        if method == "GET":
            discovery = self._discovery(path)
            if discovery is not None:
                return discovery
        m = _CORE.match(path)
        if m and (path.startswith("/api/v1/")):
            found = m.groupdict()
            rt = RESOURCES.get(found["plural"])
            if found["plural"] == "namespaces" and method == "GET" and found["ns"] is None:
                return self._namespaces(found["name"])
            if rt is None or rt.group:
                raise ApiError(404, copy.deepcopy(NOT_FOUND_BODY))
        else:
            m = _GROUP.match(path)
            if not m:
                raise ApiError(404, copy.deepcopy(NOT_FOUND_BODY))
            found = m.groupdict()
            rt = RESOURCES.get(found["plural"])
            if (rt is None or (rt.group, rt.version) != (found["group"], found["version"])
                    or (rt.crd and rt.plural not in self._crds)):
                raise ApiError(404, copy.deepcopy(NOT_FOUND_BODY))
        namespace, name, sub = found["ns"], found["name"], found["sub"]
        if name is None:
            if method == "GET":
                if _flag(query, "watch"):
                    return _Stream(200, self._watch(rt, namespace, query), "application/json")
                return _Reply(200, self._list(rt, namespace, query))
            if method == "POST" and namespace:
                obj = self._create(rt, namespace, body)
                return _Reply(201, copy.deepcopy(obj))
            if method == "DELETE" and namespace:
                return _Reply(200, self._delete_collection(rt, namespace, query))
            raise self._not_allowed()
        if namespace is None:
            raise ApiError(404, copy.deepcopy(NOT_FOUND_BODY))
        if sub == "log" and rt is POD and method == "GET":
            return self._pod_log(namespace, name, query)
        if sub not in (None, "status") or (sub == "status" and rt.plural not in _WITH_STATUS):
            raise ApiError(404, copy.deepcopy(NOT_FOUND_BODY))
        if method == "GET":
            return _Reply(200, self._get(rt, namespace, name))
        if method == "PUT":
            return _Reply(200, self._replace(rt, namespace, name, body, sub))
        if method == "PATCH":
            return _Reply(200, self._patch(rt, namespace, name, body, content_type, sub))
        if method == "DELETE" and sub is None:
            options = dict(body) if isinstance(body, Mapping) else {}
            for key in ("propagationPolicy", "gracePeriodSeconds", "orphanDependents"):
                if key in query:
                    options[key] = query[key]
            return self._delete(rt, namespace, name, options)
        raise self._not_allowed()

    @staticmethod
    def _not_allowed() -> ApiError:
        return ApiError(405, status_object(405, "the server does not allow this method on the requested resource",
                                           reason="MethodNotAllowed"))

    # -- discovery ------------------------------------------------------------------------
    def _served(self) -> list[ResourceType]:
        return [rt for rt in RESOURCES.values() if not rt.crd or rt.plural in self._crds]

    def _discovery(self, path: str) -> _Reply | None:
        path = path.rstrip("/") or "/"
        served = self._served()
        if path == "/version":
            return _Reply(200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "gitCommit": "0" * 40,
                                "gitTreeState": "clean", "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24.2",
                                "compiler": "gc", "platform": "linux/amd64"})
        if path == "/api":
            return _Reply(200, {"kind": "APIVersions", "versions": ["v1"],
                                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "fake"}]})
        groups = sorted({(rt.group, rt.version) for rt in served if rt.group})
        if path == "/apis":
            return _Reply(200, {"kind": "APIGroupList", "apiVersion": "v1",
                                "groups": [self._group(g, v) for g, v in groups]})
        if path == "/api/v1":
            return _Reply(200, self._resource_list("v1", [rt for rt in served if not rt.group]))
        m = re.fullmatch(r"/apis/([^/]+)(?:/([^/]+))?", path)
        if not m:
            return None
        group, version = m.groups()
        known = [(g, v) for g, v in groups if g == group and version in (None, v)]
        if not known:
            raise ApiError(404, copy.deepcopy(NOT_FOUND_BODY))
        if version is None:
            return _Reply(200, {"kind": "APIGroup", "apiVersion": "v1", **self._group(*known[0])})
        return _Reply(200, self._resource_list(f"{group}/{version}", [
            rt for rt in served if (rt.group, rt.version) == (group, version)]))

    @staticmethod
    def _group(group: str, version: str) -> dict:
        gv = {"groupVersion": f"{group}/{version}", "version": version}
        return {"name": group, "versions": [gv], "preferredVersion": gv}

    @staticmethod
    def _resource_list(group_version: str, types: list[ResourceType]) -> dict:
        verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
        resources: list[dict] = []
        for rt in types:
            resources.append({"name": rt.plural, "singularName": rt.singular, "namespaced": True, "kind": rt.kind,
                              "verbs": verbs, **({"shortNames": list(rt.short_names)} if rt.short_names else {})})
            if rt.plural in _WITH_STATUS:
                resources.append({"name": f"{rt.plural}/status", "singularName": "", "namespaced": True,
                                  "kind": rt.kind, "verbs": ["get", "patch", "update"]})
            if rt is POD:
                resources.append({"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod",
                                  "verbs": ["get"]})
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}

    def _namespaces(self, name: str | None) -> _Reply:
        def namespace(n: str) -> dict:
            return {"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": n, "uid": f"00000000-0000-0000-0001-{_hex(n, 12)}",
                                 "labels": {"kubernetes.io/metadata.name": n}},
                    "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}

        if name:
            return _Reply(200, namespace(name))
        names = {"default", "kube-system"} | {ns for store in self._store.values() for ns, _ in store}
        return _Reply(200, {"kind": "NamespaceList", "apiVersion": "v1",
                            "metadata": {"resourceVersion": str(self._version)},
                            "items": [namespace(n) for n in sorted(names)]})

    # -- verbs ----------------------------------------------------------------------------
    def _type_of(self, manifest: Mapping[str, Any]) -> ResourceType:
        for rt in RESOURCES.values():
            if (rt.api_version, rt.kind) == (manifest.get("apiVersion"), manifest.get("kind")):
                if rt.crd and rt.plural not in self._crds:
                    raise ValueError(f"the CRD of {rt.qualified} is not installed in this fake")
                return rt
        raise ValueError(f"the fake does not serve {manifest.get('apiVersion')}/{manifest.get('kind')}")

    def _list(self, rt: ResourceType, namespace: str | None, query: Mapping[str, str]) -> dict:
        labels, fields = label_matcher(query.get("labelSelector")), field_matcher(query.get("fieldSelector"))
        items = []
        for (ns, _), obj in sorted(self._store[rt.plural].items()):
            if namespace not in (None, ns) or not labels(obj["metadata"].get("labels") or {}) or not fields(obj):
                continue
            item = copy.deepcopy(obj)
            if not rt.crd:  # built-in lists carry no kind/apiVersion per item
                item.pop("apiVersion", None)
                item.pop("kind", None)
            items.append(item)
        return {"apiVersion": rt.api_version, "kind": f"{rt.kind}List",
                "metadata": {"resourceVersion": str(self._version)}, "items": items}

    def _get(self, rt: ResourceType, namespace: str, name: str) -> dict:
        obj = self._store[rt.plural].get((namespace, name))
        if obj is None:
            raise not_found(rt, name)
        if rt is SELDON:
            self._reconcile_seldon((namespace, name), obj)
        return copy.deepcopy(obj)

    def _create(self, rt: ResourceType, namespace: str, body: Any) -> dict:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        metadata = dict(body.get("metadata") or {})
        if metadata.get("resourceVersion"):
            raise bad_request("resourceVersion should not be set on objects to be created")
        for key in ("uid", "creationTimestamp", "generation", "deletionTimestamp", "deletionGracePeriodSeconds"):
            metadata.pop(key, None)
        name = metadata.get("name")
        if not name and metadata.get("generateName"):
            name = metadata["generateName"] + _rand()
            while (namespace, name) in self._store[rt.plural]:
                name = metadata["generateName"] + _rand()
        if not name:
            raise invalid(rt, "", [("metadata.name", "FieldValueRequired",
                                    "Required value: name or generateName is required")])
        if len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
            raise invalid(rt, name, [("metadata.name", "FieldValueInvalid", _invalid_name(name))])
        if metadata.get("namespace", namespace) != namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        if (namespace, name) in self._store[rt.plural]:
            raise already_exists(rt, name)
        metadata.update(name=name, namespace=namespace)
        obj = {"apiVersion": rt.api_version, "kind": rt.kind, "metadata": metadata,
               **{k: copy.deepcopy(v) for k, v in body.items() if k not in ("apiVersion", "kind", "metadata")}}
        obj.pop("status", None)
        self._validate(rt, obj)
        self._default(rt, obj)
        return self._insert(rt, obj)

    def _validate(self, rt: ResourceType, obj: dict) -> None:
        name, causes = obj["metadata"]["name"], []
        if rt is POD:
            causes = _pod_spec_errors(obj.get("spec") or {}, "spec")
        elif rt is JOB:
            template = (obj.get("spec") or {}).get("template")
            if not template:
                causes = [("spec.template", "FieldValueRequired", "Required value")]
            else:
                causes = _pod_spec_errors(template.get("spec") or {}, "spec.template.spec")
                policy = (template.get("spec") or {}).get("restartPolicy")
                if policy is None:
                    causes.append(("spec.template.spec.restartPolicy", "FieldValueRequired",
                                   'Required value: valid values: "OnFailure", "Never"'))
                elif policy not in ("OnFailure", "Never"):
                    causes.append(("spec.template.spec.restartPolicy", "FieldValueNotSupported",
                                   f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"'))
        elif rt is MPIJOB and not (obj.get("spec") or {}).get("mpiReplicaSpecs"):
            causes = [("spec.mpiReplicaSpecs", "FieldValueRequired", "Required value")]
        elif rt is TRAINJOB:
            ref = (obj.get("spec") or {}).get("runtimeRef")
            if not isinstance(ref, Mapping):
                causes = [("spec.runtimeRef", "FieldValueRequired", "Required value")]
            elif not ref.get("name"):
                causes = [("spec.runtimeRef.name", "FieldValueRequired", "Required value")]
            else:
                self._trainjob_webhook(obj)
        if causes:
            raise invalid(rt, name, causes)

    def _trainjob_webhook(self, obj: dict) -> None:
        """Trainer v2's validating webhook, as far as the fake goes: the TrainJob's runtime must exist."""
        ref, namespace = obj["spec"]["runtimeRef"], obj["metadata"]["namespace"]
        kind = ref.get("kind") or "ClusterTrainingRuntime"
        if kind == "TrainingRuntime":
            if TRAININGRUNTIME.plural in self._crds and (namespace, ref["name"]) in self._store[TRAININGRUNTIME.plural]:
                return
            missing = f'{TRAININGRUNTIME.qualified} "{ref["name"]}" not found'
        else:
            missing = (f'clustertrainingruntimes.trainer.kubeflow.org "{ref["name"]}" not found (the FAKE API server '
                       "serves no ClusterTrainingRuntimes)")
        error = invalid(TRAINJOB, obj["metadata"]["name"], [("spec.runtimeRef", "FieldValueInvalid", (
            f"Invalid value: {json.dumps(ref, sort_keys=True)}: {missing}: specified trainingRuntime must be created "
            "before the TrainJob is created"))])
        error.body["message"] = ('admission webhook "validator.trainjob.trainer.kubeflow.org" denied the request: '
                                 + error.body["message"])
        raise error

    def _default(self, rt: ResourceType, obj: dict) -> None:
        if rt is POD:
            _default_pod_spec(obj.setdefault("spec", {}))
            obj["status"] = {"phase": "Pending", "qosClass": _qos_class(obj["spec"])}
        elif rt is JOB:
            spec = obj.setdefault("spec", {})
            for key, value in (("parallelism", 1), ("completions", 1), ("backoffLimit", 6),
                               ("completionMode", "NonIndexed"), ("suspend", False),
                               ("podReplacementPolicy", "TerminatingOrFailed"), ("manualSelector", None)):
                if value is not None:
                    spec.setdefault(key, value)
            uid = obj["metadata"].setdefault("uid", self._new_uid())
            name = obj["metadata"]["name"]
            job_labels = {JOB_UID_LABEL: uid, JOB_NAME_LABEL: name, "controller-uid": uid, "job-name": name}
            spec.setdefault("selector", {"matchLabels": {JOB_UID_LABEL: uid}})
            template = spec["template"]
            template.setdefault("metadata", {}).setdefault("labels", {}).update(job_labels)
            _default_pod_spec(template.setdefault("spec", {}))
            if not obj["metadata"].get("labels"):
                obj["metadata"]["labels"] = dict(template["metadata"]["labels"])
            obj["status"] = {}
        elif rt is MPIJOB:
            # CRD structural defaults (+kubebuilder:default markers of v2beta1 MPIJobSpec)
            spec = obj.setdefault("spec", {})
            spec.setdefault("slotsPerWorker", 1)
            spec.setdefault("sshAuthMountPath", "/root/.ssh")
            spec.setdefault("mpiImplementation", "OpenMPI")
            spec.setdefault("launcherCreationPolicy", "AtStartup")
            if isinstance(spec.get("runPolicy"), dict):
                spec["runPolicy"].setdefault("suspend", False)
        elif rt is TRAINJOB:
            # CRD structural defaults of trainer.kubeflow.org/v1alpha1 TrainJobSpec
            spec = obj.setdefault("spec", {})
            spec.setdefault("managedBy", "trainer.kubeflow.org/trainjob-controller")
            spec.setdefault("suspend", False)
            spec["runtimeRef"].setdefault("apiGroup", "trainer.kubeflow.org")
            spec["runtimeRef"].setdefault("kind", "ClusterTrainingRuntime")
        elif rt is TRAININGRUNTIME:
            spec = obj.setdefault("spec", {})
            mpi = (spec.get("mlPolicy") or {}).get("mpi")
            if isinstance(mpi, dict):
                for key, value in (("mpiImplementation", "OpenMPI"), ("numProcPerNode", 1),
                                   ("runLauncherAsNode", False), ("sshAuthMountPath", "/root/.ssh")):
                    mpi.setdefault(key, value)
            for job in ((spec.get("template") or {}).get("spec") or {}).get("replicatedJobs") or []:
                job.setdefault("replicas", 1)
                job.setdefault("groupName", "default")

    def _replace(self, rt: ResourceType, namespace: str, name: str, body: Any, sub: str | None) -> dict:
        obj = self._store[rt.plural].get((namespace, name))
        if obj is None:
            raise not_found(rt, name)
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        metadata = body.get("metadata") or {}
        if metadata.get("name") != name:
            raise bad_request(f"the name of the object ({metadata.get('name')}) does not match the name on the URL "
                              f"({name})")
        if metadata.get("namespace", namespace) != namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        version = metadata.get("resourceVersion")
        if not version and rt.crd:
            raise invalid(rt, name, [("metadata.resourceVersion", "FieldValueInvalid",
                                      "Invalid value: 0x0: must be specified for an update")])
        if version and version != obj["metadata"]["resourceVersion"]:
            raise conflict(rt, name)
        self._update(rt, obj, body, sub)
        return copy.deepcopy(obj)

    def _patch(self, rt: ResourceType, namespace: str, name: str, body: Any, content_type: str,
               sub: str | None) -> dict:
        obj = self._store[rt.plural].get((namespace, name))
        if obj is None:
            raise not_found(rt, name)
        accepted = ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"]
        if not rt.crd:
            accepted.insert(2, "application/strategic-merge-patch+json")
        if content_type not in accepted or content_type == "application/apply-patch+yaml":
            message = ("the body of the request was in an unknown format - accepted media types include: "
                       + ", ".join(accepted))
            if content_type == "application/apply-patch+yaml":
                message = "server-side apply is not implemented by this FAKE API server"
            raise ApiError(415, status_object(415, message))
        try:
            if content_type == "application/json-patch+json":
                if not isinstance(body, list):  # what kubernetes_asyncio sends for a dict: the real 400
                    raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
                patched = json_patch(obj, body)
            elif content_type == "application/merge-patch+json":
                patched = merge_patch(obj, body)
            else:
                patched = strategic_merge_patch(obj, body)
        except ValueError as error:
            raise invalid(rt, name, [("", "FieldValueInvalid", str(error))]) from error
        if not isinstance(patched, dict) or (patched.get("metadata") or {}).get("name") != name:
            raise bad_request("the name of the object does not match the name on the URL")
        if patched["metadata"].get("resourceVersion") not in (None, obj["metadata"]["resourceVersion"]):
            raise conflict(rt, name)
        self._update(rt, obj, patched, sub)
        return copy.deepcopy(obj)

    def _update(self, rt: ResourceType, obj: dict, new: dict, sub: str | None) -> None:
        """Apply a replace/patch: the status subresource only changes ``.status``; the main resource never does."""
        name = obj["metadata"]["name"]
        if sub == "status":
            if new.get("status") != obj.get("status"):
                obj["status"] = copy.deepcopy(new.get("status"))
            self._touch(rt, obj, spec_changed=False)
            return
        content = {k: copy.deepcopy(v) for k, v in new.items() if k not in ("metadata", "status", "apiVersion", "kind")}
        old = {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}
        if rt is POD and _without_images(content.get("spec")) != _without_images(old.get("spec")):
            raise invalid(rt, name, [("spec", "FieldValueForbidden", _POD_UPDATE_FORBIDDEN)])
        if rt is JOB:
            for key in ("template", "selector"):
                if (content.get("spec") or {}).get(key) != (old.get("spec") or {}).get(key):
                    raise invalid(rt, name, [(f"spec.{key}", "FieldValueInvalid", "Invalid value: field is immutable")])
        server_owned = {k: obj["metadata"][k] for k in ("name", "namespace", "uid", "creationTimestamp", "generation",
                                                        "resourceVersion", "deletionTimestamp",
                                                        "deletionGracePeriodSeconds") if k in obj["metadata"]}
        status = obj.get("status")
        spec_changed = content != old
        obj.clear()
        obj.update(apiVersion=rt.api_version, kind=rt.kind,
                   metadata={**copy.deepcopy(new.get("metadata") or {}), **server_owned}, **content)
        if status is not None:
            obj["status"] = status
        self._touch(rt, obj, spec_changed=spec_changed)

    def _delete(self, rt: ResourceType, namespace: str, name: str, options: Mapping[str, Any]) -> _Reply:
        obj = self._store[rt.plural].get((namespace, name))
        if obj is None:
            raise not_found(rt, name)
        pre = options.get("preconditions") or {}
        for key in ("uid", "resourceVersion"):
            if pre.get(key) and pre[key] != obj["metadata"].get(key):
                label = "UID" if key == "uid" else "ResourceVersion"
                raise ApiError(409, status_object(
                    409, f"Precondition failed: {label} in precondition: {pre[key]}, {label} in object meta: "
                         f"{obj['metadata'].get(key)}", reason="Conflict", details=_details(rt, name)))
        policy = options.get("propagationPolicy")
        if policy is None and str(options.get("orphanDependents")).lower() in ("true", "1", "t"):
            policy = "Orphan"
        headers: dict[str, str] = {}
        if policy is None:
            policy = "Orphan" if rt is JOB else "Background"  # batch/v1 Jobs orphan their pods by default
            if rt is JOB:
                headers["Warning"] = ('299 - "child pods are preserved by default when jobs are deleted; set '
                                      'propagationPolicy=Background to remove them or set propagationPolicy=Orphan '
                                      'to suppress this warning"')
        if policy not in ("Orphan", "Background", "Foreground"):
            unsupported = f'Unsupported value: "{policy}": supported values: "Foreground", "Background", "Orphan"'
            raise invalid(rt, name, [("propagationPolicy", "FieldValueNotSupported", unsupported)])
        if rt is POD:
            grace = options.get("gracePeriodSeconds")
            grace = int(grace) if grace is not None else int(obj["spec"].get("terminationGracePeriodSeconds", 30))
            answer = self._terminate_pod(obj, grace)
            if self.pod_deletion_delay <= 0:
                self._remove(rt, namespace, name, policy)
            else:
                uid = obj["metadata"]["uid"]
                timer = threading.Timer(self.pod_deletion_delay, self._remove_later, (rt, namespace, name, uid, policy))
                timer.daemon = True
                timer.start()
            return _Reply(200, answer, headers)
        if policy in ("Orphan", "Foreground"):
            answer = copy.deepcopy(obj)
            answer["metadata"].update(deletionTimestamp=_now(), deletionGracePeriodSeconds=0,
                                      finalizers=[*(obj["metadata"].get("finalizers") or []),
                                                  "orphan" if policy == "Orphan" else "foregroundDeletion"])
            self._remove(rt, namespace, name, policy)
            return _Reply(200, answer, headers)
        uid = obj["metadata"]["uid"]
        self._remove(rt, namespace, name, policy)
        return _Reply(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                            "details": {**_details(rt, name), "uid": uid}}, headers)

    def _delete_collection(self, rt: ResourceType, namespace: str, query: Mapping[str, str]) -> dict:
        listed = self._list(rt, namespace, query)
        for item in listed["items"]:
            self._delete(rt, namespace, item["metadata"]["name"], {})
        return listed

    # -- store internals ------------------------------------------------------------------
    def _new_uid(self) -> str:
        self._uid += 1
        return f"00000000-0000-0000-0000-{self._uid:012d}"

    def _insert(self, rt: ResourceType, obj: dict) -> dict:
        metadata = obj["metadata"]
        metadata.setdefault("uid", self._new_uid())
        metadata.update(generation=1, creationTimestamp=_now())
        for key in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            metadata.pop(key, None)
        self._version += 1
        metadata["resourceVersion"] = str(self._version)
        key = (metadata["namespace"], metadata["name"])
        self._store[rt.plural][key] = obj
        if rt is SELDON:
            self._polls[key] = 0
        self._record("ADDED", rt, obj)
        if rt is POD:
            self._start_kubelet(obj)
        self._enqueue_for(rt, obj)
        return obj

    def _touch(self, rt: ResourceType, obj: dict, *, spec_changed: bool) -> None:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        if spec_changed:
            obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
            if rt is SELDON:
                self._polls[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = 0
        self._record("MODIFIED", rt, obj)
        self._enqueue_for(rt, obj)

    def _remove(self, rt: ResourceType, namespace: str, name: str, policy: str = "Background") -> None:
        obj = self._store[rt.plural].pop((namespace, name), None)
        if obj is None:
            return
        self._polls.pop((namespace, name), None)
        uid = obj["metadata"]["uid"]
        if rt is POD:
            run = self._runs.pop(uid, None)
            if run is not None:
                run.stop()
            for key in [k for k in self._logs if k[0] == uid]:
                self._logs[key].closed = True
                del self._logs[key]
        self._version += 1
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = str(self._version)
        self._record("DELETED", rt, gone, copy_obj=False)
        self._collect_garbage(uid, policy)
        self._enqueue_for(rt, obj)

    def _remove_later(self, rt: ResourceType, namespace: str, name: str, uid: str, policy: str) -> None:
        with self._lock:
            obj = self._store[rt.plural].get((namespace, name))
            if obj is not None and obj["metadata"]["uid"] == uid:
                self._remove(rt, namespace, name, policy)
                self._drain()

    def _collect_garbage(self, owner_uid: str, policy: str) -> None:
        """The garbage collector: dependents of a deleted owner go (Background/Foreground) or lose the reference."""
        for plural, store in self._store.items():
            for key, dependent in list(store.items()):
                refs = dependent["metadata"].get("ownerReferences") or []
                if not any(r.get("uid") == owner_uid for r in refs):
                    continue
                others = [r for r in refs if r.get("uid") != owner_uid]
                if policy == "Orphan" or any(self._exists(r.get("uid")) for r in others):
                    dependent["metadata"]["ownerReferences"] = others
                    if not others:
                        del dependent["metadata"]["ownerReferences"]
                    self._touch(RESOURCES[plural], dependent, spec_changed=False)
                elif RESOURCES[plural] is POD:
                    self._terminate_pod(dependent, int(dependent["spec"].get("terminationGracePeriodSeconds", 30)))
                    self._remove(POD, *key)
                else:
                    self._remove(RESOURCES[plural], *key, "Background")

    def _exists(self, uid: str | None) -> bool:
        return any(o["metadata"]["uid"] == uid for store in self._store.values() for o in store.values())

    def _record(self, kind: str, rt: ResourceType, obj: dict, *, copy_obj: bool = True) -> None:
        self._history.append((int(obj["metadata"]["resourceVersion"]), kind, rt.plural,
                              copy.deepcopy(obj) if copy_obj else obj))
        if len(self._history) > 20000:
            del self._history[:5000]
        self._changed.notify_all()

    def _event(self, involved: Mapping[str, Any], reason: str, message: str, type_: str, component: str,
               field_path: str | None = None) -> dict:
        meta = involved["metadata"]
        now = _now()
        reference = {"kind": involved.get("kind"), "namespace": meta.get("namespace"), "name": meta["name"],
                     "uid": meta.get("uid"), "apiVersion": involved.get("apiVersion"),
                     "resourceVersion": meta.get("resourceVersion")}
        if field_path:
            reference["fieldPath"] = field_path
        host = self.node_name if component == "kubelet" else None
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": self._event_name(meta), "namespace": meta.get("namespace") or "default"},
            "involvedObject": reference, "reason": reason, "message": message,
            "source": {"component": component, **({"host": host} if host else {})},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1, "type": type_, "eventTime": None,
            "reportingComponent": component, "reportingInstance": host or "",
        }
        return self._insert(EVENT, event)

    def _event_name(self, meta: Mapping[str, Any]) -> str:
        """``<object>.<hex of the time in ns>`` as the event recorder names events (they sort by time)."""
        stamp = time.time_ns()
        while (meta.get("namespace") or "default", f"{meta['name']}.{stamp:x}") in self._store["events"]:
            stamp += 1
        return f"{meta['name']}.{stamp:x}"

    # -- watch ----------------------------------------------------------------------------
    def _watch(self, rt: ResourceType, namespace: str | None, query: Mapping[str, str]) -> Iterator[bytes]:
        labels, fields = label_matcher(query.get("labelSelector")), field_matcher(query.get("fieldSelector"))
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or 1800)

        def wanted(obj: dict) -> bool:
            return (namespace in (None, obj["metadata"].get("namespace"))
                    and labels(obj["metadata"].get("labels") or {}) and fields(obj))

        def line(kind: str, obj: dict) -> bytes:
            return json.dumps({"type": kind, "object": obj}).encode() + b"\n"

        with self._lock:
            start = query.get("resourceVersion")
            if not start or start == "0":
                initial = [line("ADDED", copy.deepcopy(o)) for _, o in sorted(self._store[rt.plural].items())
                           if wanted(o)]
                last = self._version
            else:
                initial, last = [], int(start)
        if initial:
            yield b"".join(initial)
        while not self._stopping.is_set() and time.monotonic() < deadline:
            with self._lock:
                new = [(v, k, o) for v, k, p, o in self._history if v > last and p == rt.plural]
                if not new:
                    self._changed.wait(0.1)
                    new = [(v, k, o) for v, k, p, o in self._history if v > last and p == rt.plural]
                if new:
                    last = new[-1][0]
                chunk = b"".join(line(k, copy.deepcopy(o)) for _, k, o in new if wanted(o))
            yield chunk

    # -- pod logs -------------------------------------------------------------------------
    def _pod_log(self, namespace: str, name: str, query: Mapping[str, str]) -> Any:
        pod = self._store["pods"].get((namespace, name))
        if pod is None:
            raise not_found(POD, name)
        names = [c["name"] for c in pod["spec"]["containers"]]
        container = query.get("container")
        if not container:
            if len(names) > 1:
                raise bad_request(f"a container name must be specified for pod {name}, choose one of: "
                                  f"[{' '.join(names)}]")
            container = names[0]
        elif container not in names + [c["name"] for c in pod["spec"].get("initContainers") or []]:
            raise bad_request(f"container {container} is not valid for pod {name}")
        if _flag(query, "previous"):
            raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
        if not pod["spec"].get("nodeName"):
            return _Reply(200, b"", content_type="text/plain")  # not scheduled: nothing to proxy to
        statuses = [*(pod.get("status", {}).get("containerStatuses") or []),
                    *(pod.get("status", {}).get("initContainerStatuses") or [])]
        status = next((s for s in statuses if s["name"] == container), None)
        waiting = (status or {}).get("state", {}).get("waiting") if status else {"reason": "ContainerCreating"}
        if waiting is not None:
            reason = waiting.get("reason") or "ContainerCreating"
            detail = {"ErrImagePull": "image can't be pulled",
                      "ImagePullBackOff": "trying and failing to pull image"}.get(reason, reason)
            raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: {detail}')
        log = self._logs.get((pod["metadata"]["uid"], container)) or _ContainerLog()
        follow = _flag(query, "follow")
        stream = self._log_lines(pod["metadata"]["uid"], log, query, follow)
        if not follow:
            return _Reply(200, b"".join(stream), content_type="text/plain")
        return _Stream(200, stream, "text/plain")

    def _log_lines(self, uid: str, log: _ContainerLog, query: Mapping[str, str], follow: bool) -> Iterator[bytes]:
        stamps = _flag(query, "timestamps")
        since = None
        if query.get("sinceSeconds"):
            since = time.time_ns() - int(query["sinceSeconds"]) * 1_000_000_000
        elif query.get("sinceTime"):
            since = int(_parse_time(query["sinceTime"]) * 1_000_000_000)
        budget = int(query["limitBytes"]) if query.get("limitBytes") else None

        def render(lines: list[tuple[int, str]]) -> bytes:
            nonlocal budget
            data = b"".join(((_rfc3339_nano(t) + " " if stamps else "") + text + "\n").encode() for t, text in lines)
            if budget is not None:
                data, budget = data[:budget], max(0, budget - len(data))
            return data

        with self._lock:
            lines = [entry for entry in log.lines if since is None or entry[0] >= since]
            if query.get("tailLines"):
                tail = int(query["tailLines"])
                lines = lines[-tail:] if tail > 0 else []
            seen = len(log.lines)
        yield render(lines)
        while follow and not self._stopping.is_set() and budget != 0:
            with self._lock:
                if len(log.lines) == seen and not log.closed:
                    self._changed.wait(0.1)
                new, seen, done = log.lines[seen:], len(log.lines), log.closed
            yield render(new)
            if done:
                return

    # -- the kubelet ----------------------------------------------------------------------
    def _start_kubelet(self, pod: dict) -> None:
        state = _PodRunState(pod["metadata"]["uid"])
        for container in pod["spec"]["containers"]:
            self._logs[(state.uid, container["name"])] = _ContainerLog()
        self._runs[state.uid] = state
        kubelet = self.kubelet
        state.thread = threading.Thread(target=self._kubelet_main, args=(kubelet, state, copy.deepcopy(pod)),
                                        name=f"fake-kubelet-{pod['metadata']['name']}", daemon=True)
        state.thread.start()

    def _kubelet_main(self, kubelet: Kubelet, state: _PodRunState, pod: dict) -> None:
        try:
            self._kubelet_run(kubelet, state, pod)
        except Exception:  # noqa: BLE001 - recorded, the test fails on it
            self.errors.append(traceback.format_exc())

    def _pod_update(self, state: _PodRunState, pod_key: tuple[str, str], change: Callable[[dict], None]) -> bool:
        """Change a pod's status as the kubelet (False when the pod is gone or stopped)."""
        with self._lock:
            pod = self._store["pods"].get(pod_key)
            if pod is None or pod["metadata"]["uid"] != state.uid or self._stopping.is_set() or state.stopped.is_set():
                return False
            change(pod)
            self._touch(POD, pod, spec_changed=False)
            self._drain()
            return True

    def _kubelet_run(self, kubelet: Kubelet, state: _PodRunState, pod: dict) -> None:
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        containers = pod["spec"]["containers"]
        main = containers[0]["name"]
        try:
            run = kubelet(copy.deepcopy(pod))
        except Exception as error:  # noqa: BLE001 - a broken kubelet callback: the container cannot start
            self.errors.append(traceback.format_exc())
            run = PodRun(start=_fail_start(f"FAKE kubelet raised {error!r}"))
        if run is None:
            run = PodRun(run_until_deleted=True) if _is_mpi_worker(pod) else PodRun()
        state.run = run
        if state.stopped.is_set() and run.stop:
            run.stop()
        now = _now()
        if run.unschedulable:
            message = run.unschedulable if isinstance(run.unschedulable, str) else (
                "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption "
                "victims found for incoming pod.")
            self._pod_update(state, key, lambda p: p["status"].update(conditions=[
                _condition("PodScheduled", "False", now, "Unschedulable", message)]))
            with self._lock:
                if key in self._store["pods"]:
                    self._event(self._store["pods"][key], "FailedScheduling", message, "Warning", "default-scheduler")
            return
        with self._lock:
            self._ips += 1
            pod_ip = f"10.244.0.{self._ips % 250 + 2}"

        def scheduled(p: dict) -> None:
            p["spec"]["nodeName"] = self.node_name
            p["status"].update(
                conditions=_pod_conditions(now, ready_to_start="False", initialized="True", ready=False,
                                           names=[c["name"] for c in containers]),
                hostIP="172.18.0.2", hostIPs=[{"ip": "172.18.0.2"}], startTime=now,
                containerStatuses=[_container_status(c, {"waiting": {"reason": "ContainerCreating"}})
                                   for c in containers])
            if p["spec"].get("initContainers"):
                p["status"]["initContainerStatuses"] = [
                    _container_status(c, {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now,
                                                         "finishedAt": now}}, pod_uid=state.uid)
                    for c in p["spec"]["initContainers"]]

        if not self._pod_update(state, key, scheduled):
            return
        with self._lock:
            current = self._store["pods"].get(key)
            if current is None:
                return
            self._event(current, "Scheduled", f"Successfully assigned {key[0]}/{key[1]} to {self.node_name}",
                        "Normal", "default-scheduler")
            for c in containers:
                self._event(current, "Pulled", f'Container image "{c["image"]}" already present on machine',
                            "Normal", "kubelet", f"spec.containers{{{c['name']}}}")
        if run.pending_reason:
            self._stuck_pending(state, key, pod, run)
            return
        if run.start_delay and state.stopped.wait(run.start_delay):
            return
        if state.stopped.is_set():
            return
        try:
            if run.start is not None:
                run.start()
        except ContainerStartError as error:
            self._finish(state, key, containers, main, 128, "StartError", str(error), run, started=False)
            return
        if state.stopped.is_set():  # deleted while starting: stop what just started
            if run.stop is not None:
                run.stop()
            return
        started = _now()

        def running(p: dict) -> None:
            p["status"].update(
                phase="Running", podIP=pod_ip, podIPs=[{"ip": pod_ip}],
                conditions=_pod_conditions(started, ready_to_start="True", initialized="True", ready=True,
                                           names=[]),
                containerStatuses=[_container_status(c, {"running": {"startedAt": started}}, ready=True,
                                                     started=True, pod_uid=state.uid) for c in containers])

        if not self._pod_update(state, key, running):
            return
        deadline = pod["spec"].get("activeDeadlineSeconds")
        if deadline:  # counted from the pod's start, as the kubelet's activeDeadlineHandler does
            timer = threading.Timer(max(0.0, deadline - (time.time() - _parse_time(now))), state.expire)
            timer.daemon = True
            timer.start()
        with self._lock:
            current = self._store["pods"].get(key)
            for c in containers:
                if current is not None:
                    self._event(current, "Created", f"Created container: {c['name']}", "Normal", "kubelet",
                                f"spec.containers{{{c['name']}}}")
                    self._event(current, "Started", f"Started container {c['name']}", "Normal", "kubelet",
                                f"spec.containers{{{c['name']}}}")
        log = self._logs.get((state.uid, main))
        logs = run.logs() if callable(run.logs) else run.logs
        first = True
        for item in logs:
            if state.stopped.is_set():
                return
            if state.expired.is_set():
                break
            if not first and run.interval and state.stopped.wait(run.interval):
                return
            first = False
            text = item.decode(errors="replace") if isinstance(item, bytes) else str(item)
            with self._lock:
                if log is None or self._stopping.is_set():
                    return
                for part in text.rstrip("\n").split("\n") if text not in ("", "\n") else [""]:
                    log.lines.append((time.time_ns(), part.rstrip("\r")))
                self._changed.notify_all()
        if state.stopped.is_set():
            return
        if run.run_until_deleted and not state.expired.is_set():
            while not state.stopped.wait(0.2):
                if state.expired.is_set():
                    break
            else:
                return
        code = run.exit_code() if callable(run.exit_code) else run.exit_code
        if state.stopped.is_set():
            return
        if state.expired.is_set():  # killed at its deadline: the pod fails with the kubelet's reason
            code = code if code not in (0, None) else 137
            run.pod_reason = "DeadlineExceeded"
            run.pod_message = "Pod was active on the node longer than the specified deadline"
            run.reason = None if run.reason != "OOMKilled" else run.reason
        reason = run.reason or ("Completed" if code == 0 else "Error")
        self._finish(state, key, containers, main, code, reason, run.message, run, started=True)

    def _stuck_pending(self, state: _PodRunState, key: tuple[str, str], pod: dict, run: PodRun) -> None:
        main = pod["spec"]["containers"][0]
        image = _full_image(main["image"])
        pull_error = (f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": failed to '
                      f'resolve reference "{image}": {image}: not found')
        message = run.pending_message or {
            "ErrImagePull": pull_error,
            "ImagePullBackOff": f'Back-off pulling image "{main["image"]}": ErrImagePull: {pull_error}',
        }.get(run.pending_reason or "", "")
        waiting = {"reason": run.pending_reason, **({"message": message} if message else {})}

        def stuck(p: dict) -> None:
            statuses = p["status"]["containerStatuses"]
            statuses[0]["state"] = {"waiting": waiting}

        self._pod_update(state, key, stuck)
        with self._lock:
            current = self._store["pods"].get(key)
            if current is not None:
                path = f"spec.containers{{{main['name']}}}"
                if run.pending_reason in ("ErrImagePull", "ImagePullBackOff"):
                    self._event(current, "Failed", f'Failed to pull image "{main["image"]}": {pull_error}',
                                "Warning", "kubelet", path)
                    self._event(current, "BackOff", f'Back-off pulling image "{main["image"]}"', "Normal",
                                "kubelet", path)
                self._event(current, "Failed", f"Error: {run.pending_reason}", "Warning", "kubelet", path)

    def _finish(self, state: _PodRunState, key: tuple[str, str], containers: list[dict], main: str, code: int,
                reason: str, message: str | None, run: PodRun, *, started: bool) -> None:
        finished = _now()

        def terminated(p: dict) -> None:
            statuses = []
            for c, old in zip(containers, p["status"].get("containerStatuses") or [{}] * len(containers)):
                began = ((old.get("state") or {}).get("running") or {}).get("startedAt") or finished
                if c["name"] == main:
                    term = {"exitCode": code, "reason": reason, **({"message": message} if message else {}),
                            "startedAt": began if started else None, "finishedAt": finished}
                else:
                    term = {"exitCode": 0, "reason": "Completed", "startedAt": began, "finishedAt": finished}
                term["containerID"] = f"containerd://{_hex(state.uid + c['name'])}"
                statuses.append(_container_status(c, {"terminated": term}, pod_uid=state.uid))
            phase = "Succeeded" if code == 0 else "Failed"
            p["status"].update(phase=phase, containerStatuses=statuses, conditions=_pod_conditions(
                finished, ready_to_start="False", initialized="True", ready=False, names=[],
                done_reason="PodCompleted" if phase == "Succeeded" else "PodFailed"))
            if run.pod_reason:
                p["status"]["reason"] = run.pod_reason
            if run.pod_message:
                p["status"]["message"] = run.pod_message
            # the pod status is written before the log closes: a follower that sees the end sees the state
            for c in containers:
                log = self._logs.get((state.uid, c["name"]))
                if log is not None:
                    log.closed = True

        self._pod_update(state, key, terminated)
        with self._lock:
            self._runs.pop(state.uid, None)

    def _terminate_pod(self, pod: dict, grace: int) -> dict:
        """Mark a pod terminating, stop its kubelet run and end its log streams; returns it as DELETE answers it."""
        uid = pod["metadata"]["uid"]
        if "deletionTimestamp" not in pod["metadata"]:
            when = datetime.fromtimestamp(time.time() + grace, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            pod["metadata"].update(deletionTimestamp=when, deletionGracePeriodSeconds=grace)
            self._touch(POD, pod, spec_changed=False)
        answer = copy.deepcopy(pod)
        run = self._runs.get(uid)
        main = pod["spec"]["containers"][0]["name"]
        if run is not None and not run.stopped.is_set():
            run.stop()
            if pod.get("status", {}).get("phase") == "Running":
                self._event(pod, "Killing", f"Stopping container {main}", "Normal", "kubelet",
                            f"spec.containers{{{main}}}")
        if pod.get("status", {}).get("phase") in ("Pending", "Running"):
            now = _now()
            statuses = []
            known = {s["name"]: s for s in pod["status"].get("containerStatuses") or []}
            for c in pod["spec"]["containers"]:
                old = known.get(c["name"]) or _container_status(c, {"waiting": {"reason": "ContainerCreating"}})
                began = (old["state"].get("running") or {}).get("startedAt")
                if began is None:  # never started: stays waiting
                    statuses.append(old)
                    continue
                term = {"exitCode": 137, "reason": "Error", "startedAt": began, "finishedAt": now}
                statuses.append(_container_status(c, {"terminated": term}, pod_uid=uid))
            pod["status"].update(phase="Failed", containerStatuses=statuses)
            self._touch(POD, pod, spec_changed=False)
        for key in [k for k in self._logs if k[0] == uid]:
            self._logs[key].closed = True
        return answer

    # -- controllers ----------------------------------------------------------------------
    def _enqueue_for(self, rt: ResourceType, obj: dict) -> None:
        """Queue the controllers interested in a change of ``obj``: its owner's owner, its owner, itself.

        Owners go first: an MPIJob sees its launcher Job finish before that Job's TTL may delete it.
        """
        namespace = obj["metadata"].get("namespace") or ""
        keys = [(rt.plural, namespace, obj["metadata"]["name"])] if rt in (JOB, MPIJOB, TRAINJOB) else []
        ref = _controller_ref(obj)
        for _ in range(2):
            plural = {"Job": "jobs", "MPIJob": "mpijobs", "TrainJob": "trainjobs"}.get((ref or {}).get("kind", ""))
            if ref is None or plural is None:
                break
            keys.append((plural, namespace, ref["name"]))
            owner = self._store[plural].get((namespace, ref["name"]))
            ref = _controller_ref(owner) if owner else None
        for key in reversed(keys):
            self._queue[key] = None

    def _drain(self) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            for _ in range(10000):
                if not self._queue:
                    return
                plural, namespace, name = next(iter(self._queue))
                del self._queue[(plural, namespace, name)]
                try:
                    if plural == "jobs":
                        self._reconcile_job(namespace, name)
                    elif plural == "trainjobs" and plural in self._crds:
                        self._reconcile_trainjob(namespace, name)
                    elif plural == "mpijobs" and plural in self._crds:
                        self._reconcile_mpijob(namespace, name)
                except Exception:  # noqa: BLE001 - recorded, the test fails on it
                    self.errors.append(traceback.format_exc())
            self.errors.append("FakeKubeAPI: the controllers did not settle after 10000 reconciles")
        finally:
            self._draining = False

    def _tick(self) -> None:
        """Periodic resync: deadlines and TTLs, and anything a trigger missed."""
        while not self._stopping.wait(0.1):
            try:
                with self._lock:
                    for plural in ("jobs", "mpijobs", "trainjobs"):
                        for namespace, name in list(self._store[plural]):
                            self._queue[(plural, namespace, name)] = None
                    self._drain()
            except Exception:  # noqa: BLE001 - recorded, the test fails on it
                self.errors.append(traceback.format_exc())

    def _set_status(self, rt: ResourceType, obj: dict, status: dict) -> None:
        if status != (obj.get("status") or {}):
            obj["status"] = status
            self._touch(rt, obj, spec_changed=False)

    def _owned_pods(self, owner: dict) -> list[dict]:
        uid, namespace = owner["metadata"]["uid"], owner["metadata"]["namespace"]
        return [p for (ns, _), p in sorted(self._store["pods"].items())
                if ns == namespace and (_controller_ref(p) or {}).get("uid") == uid]

    def _reconcile_job(self, namespace: str, name: str) -> None:
        """A minimal batch/v1 Job controller: one pod at a time, ``backoffLimit`` retries, deadline, TTL."""
        job = self._store["jobs"].get((namespace, name))
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        spec, status = job["spec"], copy.deepcopy(job.get("status") or {})
        conditions = status.get("conditions") or []
        final = next((c for c in conditions if c["type"] in ("Complete", "Failed") and c["status"] == "True"), None)
        if final is not None:
            ttl = spec.get("ttlSecondsAfterFinished")
            if ttl is not None and time.time() >= _parse_time(final["lastTransitionTime"]) + ttl:
                self._remove(JOB, namespace, name, "Background")
            return
        now = _now()
        status.setdefault("startTime", now)
        pods = self._owned_pods(job)
        seen = self._job_pods.setdefault(job["metadata"]["uid"], {})
        for pod in pods:
            seen[pod["metadata"]["uid"]] = pod["status"].get("phase", "Pending")
        succeeded = sum(phase == "Succeeded" for phase in seen.values())
        failed = sum(phase == "Failed" for phase in seen.values())
        active = [p for p in pods if p["status"].get("phase") in ("Pending", "Running")
                  and not p["metadata"].get("deletionTimestamp")]
        ready = sum(any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])
                    for p in active)
        deadline = spec.get("activeDeadlineSeconds")
        ended: tuple[str, str, str] | None = None
        if succeeded >= spec.get("completions", 1):
            ended = ("Complete", "CompletionsReached", "Reached expected number of succeeded pods")
        elif failed > spec.get("backoffLimit", 6):
            ended = ("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        elif deadline is not None and time.time() >= _parse_time(status["startTime"]) + deadline:
            ended = ("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
            for pod in active:
                self._terminate_pod(pod, 0)
                self._remove(POD, namespace, pod["metadata"]["name"])
            active = []
        elif not active:
            pod = self._job_pod(job)
            self._event(job, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}", "Normal", "job-controller")
            active = [pod]
        new = {k: v for k, v in status.items() if k not in ("active", "succeeded", "failed", "ready", "terminating")}
        for key, value in (("active", len(active)), ("succeeded", succeeded), ("failed", failed)):
            if value:
                new[key] = value
        new.update(ready=ready, terminating=0, uncountedTerminatedPods={})
        if ended is not None:
            kind, reason, message = ended
            target = "SuccessCriteriaMet" if kind == "Complete" else "FailureTarget"
            new["conditions"] = [*conditions, *(_job_condition(t, reason, message, now) for t in (target, kind))]
            if kind == "Complete":
                new["completionTime"] = now
                self._event(job, "Completed", "Job completed", "Normal", "job-controller")
            else:
                self._event(job, reason, message, "Warning", "job-controller")
        self._set_status(JOB, job, new)

    def _job_pod(self, job: dict) -> dict:
        template = copy.deepcopy(job["spec"]["template"])
        metadata = {"generateName": f"{job['metadata']['name']}-", "namespace": job["metadata"]["namespace"],
                    "labels": dict((template.get("metadata") or {}).get("labels") or {}),
                    "ownerReferences": [_owner_ref(job)]}
        if (template.get("metadata") or {}).get("annotations"):
            metadata["annotations"] = dict(template["metadata"]["annotations"])
        return self._create(POD, job["metadata"]["namespace"],
                             {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]})

    def _reconcile_mpijob(self, namespace: str, name: str) -> None:
        """The MPI Operator (v2beta1): workers, the launcher Job, conditions, replica statuses, cleanPodPolicy.

        Follows kubeflow/mpi-operator ``pkg/controller/mpi_job_controller.go`` (``syncHandler``,
        ``updateMPIJobStatus``, ``updateMPIJobFailedStatus``, ``deleteWorkerPods``) and
        ``mpi_job_controller_status.go`` (condition reasons ``MPIJobCreated``/``MPIJobRunning``/
        ``MPIJobSucceeded``/``MPIJobFailed``, ``setCondition``/``filterOutCondition``), v0.6.
        """
        job = self._store["mpijobs"].get((namespace, name))
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        spec = job.get("spec") or {}
        replica_specs = spec.get("mpiReplicaSpecs") or {}
        status = copy.deepcopy(job.get("status") or {})
        now = _now()
        problems = _mpi_validation_errors(replica_specs)
        if problems:
            if not any(e["reason"] == "ValidationError" for e in self.events(namespace, name)):
                self._event(job, "ValidationError", f"Found validation errors: {'; '.join(problems)}", "Warning",
                            "mpi-job-controller")
            return
        if not status.get("conditions"):
            message = f"MPIJob {namespace}/{name} is created."
            _set_condition(status, "Created", "True", "MPIJobCreated", message, now)
            self._event(job, "MPIJobCreated", message, "Normal", "mpi-job-controller")
        policy = (spec.get("runPolicy") or {}).get("cleanPodPolicy") or "None"
        workers_spec = replica_specs.get("Worker") or {}
        replicas = int(workers_spec.get("replicas", 0) or 0)
        if _finished(status) and status.get("completionTime"):
            if policy in ("Running", "All"):
                for i in range(replicas):
                    pod = self._store["pods"].get((namespace, f"{name}-worker-{i}"))
                    if pod is None or (_controller_ref(pod) or {}).get("uid") != job["metadata"]["uid"]:
                        continue
                    if policy == "Running" and pod["status"].get("phase") not in ("Running", "Pending"):
                        continue
                    self._terminate_pod(pod, 0)
                    self._remove(POD, namespace, pod["metadata"]["name"])
                status.setdefault("replicaStatuses", {})["Worker"] = {}
                self._set_status(MPIJOB, job, status)
            return
        status.setdefault("startTime", now)
        launcher = self._store["jobs"].get((namespace, f"{name}-launcher"))
        done = launcher is not None and _job_finished(launcher)
        workers: list[dict] = []
        if not done:
            self._mpi_dependents(job, replicas)
            for i in range(replicas):
                pod = self._store["pods"].get((namespace, f"{name}-worker-{i}"))
                if pod is None:
                    pod = self._create(POD, namespace, _mpi_worker(job, i))
                workers.append(pod)
            if launcher is None:
                all_ready = all(any(c["type"] == "Ready" and c["status"] == "True"
                                    for c in w["status"].get("conditions") or []) for w in workers)
                if spec.get("launcherCreationPolicy") != "WaitForWorkersReady" or all_ready:
                    launcher = self._create(JOB, namespace, _mpi_launcher_job(job))
        replica_statuses = status.setdefault("replicaStatuses", {})
        running_launchers = 0
        if launcher is not None:
            launcher_pods = self._owned_pods(launcher)
            running_launchers = sum(p["status"].get("phase") == "Running" for p in launcher_pods)
            launcher_status: dict[str, int] = {}
            if launcher.get("status", {}).get("failed"):
                launcher_status["failed"] = launcher["status"]["failed"]
            if _job_condition_true(launcher, "Complete"):
                launcher_status["succeeded"] = 1
                message = f"MPIJob {namespace}/{name} successfully completed."
                status.setdefault("completionTime", launcher["status"].get("completionTime") or now)
                if _set_condition(status, "Succeeded", "True", "MPIJobSucceeded", message, now):
                    self._event(job, "MPIJobSucceeded", message, "Normal", "mpi-job-controller")
            elif _job_condition_true(launcher, "Failed"):
                failed = next(c for c in launcher["status"]["conditions"] if c["type"] == "Failed")
                reason = failed.get("reason") or "MPIJobFailed"
                message = failed.get("message") or f"MPIJob {namespace}/{name} has failed"
                if reason == "BackoffLimitExceeded":
                    last = max((p for p in launcher_pods if p["status"].get("phase") == "Failed"),
                               key=lambda p: p["metadata"]["creationTimestamp"], default=None)
                    if last is not None:
                        reason += "/" + (last["status"].get("reason") or "")
                        message = (message + ": " + (last["status"].get("message") or ""))[:1024]
                status.setdefault("completionTime", now)
                if _set_condition(status, "Failed", "True", reason, message, now):
                    self._event(job, reason, message, "Warning", "mpi-job-controller")
            elif running_launchers:
                launcher_status["active"] = running_launchers
            replica_statuses["Launcher"] = launcher_status
        worker_status: dict[str, int] = {}
        running = evicted = 0
        for pod in workers:
            phase = pod["status"].get("phase")
            if phase == "Failed":
                worker_status["failed"] = worker_status.get("failed", 0) + 1
                evicted += pod["status"].get("reason") == "Evicted"
            elif phase == "Succeeded":
                worker_status["succeeded"] = worker_status.get("succeeded", 0) + 1
            elif phase == "Running":
                running += 1
                worker_status["active"] = worker_status.get("active", 0) + 1
        replica_statuses["Worker"] = worker_status
        if evicted:
            message = f"{evicted}/{len(workers)} workers are evicted"
            status.setdefault("completionTime", now)
            if _set_condition(status, "Failed", "True", "MPIJobEvicted", message, now):
                self._event(job, "MPIJobEvicted", message, "Warning", "mpi-job-controller")
        if launcher is not None and running_launchers >= 1 and running == len(workers) and not _finished(status):
            message = f"MPIJob {namespace}/{name} is running."
            if _set_condition(status, "Running", "True", "MPIJobRunning", message, now):
                self._event(job, "MPIJobRunning", message.rstrip("."), "Normal", "mpi-job-controller")
        self._set_status(MPIJOB, job, status)

    def _mpi_dependents(self, job: dict, replicas: int) -> None:
        """The Service, hostfile ConfigMap and SSH Secret the operator makes for a job."""
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        owner = [_owner_ref(job)]
        meta = {"namespace": namespace, "labels": {"app": name}, "ownerReferences": owner}
        slots = job["spec"].get("slotsPerWorker", 1)
        hostfile = "".join(f"{name}-worker-{i}.{name}.{namespace}.svc slots={slots}\n" for i in range(replicas))
        running = sorted(p["metadata"]["name"] for p in self._store["pods"].values()
                         if p["metadata"].get("namespace") == namespace and _is_mpi_worker(p)
                         and p["metadata"]["labels"].get(MPI_JOB_NAME_LABEL) == name
                         and p["status"].get("phase") == "Running")
        data = {"hostfile": hostfile,
                "discover_hosts.sh": "#!/bin/sh\n" + "".join(f"echo {p}.{name}.{namespace}.svc\n" for p in running)}
        config = self._store["configmaps"].get((namespace, f"{name}-config"))
        if config is None:
            self._create(CONFIGMAP, namespace, {"metadata": {"name": f"{name}-config", **copy.deepcopy(meta)},
                                                "data": data})
        elif config.get("data") != data:
            config["data"] = data
            self._touch(CONFIGMAP, config, spec_changed=True)
        if (namespace, name) not in self._store["services"]:
            self._create(SERVICE, namespace, {"metadata": {"name": name, **copy.deepcopy(meta)}, "spec": {
                "clusterIP": "None", "selector": {MPI_OPERATOR_NAME_LABEL: "mpi-operator", MPI_JOB_NAME_LABEL: name}}})
        if (namespace, f"{name}-ssh") not in self._store["secrets"]:
            self._create(SECRET, namespace, {"metadata": {"name": f"{name}-ssh", **copy.deepcopy(meta)},
                                             "type": "kubernetes.io/ssh-auth", "data": _ssh_key_pair()})

    # -- Kubeflow Trainer v2 ---------------------------------------------------------------
    def _reconcile_trainjob(self, namespace: str, name: str) -> None:
        """Kubeflow Trainer v2 with JobSet, for a TrainJob of an MPI TrainingRuntime: node pods, the launcher Job
        once the nodes are Ready, the ssh Secret and hostfile ConfigMap, conditions, ``jobsStatus``.

        Follows kubeflow/trainer (after v2.3.0) ``pkg/controller/trainjob_controller.go`` (suspend, the
        deadline), ``pkg/runtime/core/trainingruntime.go`` (runtime patches, ``resourcesPerNode``),
        ``plugins/jobset`` (the trainer's image/command/env; ``Complete``/``Failed`` copied from the
        JobSet; ``jobsStatus``), ``plugins/mpi`` (Secret, hostfile, OpenMPI env, ``runLauncherAsNode``:
        ``max(numNodes-1, 1)`` node pods), and kubernetes-sigs/jobset (pod labels, ``dependsOn``, the
        success policy, a finished JobSet deletes its active Jobs; condition reasons
        ``AllJobsCompleted``/``FailedJobs``). What is left out is listed in :data:`NOT_FAKED`.
        """
        job = self._store["trainjobs"].get((namespace, name))
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        spec = job.get("spec") or {}
        status = copy.deepcopy(job.get("status") or {})
        now = _now()
        if _trainjob_condition(status, "Complete") or _trainjob_condition(status, "Failed"):
            self._trainjob_delete_pods(job, launcher=False)  # the finished JobSet deletes the Jobs still active
            return
        if spec.get("suspend"):
            self._trainjob_delete_pods(job, launcher=True)
            _set_trainjob_condition(status, "Suspended", "True", "Suspended", "TrainJob is suspended", now)
            self._set_status(TRAINJOB, job, status)
            return
        started = _parse_time(job["metadata"]["creationTimestamp"])
        if _trainjob_condition(status, "Suspended"):
            _set_trainjob_condition(status, "Suspended", "False", "Resumed", "TrainJob is resumed", now)
        resumed = next((c for c in status.get("conditions") or [] if c["type"] == "Suspended"), None)
        if resumed is not None:
            started = _parse_time(resumed["lastTransitionTime"])
        deadline = spec.get("activeDeadlineSeconds")
        if deadline and time.time() >= started + deadline:
            self._trainjob_delete_pods(job, launcher=True)  # Trainer deletes the JobSet
            _set_trainjob_condition(status, "Failed", "True", "DeadlineExceeded", "TrainJob exceeded its active deadline",
                                    now)
            self._set_status(TRAINJOB, job, status)
            return
        runtime = self._store["trainingruntimes"].get((namespace, (spec.get("runtimeRef") or {}).get("name", "")))
        problem = _trainjob_runtime_problem(spec, runtime)
        if problem is not None or runtime is None:
            if not any(e["reason"] == "TrainJobResourcesCreationFailed" for e in self.events(namespace, name)):
                self._event(job, "TrainJobResourcesCreationFailed", f"TrainJob resources reconciliation failed: {problem}",
                            "Warning", "trainjob-controller")
            self._set_status(TRAINJOB, job, status)
            return
        plan = _trainjob_plan(job, runtime)
        self._trainjob_dependents(job, plan)
        statuses: dict[str, dict[str, int]] = {}

        def reached(dependency: Mapping[str, Any]) -> bool:  # JobSet's dependsOn: every Job of it Ready/Complete
            got, need = statuses.get(dependency.get("name"), {}), plan["replicas"].get(dependency.get("name"), 1)
            if dependency.get("status") == "Ready":
                return got.get("ready", 0) + got.get("succeeded", 0) >= need
            return got.get("succeeded", 0) >= need

        for rjob in plan["jobs"]:
            ready = all(reached(d) for d in rjob["dependsOn"])
            statuses[rjob["name"]] = (self._trainjob_launcher(job, rjob, plan, create=ready) if rjob["name"] == "launcher"
                                      else self._trainjob_nodes(job, rjob, plan, create=ready))
        status["jobsStatus"] = [{"name": r["name"], **{k: statuses[r["name"]].get(k, 0) for k in (
            "active", "failed", "ready", "succeeded", "suspended")}} for r in plan["jobs"]]
        targets = plan["success_targets"] or [r["name"] for r in plan["jobs"]]
        if any(statuses[r["name"]].get("failed") for r in plan["jobs"]):
            _set_trainjob_condition(status, "Failed", "True", "FailedJobs", "jobset failed due to one or more job failures",
                                    now)
        elif all(statuses[t].get("succeeded", 0) >= plan["replicas"].get(t, 1) for t in targets if t in statuses):
            _set_trainjob_condition(status, "Complete", "True", "AllJobsCompleted", "jobset completed successfully", now)
        if _trainjob_condition(status, "Complete") or _trainjob_condition(status, "Failed"):
            self._trainjob_delete_pods(job, launcher=False)
        self._set_status(TRAINJOB, job, status)

    def _trainjob_dependents(self, job: dict, plan: dict) -> None:
        """What Trainer's MPI plugin makes (the ssh key Secret, the hostfile ConfigMap) and the JobSet's Service."""
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        owner = [_owner_ref(job)]
        secret = f"{name}-mpi-ssh-auth"
        if (namespace, secret) not in self._store["secrets"]:
            fake_key = base64.b64encode(b"FAKE SSH KEY: the fake Kubeflow Trainer makes no real keys\n").decode()
            self._create(SECRET, namespace, {"metadata": {"name": secret, "ownerReferences": copy.deepcopy(owner)},
                                             "type": "kubernetes.io/ssh-auth", "immutable": True,
                                             "data": {"ssh-privatekey": fake_key, "ssh-publickey": fake_key}})
        data = {"hostfile": plan["hostfile"]}
        config = self._store["configmaps"].get((namespace, f"{name}-mpi-hostfile"))
        if config is None:
            self._create(CONFIGMAP, namespace, {"metadata": {"name": f"{name}-mpi-hostfile",
                                                             "ownerReferences": copy.deepcopy(owner)}, "data": data})
        elif config.get("data") != data:
            config["data"] = data
            self._touch(CONFIGMAP, config, spec_changed=True)
        if (namespace, plan["subdomain"]) not in self._store["services"]:
            self._create(SERVICE, namespace, {"metadata": {"name": plan["subdomain"], "labels": {JOBSET_NAME_LABEL: name},
                                                           "ownerReferences": copy.deepcopy(owner)},
                                              "spec": {"clusterIP": "None", "selector": {JOBSET_NAME_LABEL: name},
                                                       "publishNotReadyAddresses": plan["publish_not_ready"]}})

    def _trainjob_pods(self, job: dict, rjob: str) -> list[dict]:
        return [p for p in self._owned_pods(job)
                if (p["metadata"].get("labels") or {}).get(JOBSET_REPLICATED_JOB_LABEL) == rjob]

    def _trainjob_nodes(self, job: dict, rjob: dict, plan: dict, *, create: bool) -> dict[str, int]:
        """The pods of a replicated job other than the launcher (made here, not by a Job: see NOT_FAKED)."""
        namespace = job["metadata"]["namespace"]
        pods = {(p["metadata"]["labels"].get(JOBSET_JOB_INDEX_LABEL), p["metadata"]["labels"].get(JOB_INDEX_LABEL)): p
                for p in self._trainjob_pods(job, rjob["name"])}
        if create:
            for i in range(rjob["replicas"]):
                for j in range(rjob["count"]):
                    if (str(i), str(j)) not in pods:
                        pods[(str(i), str(j))] = self._create(POD, namespace, _trainjob_pod(job, rjob, plan, i, j))
        phases = [p["status"].get("phase") for p in pods.values()]
        if not pods:
            return {}
        ready = sum(p["status"].get("phase") == "Succeeded" or any(
            c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])
            for p in pods.values())
        expected = rjob["replicas"] * rjob["count"]
        return {"active": int(any(ph in ("Pending", "Running") for ph in phases)),
                "ready": rjob["replicas"] if ready >= expected else 0,
                "succeeded": rjob["replicas"] if phases.count("Succeeded") >= expected else 0,
                "failed": int("Failed" in phases)}

    def _trainjob_launcher(self, job: dict, rjob: dict, plan: dict, *, create: bool) -> dict[str, int]:
        """The launcher: a batch Job (the fake Job controller runs its pod)."""
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        launcher = self._store["jobs"].get((namespace, f"{name}-launcher-0"))
        if launcher is not None and (_controller_ref(launcher) or {}).get("uid") != job["metadata"]["uid"]:
            launcher = None
        if launcher is None:
            if not create:
                return {}
            launcher = self._create(JOB, namespace, _trainjob_launcher_job(job, rjob, plan))
        state = launcher.get("status") or {}
        return {"active": int(bool(state.get("active"))), "ready": int(bool(state.get("ready"))),
                "succeeded": int(_job_condition_true(launcher, "Complete")),
                "failed": int(_job_condition_true(launcher, "Failed"))}

    def _trainjob_delete_pods(self, job: dict, *, launcher: bool) -> None:
        """Delete the active node pods and the launcher Job while it runs (the Jobs a finished JobSet deletes);
        with ``launcher``, the launcher Job in any case (a deleted or suspended JobSet)."""
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        for pod in self._owned_pods(job):
            if pod["status"].get("phase") in ("Pending", "Running"):
                self._terminate_pod(pod, 0)
                self._remove(POD, namespace, pod["metadata"]["name"])
        found = self._store["jobs"].get((namespace, f"{name}-launcher-0"))
        if found is None or (_controller_ref(found) or {}).get("uid") != job["metadata"]["uid"]:
            return
        if launcher or not _job_finished(found):
            for pod in self._owned_pods(found):
                self._terminate_pod(pod, 0)
            self._remove(JOB, namespace, found["metadata"]["name"], "Background")

    # -- Seldon ---------------------------------------------------------------------------
    def _reconcile_seldon(self, key: tuple[str, str], obj: dict) -> None:
        """The scripted Seldon controller: one step per read of the object."""
        generation = obj["metadata"]["generation"]
        status = obj.get("status") or {}
        if status.get("observedGeneration") == generation and status.get("state") in ("Available", "Failed"):
            return  # settled
        self._polls[key] = polls = self._polls.get(key, 0) + 1
        if polls <= self.stale_polls:
            return
        if self.seldon_pods and _custom_predictors(obj):
            state, description = self._seldon_predictor_pods(key, obj)
            obj["status"] = {"state": state, "description": description, "observedGeneration": generation}
            return
        done = self.outcome(obj.get("spec") or {}) if polls > self.stale_polls + self.creating_polls else None
        state, description = done or ("Creating", "")
        obj["status"] = {"state": state, "description": description, "observedGeneration": generation}

    def _seldon_predictor_pods(self, key: tuple[str, str], obj: dict) -> tuple[str, str]:
        """The pods of the SeldonDeployment's generation (made on first sight, earlier ones removed), and its state.

        As Seldon Core's operator makes a predictor's Deployment: the componentSpecs pod with the graph's container,
        the predictive unit's environment, and the model container as uid 8888 unless the spec says otherwise."""
        namespace, name = key
        generation = obj["metadata"]["generation"]
        pods = [p for p in self._owned_pods(obj)]
        for pod in pods:
            if pod["metadata"]["labels"].get("fake.seldon/generation") != str(generation):
                self._remove(POD, namespace, pod["metadata"]["name"])
        current = [p for p in pods if p["metadata"]["labels"].get("fake.seldon/generation") == str(generation)]
        if not current:
            for predictor in _custom_predictors(obj):
                current.append(self._create(POD, namespace, _seldon_pod(obj, predictor)))
            return "Creating", ""
        phases = [(self._store["pods"].get((namespace, p["metadata"]["name"])) or {}).get("status", {}).get("phase")
                  for p in current]
        if "Failed" in phases or "Succeeded" in phases:
            return "Failed", "a predictor's model server exited (see its pod's log)"
        if all(phase == "Running" for phase in phases):
            return "Available", ""
        return "Creating", ""


def _custom_predictors(obj: dict) -> list[dict]:
    """The predictors that run a model-server image of their own (``componentSpecs`` with an image)."""
    return [p for p in (obj.get("spec") or {}).get("predictors") or []
            if any(c.get("image") for cs in p.get("componentSpecs") or []
                   for c in (cs.get("spec") or {}).get("containers") or [])]


SELDON_DEFAULT_USER = 8888  # Seldon Core's operator: the model container's runAsUser unless the spec sets one


def _seldon_pod(obj: dict, predictor: dict) -> dict:
    meta = obj["metadata"]
    node = (predictor.get("graph") or {}).get("name") or "model"
    spec = copy.deepcopy(predictor["componentSpecs"][0]["spec"])
    container = next(c for c in spec["containers"] if c.get("image"))
    container["name"] = node
    env = {e["name"]: e for e in container.get("env") or []}
    for name, value in {"PREDICTIVE_UNIT_HTTP_SERVICE_PORT": "9000", "PREDICTIVE_UNIT_ID": node,
                        "PREDICTOR_ID": predictor["name"], "SELDON_DEPLOYMENT_ID": meta["name"]}.items():
        env.setdefault(name, {"name": name, "value": value})
    container["env"] = list(env.values())
    spec.setdefault("securityContext", {}).setdefault("runAsUser", SELDON_DEFAULT_USER)
    spec["containers"] = [container]
    suffix = hashlib.sha256(f"{meta['uid']}{meta['generation']}{predictor['name']}".encode()).hexdigest()[:5]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{meta['name']}-{predictor['name']}-0-{node}-{suffix}"[:63].rstrip("-"),
                         "namespace": meta["namespace"],
                         "labels": {"seldon-deployment-id": meta["name"], "seldon-app": f"{meta['name']}-{predictor['name']}",
                                    "app.kubernetes.io/managed-by": "seldon-core",
                                    "fake.seldon/generation": str(meta["generation"])},
                         "ownerReferences": [{"apiVersion": SELDON.api_version, "kind": SELDON.kind, "name": meta["name"],
                                              "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}]},
            "spec": {"restartPolicy": "Always", **spec}}


def model_uris(spec: dict) -> list[str]:
    """The model URIs of a SeldonDeployment spec (graph ``modelUri`` or ``MODEL_URI`` env)."""
    uris = []
    for p in spec.get("predictors") or []:
        uris.append((p.get("graph") or {}).get("modelUri") or "")
        for component in p.get("componentSpecs") or []:
            for container in component.get("spec", {}).get("containers") or []:
                uris += [e.get("value") or "" for e in container.get("env") or [] if e.get("name") == "MODEL_URI"]
    return uris


# ----------------------------------------------------------------------------- shapes


def _invalid_name(name: str) -> str:
    return (f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric '
            "characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
            r"regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")


_POD_UPDATE_FORBIDDEN = (
    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing "
    "tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
)


def _pod_spec_errors(spec: Mapping[str, Any], path: str) -> list[tuple[str, str, str]]:
    containers = spec.get("containers")
    if not containers:
        return [(f"{path}.containers", "FieldValueRequired", "Required value")]
    errors, names = [], set()
    for i, c in enumerate(containers):
        where = f"{path}.containers[{i}]"
        if not c.get("name"):
            errors.append((f"{where}.name", "FieldValueRequired", "Required value"))
        elif c["name"] in names:
            errors.append((f"{where}.name", "FieldValueDuplicate", f'Duplicate value: "{c["name"]}"'))
        names.add(c.get("name"))
        if not c.get("image"):
            errors.append((f"{where}.image", "FieldValueRequired", "Required value"))
    return errors


def _default_pod_spec(spec: dict) -> None:
    for key, value in (("restartPolicy", "Always"), ("terminationGracePeriodSeconds", 30),
                       ("dnsPolicy", "ClusterFirst"), ("schedulerName", "default-scheduler"),
                       ("securityContext", {}), ("enableServiceLinks", True), ("priority", 0),
                       ("preemptionPolicy", "PreemptLowerPriority")):
        spec.setdefault(key, value)
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    tolerations = spec.setdefault("tolerations", [])
    for taint in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(t.get("key") == taint for t in tolerations):
            tolerations.append({"key": taint, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        image = c.get("image") or ""
        latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
        c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault("resources", {})


def _qos_class(spec: Mapping[str, Any]) -> str:
    resources = [c.get("resources") or {} for c in spec.get("containers") or []]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        all((r.get("limits") or {}).get(k) is not None
            and (r.get("requests") or {}).get(k, r["limits"][k]) == r["limits"][k] for k in ("cpu", "memory"))
        for r in resources)
    return "Guaranteed" if guaranteed else "Burstable"


def _without_images(spec: Any) -> Any:
    if not isinstance(spec, Mapping):
        return spec
    spec = copy.deepcopy(dict(spec))
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            c.pop("image", None)
    spec.pop("activeDeadlineSeconds", None)
    spec.pop("tolerations", None)
    return spec


def _condition(kind: str, status: str, when: str, reason: str | None = None, message: str | None = None) -> dict:
    cond: dict[str, Any] = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": when}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def _pod_conditions(when: str, *, ready_to_start: str, initialized: str, ready: bool, names: list[str],
                    done_reason: str | None = None) -> list[dict]:
    if ready:
        readiness = [_condition("Ready", "True", when), _condition("ContainersReady", "True", when)]
    elif done_reason:
        readiness = [_condition("Ready", "False", when, done_reason), _condition("ContainersReady", "False", when,
                                                                                  done_reason)]
    else:
        message = f"containers with unready status: [{' '.join(names)}]"
        readiness = [_condition("Ready", "False", when, "ContainersNotReady", message),
                     _condition("ContainersReady", "False", when, "ContainersNotReady", message)]
    return [_condition("PodReadyToStartContainers", ready_to_start, when),
            _condition("Initialized", initialized, when), *readiness, _condition("PodScheduled", "True", when)]


def _container_status(container: Mapping[str, Any], state: dict, *, ready: bool = False, started: bool = False,
                      pod_uid: str | None = None) -> dict:
    status: dict[str, Any] = {"name": container["name"], "state": state, "lastState": {}, "ready": ready,
                              "restartCount": 0, "image": _full_image(container["image"]), "imageID": ""}
    if pod_uid is not None:
        status["imageID"] = _image_id(container["image"])
        status["containerID"] = f"containerd://{_hex(pod_uid + container['name'])}"
    status["started"] = started
    return status


def _job_condition(kind: str, reason: str, message: str, when: str) -> dict:
    return {"type": kind, "status": "True", "lastProbeTime": when, "lastTransitionTime": when, "reason": reason,
            "message": message}


def _job_condition_true(job: Mapping[str, Any], kind: str) -> bool:
    return any(c["type"] == kind and c["status"] == "True" for c in (job.get("status") or {}).get("conditions") or [])


def _job_finished(job: Mapping[str, Any]) -> bool:
    return _job_condition_true(job, "Complete") or _job_condition_true(job, "Failed")


def _finished(status: Mapping[str, Any]) -> bool:
    return any(c["type"] in ("Succeeded", "Failed") and c["status"] == "True" for c in status.get("conditions") or [])


def _set_condition(status: dict, kind: str, cond_status: str, reason: str, message: str, when: str) -> bool:
    """``setCondition`` of the MPI Operator: no change on the same status and reason; Running ends False."""
    conditions = status.get("conditions") or []
    current = next((c for c in conditions if c["type"] == kind), None)
    if current is not None and current["status"] == cond_status and current.get("reason") == reason:
        return False
    new = {"type": kind, "status": cond_status, "reason": reason, "message": message, "lastUpdateTime": when,
           "lastTransitionTime": current["lastTransitionTime"] if current and current["status"] == cond_status
           else when}
    kept = []
    for c in conditions:
        if c["type"] == kind or {kind, c["type"]} == {"Running", "Restarting"}:
            continue
        if kind in ("Failed", "Succeeded") and c["type"] in ("Running", "Failed"):
            c = {**c, "status": "False"}
        kept.append(c)
    status["conditions"] = [*kept, new]
    return True


def _mpi_validation_errors(replica_specs: Mapping[str, Any]) -> list[str]:
    """The checks of the operator's ``validation.ValidateMPIJob`` that the fake needs."""
    problems = []
    if "Launcher" not in replica_specs:
        problems.append("spec.mpiReplicaSpecs[Launcher]: Required value: must have Launcher replica specification")
    for role, replica in replica_specs.items():
        if not (((replica or {}).get("template") or {}).get("spec") or {}).get("containers"):
            problems.append(f"spec.mpiReplicaSpecs[{role}].template.spec.containers: Required value")
    return problems


def _mpi_labels(name: str, role: str) -> dict[str, str]:
    return {MPI_OPERATOR_NAME_LABEL: "mpi-operator", MPI_JOB_NAME_LABEL: name, MPI_JOB_ROLE_LABEL: role}


def _ssh_key_pair() -> dict[str, str]:
    """The data of an MPIJob's ssh Secret, a real key pair as the operator's ``newSSHAuthSecret`` makes it: ECDSA
    P-521, ``ssh-privatekey`` the private key in PEM (``EC PRIVATE KEY``, SEC 1: Go's ``x509.MarshalECPrivateKey``),
    ``ssh-publickey`` the public key as an authorized_keys line (``ssh.MarshalAuthorizedKey``, newline ended)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP521R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return {"ssh-privatekey": base64.b64encode(private).decode(),
            "ssh-publickey": base64.b64encode(public + b"\n").decode()}


def _ssh(pod_spec: dict, job: Mapping[str, Any]) -> None:
    """``setupSSHOnPod``: the job's key pair at ``sshAuthMountPath``, mode 0600 only at ``/root/.ssh`` (elsewhere the
    Secret volume's default, 0644: the files are root's, which ssh and sshd accept from another user)."""
    name = job["metadata"]["name"]
    mount_path = job["spec"].get("sshAuthMountPath", "/root/.ssh")
    secret: dict[str, Any] = {"secretName": f"{name}-ssh", "items": [
        {"key": "ssh-privatekey", "path": "id_rsa"}, {"key": "ssh-publickey", "path": "id_rsa.pub"},
        {"key": "ssh-publickey", "path": "authorized_keys"}]}
    if mount_path == "/root/.ssh":
        secret["defaultMode"] = 0o600
    pod_spec.setdefault("volumes", []).append({"name": "ssh-auth", "secret": secret})
    pod_spec["containers"][0].setdefault("volumeMounts", []).append({"name": "ssh-auth", "mountPath": mount_path})


def _restart_policy(replica: Mapping[str, Any], default: str) -> str:
    policy = replica.get("restartPolicy") or default
    return "Never" if policy == "ExitCode" else policy


def _mpi_worker(job: dict, index: int) -> dict:
    name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
    replica = job["spec"]["mpiReplicaSpecs"]["Worker"]
    template = copy.deepcopy(replica.get("template") or {})
    labels = {**((template.get("metadata") or {}).get("labels") or {}), **_mpi_labels(name, "worker"),
              MPI_REPLICA_INDEX_LABEL: str(index)}
    spec = template.get("spec") or {}
    spec.update(hostname=f"{name}-worker-{index}", subdomain=name,
                restartPolicy=_restart_policy(replica, "Never"))
    spec.setdefault("dnsConfig", {}).setdefault("searches", []).append(f"{name}.{namespace}.svc.cluster.local")
    container = spec["containers"][0]
    if not container.get("command") and not container.get("args"):
        container["command"] = ["/usr/sbin/sshd", "-De"]
    container.setdefault("env", []).append({"name": "K_MPI_JOB_ROLE", "value": "worker"})
    _ssh(spec, job)
    metadata = {"name": f"{name}-worker-{index}", "namespace": namespace, "labels": labels,
                "ownerReferences": [_owner_ref(job)]}
    if (template.get("metadata") or {}).get("annotations"):
        metadata["annotations"] = template["metadata"]["annotations"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def _mpi_launcher_job(job: dict) -> dict:
    name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
    replica = job["spec"]["mpiReplicaSpecs"]["Launcher"]
    template = copy.deepcopy(replica.get("template") or {})
    labels = {**((template.get("metadata") or {}).get("labels") or {}), **_mpi_labels(name, "launcher")}
    spec = template.get("spec") or {}
    spec.update(hostname=f"{name}-launcher", subdomain=name, restartPolicy=_restart_policy(replica, "OnFailure"))
    container = spec["containers"][0]
    slots = str(job["spec"].get("slotsPerWorker", 1))
    env = [{"name": "K_MPI_JOB_ROLE", "value": "launcher"}]
    if job["spec"].get("mpiImplementation", "OpenMPI") == "OpenMPI":
        env += [{"name": "OMPI_MCA_orte_keep_fqdn_hostnames", "value": "true"},
                {"name": "OMPI_MCA_orte_default_hostfile", "value": "/etc/mpi/hostfile"},
                {"name": "OMPI_MCA_plm_rsh_args", "value": "-o ConnectionAttempts=10"},
                {"name": "OMPI_MCA_orte_set_default_slots", "value": slots}]
    env += [{"name": "NVIDIA_VISIBLE_DEVICES"}, {"name": "NVIDIA_DRIVER_CAPABILITIES"}]
    container.setdefault("env", []).extend(env)
    _ssh(spec, job)
    spec["volumes"].append({"name": "mpi-job-config", "configMap": {"name": f"{name}-config", "items": [
        {"key": "hostfile", "path": "hostfile", "mode": 0o444},
        {"key": "discover_hosts.sh", "path": "discover_hosts.sh", "mode": 0o555}]}})
    container["volumeMounts"].append({"name": "mpi-job-config", "mountPath": "/etc/mpi"})
    run_policy = job["spec"].get("runPolicy") or {}
    job_spec: dict[str, Any] = {"template": {"metadata": {"labels": labels}, "spec": spec}}
    for key in ("ttlSecondsAfterFinished", "activeDeadlineSeconds", "backoffLimit"):
        if run_policy.get(key) is not None:
            job_spec[key] = run_policy[key]
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": f"{name}-launcher", "namespace": namespace, "labels": {"app": name},
                         "ownerReferences": [_owner_ref(job)]},
            "spec": job_spec}


def _trainjob_condition(status: Mapping[str, Any], kind: str) -> bool:
    return any(c["type"] == kind and c["status"] == "True" for c in status.get("conditions") or [])


def _set_trainjob_condition(status: dict, kind: str, cond_status: str, reason: str, message: str, when: str) -> None:
    """``meta.SetStatusCondition``: the transition time changes only with the status."""
    conditions = status.setdefault("conditions", [])
    current = next((c for c in conditions if c["type"] == kind), None)
    if current is None:
        conditions.append({"type": kind, "status": cond_status, "reason": reason, "message": message,
                           "lastTransitionTime": when})
        return
    if current["status"] != cond_status:
        current["lastTransitionTime"] = when
    current.update(status=cond_status, reason=reason, message=message)


def _trainjob_runtime_problem(spec: Mapping[str, Any], runtime: Mapping[str, Any] | None) -> str | None:
    """Why the fake cannot run a TrainJob from ``runtime`` (None: it can)."""
    ref = spec.get("runtimeRef") or {}
    if ref.get("kind") != "TrainingRuntime":
        return f"the FAKE Kubeflow Trainer serves no {ref.get('kind')}s"
    if runtime is None:
        return f'trainingruntimes.trainer.kubeflow.org "{ref.get("name")}" not found'
    mpi = ((runtime.get("spec") or {}).get("mlPolicy") or {}).get("mpi")
    if not isinstance(mpi, Mapping) or mpi.get("mpiImplementation", "OpenMPI") != "OpenMPI":
        return "the FAKE Kubeflow Trainer runs only TrainingRuntimes with an OpenMPI policy"
    jobs = ((runtime["spec"].get("template") or {}).get("spec") or {}).get("replicatedJobs") or []
    if "launcher" not in [j.get("name") for j in jobs]:
        return "the FAKE Kubeflow Trainer runs only MPI runtimes with a launcher job"
    return None


def _upsert(items: list[dict], new: Iterable[Mapping[str, Any]], key: str = "name") -> list[dict]:
    """``apply.UpsertEnvVars``/``UpsertVolumes``: replace the item of the same ``key``, else append."""
    out = [copy.deepcopy(i) for i in items]
    for item in new:
        index = next((n for n, i in enumerate(out) if i.get(key) == item.get(key)), None)
        if index is None:
            out.append(copy.deepcopy(dict(item)))
        else:
            out[index] = copy.deepcopy(dict(item))
    return out


def _gpus(resources: Mapping[str, Any] | None) -> int:
    for kind in ("limits", "requests"):
        value = ((resources or {}).get(kind) or {}).get("nvidia.com/gpu")
        if value is not None:
            return int(value)
    return 0


def _trainjob_plan(job: dict, runtime: dict) -> dict:
    """What Trainer v2 makes of a TrainJob and its MPI runtime: each replicated job's Job template (the trainer's
    image, command, env and resources, the runtime patches, the MPI plugin's volumes and env), its replicas and
    pod count; the hostfile."""
    name = job["metadata"]["name"]
    trainer = job["spec"].get("trainer") or {}
    policy = runtime["spec"].get("mlPolicy") or {}
    mpi = policy["mpi"]
    jobset = copy.deepcopy((runtime["spec"].get("template") or {}).get("spec") or {})
    for patch in job["spec"].get("runtimePatches") or []:
        patched = (((patch or {}).get("trainingRuntimeSpec") or {}).get("template") or {}).get("spec")
        if patched:
            jobset = strategic_merge_patch(jobset, patched)
    as_node = bool(mpi.get("runLauncherAsNode"))
    num_nodes = trainer.get("numNodes") or policy.get("numNodes") or 1
    resources = trainer.get("resourcesPerNode")
    slots = trainer.get("numProcPerNode") or mpi.get("numProcPerNode", 1)
    if not trainer.get("numProcPerNode") and mpi.get("numProcPerNode", 1) == 1 and _gpus(resources) > 1:
        slots = _gpus(resources)
    subdomain = (jobset.get("network") or {}).get("subdomain") or name
    ssh_volume = {"name": "mpi-ssh-auth", "secret": {"secretName": f"{name}-mpi-ssh-auth", "defaultMode": 0o400, "items": [
        {"key": "ssh-privatekey", "path": "id_rsa", "mode": 0o640},
        {"key": "ssh-publickey", "path": "id_rsa.pub", "mode": 0o644},
        {"key": "ssh-publickey", "path": "authorized_keys", "mode": 0o644}]}}
    hostfile_volume = {"name": "mpi-hostfile", "configMap": {"name": f"{name}-mpi-hostfile", "items": [
        {"key": "hostfile", "path": "hostfile", "mode": 0o444}]}}
    jobs = []
    for rjob in jobset.get("replicatedJobs") or []:
        rname = rjob["name"]
        template = copy.deepcopy(rjob.get("template") or {})
        ancestor = ((template.get("metadata") or {}).get("labels") or {}).get(TRAINJOB_ANCESTOR_LABEL)
        job_spec = template.setdefault("spec", {})
        pod_spec = job_spec.setdefault("template", {}).setdefault("spec", {})
        count = job_spec.get("parallelism") or 1
        replicas = rjob.get("replicas", 1)
        if ancestor == "trainer":
            count, replicas = policy.get("numNodes") or 1, 1
        if rname == "node":
            count = max(num_nodes - 1, 1) if as_node else num_nodes
        for container in pod_spec.get("containers") or []:
            if container.get("name") != "node":
                continue
            if ancestor == "trainer":
                for key in ("image", "command", "args"):
                    if trainer.get(key) is not None:
                        container[key] = copy.deepcopy(trainer[key])
            if ancestor == "trainer" or (as_node and rname == "node"):
                container["env"] = _upsert(container.get("env") or [], trainer.get("env") or [])
                if resources:
                    merged = copy.deepcopy(container.get("resources") or {})
                    for kind, values in resources.items():
                        merged[kind] = {**(merged.get(kind) or {}), **values}
                    container["resources"] = merged
            if rname in ("launcher", "node"):
                container["volumeMounts"] = _upsert(container.get("volumeMounts") or [], [
                    {"name": "mpi-ssh-auth", "mountPath": mpi.get("sshAuthMountPath", "/root/.ssh")}])
            if rname == "launcher":
                container["volumeMounts"] = _upsert(container["volumeMounts"], [
                    {"name": "mpi-hostfile", "mountPath": "/etc/mpi"}])
                container["env"] = _upsert(container.get("env") or [], [
                    {"name": "OMPI_MCA_orte_default_hostfile", "value": "/etc/mpi/hostfile"},
                    {"name": "OMPI_MCA_orte_keep_fqdn_hostnames", "value": "true"},
                    {"name": "OMPI_MCA_orte_set_default_slots", "value": str(slots)},
                    {"name": "OMPI_MCA_plm_rsh_args", "value": "-o ConnectionAttempts=10"}])
        if rname in ("launcher", "node"):
            pod_spec["volumes"] = _upsert(pod_spec.get("volumes") or [],
                                          [ssh_volume, *([hostfile_volume] if rname == "launcher" else [])])
        pod_spec.setdefault("restartPolicy", "OnFailure")  # JobSet's default
        pod_spec["subdomain"] = subdomain
        jobs.append({"name": rname, "replicas": replicas, "count": count, "template": template,
                     "dependsOn": list(rjob.get("dependsOn") or [])})
    hostfile = "".join(f"{name}-{r['name']}-{i}-{j}.{subdomain} slots={slots}\n" for r in jobs
                       if r["name"] == "node" or (as_node and r["name"] == "launcher")
                       for i in range(r["replicas"]) for j in range(r["count"]))
    return {"jobs": jobs, "replicas": {r["name"]: r["replicas"] for r in jobs}, "hostfile": hostfile,
            "subdomain": subdomain, "publish_not_ready": (jobset.get("network") or {}).get("publishNotReadyAddresses", True),
            "success_targets": (jobset.get("successPolicy") or {}).get("targetReplicatedJobs"),
            "ttl": jobset.get("ttlSecondsAfterFinished")}


def _jobset_labels(job: Mapping[str, Any], rjob: Mapping[str, Any], index: int) -> dict[str, str]:
    name = job["metadata"]["name"]
    return {JOBSET_NAME_LABEL: name, JOBSET_REPLICATED_JOB_LABEL: rjob["name"],
            JOBSET_REPLICAS_LABEL: str(rjob["replicas"]), JOBSET_JOB_INDEX_LABEL: str(index), JOBSET_RESTARTS_LABEL: "0"}


def _trainjob_pod(job: dict, rjob: dict, plan: dict, index: int, completion: int) -> dict:
    """Pod ``completion`` of Job ``index`` of a replicated job (in a cluster: of the Indexed Job ``<name>-<rjob>-<index>``)."""
    name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
    template = copy.deepcopy(rjob["template"]["spec"]["template"])
    job_name = f"{name}-{rjob['name']}-{index}"
    labels = {**((template.get("metadata") or {}).get("labels") or {}), **_jobset_labels(job, rjob, index),
              JOB_NAME_LABEL: job_name, JOB_INDEX_LABEL: str(completion)}
    spec = template.get("spec") or {}
    spec["hostname"] = f"{job_name}-{completion}"
    metadata = {"generateName": f"{job_name}-{completion}-", "namespace": namespace, "labels": labels,
                "ownerReferences": [_owner_ref(job)]}
    if (template.get("metadata") or {}).get("annotations"):
        metadata["annotations"] = template["metadata"]["annotations"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def _trainjob_launcher_job(job: dict, rjob: dict, plan: dict) -> dict:
    """The launcher's Job ``<name>-launcher-0`` (in a cluster the JobSet's; here the TrainJob's)."""
    name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
    template = copy.deepcopy(rjob["template"])
    job_spec = {k: v for k, v in (template.get("spec") or {}).items() if k not in ("template", "parallelism",
                                                                                  "completions", "completionMode")}
    pod = copy.deepcopy(template["spec"]["template"])
    labels = _jobset_labels(job, rjob, 0)
    pod.setdefault("metadata", {})["labels"] = {**(pod["metadata"].get("labels") or {}), **labels,
                                                JOB_INDEX_LABEL: "0"}
    pod["spec"]["hostname"] = f"{name}-launcher-0-0"
    if plan["ttl"] is not None:
        job_spec["ttlSecondsAfterFinished"] = plan["ttl"]
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": f"{name}-launcher-0", "namespace": namespace,
                         "labels": {**((template.get("metadata") or {}).get("labels") or {}), **labels},
                         "ownerReferences": [_owner_ref(job)]},
            "spec": {**job_spec, "template": pod}}


# ----------------------------------------------------------------------------- HTTP handler

_CORE = re.compile(r"^/api/v1(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?/?$")
_GROUP = re.compile(r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)"
                    r"(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?/?$")


def _peer_closed(sock: socket.socket) -> bool:
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stall per request

    def setup(self) -> None:
        super().setup()
        self.server.fake._connections.add(self.connection)  # type: ignore[attr-defined]

    def finish(self) -> None:
        self.server.fake._connections.discard(self.connection)  # type: ignore[attr-defined]
        try:
            super().finish()
        except OSError:
            pass

    def _serve(self) -> None:
        fake: FakeKubeAPI = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        answer = fake._handle_http(self.command, self.path, dict(self.headers.items()), raw)
        if answer is _DROP:
            self.close_connection = True
            return
        if isinstance(answer, _Stream):
            self._stream(answer)
            return
        data = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
        self.send_response(answer.code)
        self.send_header("Content-Type", answer.content_type)
        for key, value in answer.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, answer: _Stream) -> None:
        self.send_response(answer.code)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in answer.chunks:
                if not chunk:
                    if _peer_closed(self.connection):
                        raise ConnectionResetError("the client went away")
                    continue
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True
        finally:
            close = getattr(answer.chunks, "close", None)
            if close is not None:
                close()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


# ----------------------------------------------------------------------------- client helpers


def kube_config(fake: FakeKubeAPI, namespace: str = "default") -> dict:
    """A kubeconfig (as a dict) whose only cluster is ``fake``, with no authentication."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": fake.url}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
        "users": [{"name": "fake", "user": {}}],
    }


def airflow_connection(fake: FakeKubeAPI, namespace: str = "default") -> dict:
    """An Airflow ``kubernetes`` connection (as a dict) to ``fake`` for the cncf provider's hooks."""
    return {"conn_type": "kubernetes",
            "extra": {"kube_config": json.dumps(kube_config(fake, namespace)), "namespace": namespace}}


def airflow_connection_env(fake: FakeKubeAPI, conn_id: str = "kubernetes_fake", namespace: str = "default") -> dict[str, str]:
    """``{"AIRFLOW_CONN_<CONN_ID>": <JSON connection>}`` to set (e.g. with ``monkeypatch.setenv``)."""
    return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(airflow_connection(fake, namespace))}
