"""The FAKE Kubernetes API server (tests/kubernetes/fake_api.py), through the real clients.

It is not Kubernetes: these tests check that the fake answers the real ``kubernetes`` and
``kubernetes_asyncio`` clients, the cncf-kubernetes hooks and ``PodManager`` the way a real
API server (and kubelet, Job controller, MPI Operator) would, so that tests built on it mean something.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections.abc import Callable, Iterator

import aiohttp
import pytest
import urllib3
from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.exceptions import ApiException
from kubernetes_asyncio import client as async_k8s

from tests.kubernetes import fake_api
from tests.kubernetes.fake_api import (
    NOT_FOUND_BODY,
    FakeKubeAPI,
    LocalProcessKubelet,
    PodRun,
    ScriptedKubelet,
    kube_config,
    use_local_python,
)

NS = "default"
MPI = {"group": "kubeflow.org", "version": "v2beta1", "plural": "mpijobs"}
SELDON = {"group": "machinelearning.seldon.io", "version": "v1", "plural": "seldondeployments"}
TIMESTAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (.*)$")


def pod(name: str = "p", command: list[str] | None = None, *, labels: dict | None = None, env: list | None = None,
        containers: list[dict] | None = None, image: str = "python:3.11") -> dict:
    container = {"name": "base", "image": image, "command": command or ["python", "-c", "pass"], "env": env or []}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"restartPolicy": "Never", "containers": containers or [container]}}


def mpijob(name: str = "hvd", *, workers: int = 2, clean: str | None = "Running", backoff: int = 0) -> dict:
    def template(role: str, command: list[str] | None) -> dict:
        container = {"name": role, "image": "registry.example/tfx:1", **({"command": command} if command else {})}
        return {"metadata": {"labels": {"app.kubernetes.io/managed-by": "airflow-mlops"}},
                "spec": {"containers": [container]}}

    run_policy = {"backoffLimit": backoff, **({"cleanPodPolicy": clean} if clean else {})}
    return {"apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob", "metadata": {"name": name, "namespace": NS},
            "spec": {"slotsPerWorker": 1, "runPolicy": run_policy, "mpiReplicaSpecs": {
                "Launcher": {"replicas": 1, "restartPolicy": "OnFailure",
                             "template": template("launcher", ["horovodrun", "-np", "2", "python", "train.py"])},
                "Worker": {"replicas": workers, "template": template("worker", None)}}}}


def log_of(core: k8s.CoreV1Api, name: str, **params) -> str:
    """A pod log as text (kubernetes 36's ``read_namespaced_pod_log`` returns ``str(bytes)`` when it decodes)."""
    return core.read_namespaced_pod_log(name, NS, _preload_content=False, **params).data.decode()


def body_of(error: ApiException) -> dict:
    return json.loads(error.body)


def conditions(obj: dict) -> list[tuple[str, str, str]]:
    return [(c["type"], c["status"], c.get("reason", "")) for c in obj["status"].get("conditions") or []]


@pytest.fixture
def core(kube_client: k8s.ApiClient) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(kube_client)


@pytest.fixture
def custom(kube_client: k8s.ApiClient) -> k8s.CustomObjectsApi:
    return k8s.CustomObjectsApi(kube_client)


@pytest.fixture
def batch(kube_client: k8s.ApiClient) -> k8s.BatchV1Api:
    return k8s.BatchV1Api(kube_client)


def test_the_module_says_loudly_that_it_is_a_fake() -> None:
    assert "FAKE" in fake_api.__doc__ and "THIS IS NOT KUBERNETES" in fake_api.__doc__
    assert "Not faked" in fake_api.NOT_FAKED


# ----------------------------------------------------------------------------- CRUD


def test_pod_crud_with_server_fields(fake_kube, core) -> None:
    created = core.create_namespaced_pod(NS, pod(labels={"app": "x"}))
    meta = created.metadata
    assert (meta.namespace, meta.generation, created.status.phase) == (NS, 1, "Pending")
    assert meta.uid and meta.creation_timestamp and int(meta.resource_version) > 0
    assert created.spec.containers[0].termination_message_path == "/dev/termination-log"  # server defaults

    fake_kube.wait_for_pod(NS, "p")  # bound by the kubelet: spec.nodeName is set, the spec is final
    current = core.read_namespaced_pod("p", NS)
    current.metadata.labels["team"] = "ml"
    replaced = core.replace_namespaced_pod("p", NS, current)
    assert replaced.metadata.labels == {"app": "x", "team": "ml"}
    assert int(replaced.metadata.resource_version) > int(current.metadata.resource_version)
    assert replaced.metadata.generation == 1  # metadata only

    patched = core.patch_namespaced_pod("p", NS, {"metadata": {"labels": {"team": None, "tier": "web"}}})
    assert patched.metadata.labels == {"app": "x", "tier": "web"}
    assert fake_kube.requests_of("PATCH")[-1].headers["Content-Type"] == "application/strategic-merge-patch+json"
    patched = core.patch_namespaced_pod("p", NS, [{"op": "remove", "path": "/metadata/labels/tier"}])
    assert patched.metadata.labels == {"app": "x"}

    assert [p.metadata.name for p in core.list_namespaced_pod(NS).items] == ["p"]
    deleted = core.delete_namespaced_pod("p", NS)
    assert deleted.metadata.deletion_timestamp is not None  # pods answer with the pod, not a Status
    with pytest.raises(ApiException) as caught:
        core.read_namespaced_pod("p", NS)
    assert caught.value.status == 404


def test_custom_object_crud_and_patch_content_types(fake_kube, kube_client, custom) -> None:
    custom.create_namespaced_custom_object(namespace=NS, body=mpijob(), **MPI)
    got = custom.get_namespaced_custom_object(name="hvd", namespace=NS, **MPI)
    assert got["spec"]["sshAuthMountPath"] == "/root/.ssh"  # CRD structural default
    patched = custom.patch_namespaced_custom_object(name="hvd", namespace=NS, body={"metadata": {"labels": {"a": "b"}}},
                                                    **MPI)
    assert patched["metadata"]["labels"] == {"a": "b"}
    assert fake_kube.requests_of("PATCH")[-1].headers["Content-Type"] == "application/merge-patch+json"
    with pytest.raises(ApiException) as caught:  # custom resources take no strategic merge patch
        custom.patch_namespaced_custom_object(name="hvd", namespace=NS, body={"metadata": {"labels": {"c": "d"}}},
                                              _content_type="application/strategic-merge-patch+json", **MPI)
    assert caught.value.status == 415
    assert "application/merge-patch+json" in body_of(caught.value)["message"]
    answer = custom.delete_namespaced_custom_object(name="hvd", namespace=NS, **MPI)
    assert answer["status"] == "Success" and answer["details"]["kind"] == "mpijobs"


def _missing_pod(core, batch, custom):
    return core.read_namespaced_pod("nope", NS)


def _missing_job(core, batch, custom):
    return batch.read_namespaced_job("nope", NS)


def _missing_mpijob(core, batch, custom):
    return custom.get_namespaced_custom_object(name="nope", namespace=NS, **MPI)


def _existing_pod(core, batch, custom):
    core.create_namespaced_pod(NS, pod("twice"))
    return core.create_namespaced_pod(NS, pod("twice"))


def _existing_mpijob(core, batch, custom):
    custom.create_namespaced_custom_object(namespace=NS, body=mpijob("twice"), **MPI)
    return custom.create_namespaced_custom_object(namespace=NS, body=mpijob("twice"), **MPI)


def _nameless_pod(core, batch, custom):
    manifest = pod()
    del manifest["metadata"]["name"]
    return core.create_namespaced_pod(NS, manifest)


def _imageless_pod(core, batch, custom):
    return core.create_namespaced_pod(NS, pod(containers=[{"name": "base"}]))


def _always_job(core, batch, custom):
    template = pod()
    template["spec"]["restartPolicy"] = "Always"
    return batch.create_namespaced_job(NS, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
                                            "spec": {"template": {"spec": template["spec"]}}})


ALWAYS_JOB = ('Job.batch "j" is invalid: spec.template.spec.restartPolicy: Unsupported value: "Always": '
              'supported values: "OnFailure", "Never"')


@pytest.mark.parametrize(("call", "code", "reason", "message", "details"), [
    (_missing_pod, 404, "NotFound", 'pods "nope" not found', {"name": "nope", "kind": "pods"}),
    (_missing_job, 404, "NotFound", 'jobs.batch "nope" not found', {"name": "nope", "group": "batch", "kind": "jobs"}),
    (_missing_mpijob, 404, "NotFound", 'mpijobs.kubeflow.org "nope" not found',
     {"name": "nope", "group": "kubeflow.org", "kind": "mpijobs"}),
    (_existing_pod, 409, "AlreadyExists", 'pods "twice" already exists', {"name": "twice", "kind": "pods"}),
    (_existing_mpijob, 409, "AlreadyExists", 'mpijobs.kubeflow.org "twice" already exists',
     {"name": "twice", "group": "kubeflow.org", "kind": "mpijobs"}),
    (_nameless_pod, 422, "Invalid",
     'Pod "" is invalid: metadata.name: Required value: name or generateName is required', None),
    (_imageless_pod, 422, "Invalid", 'Pod "p" is invalid: spec.containers[0].image: Required value', None),
    (_always_job, 422, "Invalid", ALWAYS_JOB, None),
], ids=["pod-404", "job-404", "mpijob-404", "pod-409", "mpijob-409", "no-name-422", "no-image-422", "job-422"])
def test_error_bodies_are_real_status_objects(core, batch, custom, call, code, reason, message, details) -> None:
    with pytest.raises(ApiException) as caught:
        call(core, batch, custom)
    body = body_of(caught.value)
    assert caught.value.status == code
    assert {k: body[k] for k in ("kind", "apiVersion", "status", "reason", "message", "code")} == {
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": message, "code": code}
    if details is not None:
        assert body["details"] == details
    else:
        assert body["details"]["causes"]


@pytest.mark.parametrize(("plural", "name"), [("pods", "p"), ("mpijobs", "hvd")])
def test_a_stale_resource_version_is_a_conflict(fake_kube, core, custom, plural, name) -> None:
    def replace(body: dict) -> object:
        if plural == "pods":
            return core.replace_namespaced_pod(name, NS, body)
        return custom.replace_namespaced_custom_object(name=name, namespace=NS, body=body, **MPI)

    fake_kube.create(pod() if plural == "pods" else mpijob())
    if plural == "pods":  # the kubelet binds it (spec.nodeName): a spec from before then is no longer valid
        fake_kube.wait_for_pod(NS, name)
    stale = fake_kube.read(plural, NS, name)
    fake_kube.modify(NS, name, lambda o: o["metadata"].setdefault("labels", {}).update(x="y"), resource=plural)
    with pytest.raises(ApiException) as caught:
        replace(stale)
    assert (caught.value.status, body_of(caught.value)["reason"]) == (409, "Conflict")
    assert "the object has been modified; please apply your changes to the latest version" in caught.value.body
    del stale["metadata"]["resourceVersion"]
    if plural == "pods":  # core types allow an unconditional update
        assert replace(stale).metadata.name == "p"
    else:
        with pytest.raises(ApiException) as caught:
            replace(stale)
        assert caught.value.status == 422


@pytest.mark.parametrize(("selector", "names"), [
    ("app=x", ["a", "b"]),
    ("app==x,tier=db", ["b"]),
    ("app!=x", ["c", "d"]),
    ("app in (x, y)", ["a", "b", "c"]),
    ("app notin (x)", ["c", "d"]),
    ("tier", ["a", "b"]),
    ("!tier", ["c", "d"]),
    ("app in (x,y),!tier", ["c"]),
])
def test_label_selectors(fake_kube, core, selector, names) -> None:
    for name, labels in (("a", {"app": "x", "tier": "web"}), ("b", {"app": "x", "tier": "db"}), ("c", {"app": "y"}),
                         ("d", {})):
        fake_kube.create(pod(name, labels=labels))
    assert [p.metadata.name for p in core.list_namespaced_pod(NS, label_selector=selector).items] == names


def test_a_bad_selector_is_a_bad_request(core) -> None:
    with pytest.raises(ApiException) as caught:
        core.list_namespaced_pod(NS, label_selector="app in x")
    assert caught.value.status == 400


def test_generate_name(core) -> None:
    manifest = pod()
    manifest["metadata"] = {"generateName": "step-"}
    created = core.create_namespaced_pod(NS, manifest)
    assert re.fullmatch(r"step-[bcdfghjklmnpqrstvwxz2456789]{5}", created.metadata.name)


@pytest.mark.parametrize(("policy", "pods_left"), [(None, []), ("Background", []), ("Foreground", []),
                                                   ("Orphan", ["owned-0", "owned-1"])])
def test_deleting_an_owner_collects_its_dependents(fake_kube, core, policy, pods_left) -> None:
    owner = core.create_namespaced_config_map(NS, {"metadata": {"name": "owner"}, "data": {"k": "v"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid, "controller": True}
    for i in range(2):
        manifest = pod(f"owned-{i}")
        manifest["metadata"]["ownerReferences"] = [ref]
        core.create_namespaced_pod(NS, manifest)
    answer = json.loads(core.delete_namespaced_config_map(
        "owner", NS, body=k8s.V1DeleteOptions(propagation_policy=policy), _preload_content=False).data)
    left = core.list_namespaced_pod(NS).items
    assert [p.metadata.name for p in left] == pods_left
    assert all(p.metadata.owner_references is None for p in left)
    if policy in ("Orphan", "Foreground"):  # not deleted at once: the object comes back, with a finalizer
        assert answer["kind"] == "ConfigMap"
        assert answer["metadata"]["finalizers"] == [{"Orphan": "orphan", "Foreground": "foregroundDeletion"}[policy]]
    else:
        assert (answer["kind"], answer["status"]) == ("Status", "Success")


def test_deleting_a_job_orphans_its_pods_by_default(fake_kube, batch, core) -> None:
    """batch/v1 keeps the legacy default: the client must ask for Background propagation."""
    fake_kube.kubelet = ScriptedKubelet(interval=0, pods={"*": PodRun(run_until_deleted=True)})
    batch.create_namespaced_job(NS, {"metadata": {"name": "j"}, "spec": {"template": pod()}})
    fake_kube.wait_until(lambda: fake_kube.list_objects("pods", NS), what="the job's pod")
    response = batch.delete_namespaced_job("j", NS, _preload_content=False)
    answer = json.loads(response.data)  # the Job, still there with the orphan finalizer, not a Status
    assert (answer["kind"], answer["metadata"]["finalizers"]) == ("Job", ["orphan"])
    assert "child pods are preserved by default" in response.headers["Warning"]
    assert [p.metadata.owner_references for p in core.list_namespaced_pod(NS).items] == [None]


# ----------------------------------------------------------------------------- CRDs and discovery


@pytest.mark.parametrize("installed", [True, False])
def test_a_missing_crd_answers_like_a_cluster_without_the_mpi_operator(installed) -> None:
    with FakeKubeAPI(crds=("mpijobs", "seldondeployments") if installed else ("seldondeployments",)) as fake, \
            k8s.ApiClient(k8s.Configuration(host=fake.url)) as api:
        custom = k8s.CustomObjectsApi(api)
        assert [r.name for r in custom.get_api_resources("machinelearning.seldon.io", "v1").resources] == [
            "seldondeployments", "seldondeployments/status"]
        if installed:
            assert [r.name for r in custom.get_api_resources("kubeflow.org", "v2beta1").resources] == [
                "mpijobs", "mpijobs/status"]
            assert custom.create_namespaced_custom_object(namespace=NS, body=mpijob(), **MPI)["kind"] == "MPIJob"
            return
        for call in (lambda: custom.get_api_resources("kubeflow.org", "v2beta1"),
                     lambda: custom.create_namespaced_custom_object(namespace=NS, body=mpijob(), **MPI),
                     lambda: custom.list_namespaced_custom_object(namespace=NS, **MPI)):
            with pytest.raises(ApiException) as caught:
                call()
            assert caught.value.status == 404
            assert body_of(caught.value) == NOT_FOUND_BODY
        assert "kubeflow.org" not in [g.name for g in k8s.ApisApi(api).get_api_versions().groups]
        assert not fake.errors


def test_version_and_group_discovery(core, kube_client) -> None:
    assert k8s.VersionApi(kube_client).get_code().major == "1"
    groups = {g.name for g in k8s.ApisApi(kube_client).get_api_versions().groups}
    assert groups == {"batch", "kubeflow.org", "machinelearning.seldon.io"}
    assert "pods/log" in [r.name for r in core.get_api_resources().resources]


# ----------------------------------------------------------------------------- the kubelet


@pytest.mark.parametrize(("run", "phase", "code", "reason"), [
    (PodRun(logs=["a", "b"]), "Succeeded", 0, "Completed"),
    (PodRun(logs=["Traceback ...", "ValueError: bad"], exit_code=3), "Failed", 3, "Error"),
    (PodRun(exit_code=137, reason="OOMKilled"), "Failed", 137, "OOMKilled"),
], ids=["success", "failure", "oomkilled"])
def test_pods_run_through_real_status_shapes(fake_kube, core, run, phase, code, reason) -> None:
    fake_kube.kubelet = ScriptedKubelet(pods={"p": run})
    core.create_namespaced_pod(NS, pod())
    fake_kube.wait_for_pod(NS, "p")
    got = core.read_namespaced_pod("p", NS)
    terminated = got.status.container_statuses[0].state.terminated
    assert (got.status.phase, terminated.exit_code, terminated.reason) == (phase, code, reason)
    assert terminated.started_at <= terminated.finished_at
    assert got.spec.node_name == "fake-node" and got.status.pod_ip and got.status.start_time
    ready = {c.type: (c.status, c.reason) for c in got.status.conditions}
    assert ready["Ready"] == ("False", "PodCompleted" if phase == "Succeeded" else "PodFailed")
    assert ready["PodScheduled"] == ("True", None)
    assert log_of(core, "p") == "".join(f"{line}\n" for line in run.logs)
    events = core.list_namespaced_event(NS, field_selector="involvedObject.name=p").items
    assert [e.reason for e in events] == ["Scheduled", "Pulled", "Created", "Started"]


def test_a_running_pod_is_running_and_ready(fake_kube, core) -> None:
    fake_kube.kubelet = ScriptedKubelet(pods={"p": PodRun(logs=["up"], run_until_deleted=True)})
    core.create_namespaced_pod(NS, pod())
    fake_kube.wait_for_pod(NS, "p", ["Running"])
    status = core.read_namespaced_pod("p", NS).status
    assert status.container_statuses[0].state.running.started_at is not None
    assert status.container_statuses[0].ready and status.container_statuses[0].started
    assert {c.type: c.status for c in status.conditions}["Ready"] == "True"


@pytest.mark.parametrize(("run", "waiting", "log_error"), [
    (PodRun(pending_reason="ErrImagePull"), "ErrImagePull", "is waiting to start: image can't be pulled"),
    (PodRun(pending_reason="ImagePullBackOff"), "ImagePullBackOff",
     "is waiting to start: trying and failing to pull image"),
    (PodRun(unschedulable="0/3 nodes are available: 3 Insufficient nvidia.com/gpu."), None, None),
], ids=["errimagepull", "imagepullbackoff", "unschedulable"])
def test_stuck_pending_pods(fake_kube, core, run, waiting, log_error) -> None:
    fake_kube.kubelet = ScriptedKubelet(pods={"p": run})
    core.create_namespaced_pod(NS, pod(image="registry.example/nope:1"))
    events = fake_kube.wait_until(
        lambda: [e.reason for e in core.list_namespaced_event(NS, field_selector="involvedObject.name=p").items
                 if e.type == "Warning"], what="a warning event")
    status = core.read_namespaced_pod("p", NS).status
    assert status.phase == "Pending"
    if waiting is None:
        assert events == ["FailedScheduling"]
        scheduled = status.conditions[0]
        assert (scheduled.type, scheduled.status, scheduled.reason) == ("PodScheduled", "False", "Unschedulable")
        assert "Insufficient nvidia.com/gpu" in scheduled.message
        assert log_of(core, "p") == ""
        return
    assert status.container_statuses[0].state.waiting.reason == waiting
    assert "registry.example/nope:1" in status.container_statuses[0].state.waiting.message
    with pytest.raises(ApiException) as caught:
        core.read_namespaced_pod_log("p", NS, container="base")
    assert caught.value.status == 400
    assert body_of(caught.value)["message"] == f'container "base" in pod "p" {log_error}'


def test_follow_streams_lines_as_they_are_written(fake_kube, core) -> None:
    release = threading.Event()

    def logs() -> Iterator[str]:
        yield "epoch 1"
        assert release.wait(10)
        yield "epoch 2"

    fake_kube.kubelet = ScriptedKubelet(pods={"p": PodRun(logs=logs)})
    core.create_namespaced_pod(NS, pod())
    fake_kube.wait_for_pod(NS, "p", ["Running"])
    response = core.read_namespaced_pod_log("p", NS, follow=True, _preload_content=False)
    assert response.headers["Transfer-Encoding"] == "chunked"
    chunks = response.stream(amt=None)
    assert next(chunks) == b"epoch 1\n"
    assert fake_kube.read("pods", NS, "p")["status"]["phase"] == "Running"  # the line came before the end
    release.set()
    assert b"".join(chunks) == b"epoch 2\n"  # and the stream ends with the container
    assert fake_kube.read("pods", NS, "p")["status"]["phase"] == "Succeeded"


@pytest.mark.parametrize(("params", "expected"), [
    ({}, ["one", "two", "three"]),
    ({"tail_lines": 2}, ["two", "three"]),
    ({"tail_lines": 1, "timestamps": True}, ["three"]),
    ({"since_seconds": 60}, ["one", "two", "three"]),
    ({"limit_bytes": 6}, ["one", "tw"]),
    ({"container": "base"}, ["one", "two", "three"]),
])
def test_log_parameters(fake_kube, core, params, expected) -> None:
    fake_kube.kubelet = ScriptedKubelet(["one", "two", "three"])
    core.create_namespaced_pod(NS, pod())
    fake_kube.wait_for_pod(NS, "p")
    text = log_of(core, "p", **params)
    lines = text.splitlines()
    if params.get("timestamps"):
        lines = [TIMESTAMPED.match(line).group(1) for line in lines]
    assert lines == expected


@pytest.mark.parametrize(("manifest", "container", "message"), [
    (pod(), "nope", "container nope is not valid for pod p"),
    (pod(containers=[{"name": "a", "image": "x:1"}, {"name": "b", "image": "x:1"}]), None,
     "a container name must be specified for pod p, choose one of: [a b]"),
])
def test_log_of_a_wrong_container_is_a_bad_request(fake_kube, core, manifest, container, message) -> None:
    core.create_namespaced_pod(NS, manifest)
    fake_kube.wait_for_pod(NS, "p")
    with pytest.raises(ApiException) as caught:
        core.read_namespaced_pod_log("p", NS, **({"container": container} if container else {}))
    assert (caught.value.status, body_of(caught.value)["message"]) == (400, message)


def test_deleting_a_pod_ends_its_log_stream(fake_kube, core) -> None:
    fake_kube.kubelet = ScriptedKubelet(pods={"p": PodRun(logs=["serving"], run_until_deleted=True)})
    core.create_namespaced_pod(NS, pod())
    fake_kube.wait_until(lambda: fake_kube.pod_logs(NS, "p"), what="the first line")
    response = core.read_namespaced_pod_log("p", NS, follow=True, _preload_content=False)
    chunks = response.stream(amt=None)
    assert next(chunks) == b"serving\n"
    core.delete_namespaced_pod("p", NS, grace_period_seconds=0)
    assert b"".join(chunks) == b""
    assert core.list_namespaced_pod(NS).items == []


def test_watch_sees_the_pod_lifecycle(fake_kube, core) -> None:
    release = threading.Event()
    fake_kube.kubelet = ScriptedKubelet(pods={"p": PodRun(logs=lambda: iter([release.wait(10) and "x"]))})
    core.create_namespaced_pod(NS, pod())
    core.create_namespaced_pod(NS, pod("other"))
    seen = []
    for event in watch.Watch().stream(core.list_namespaced_pod, NS, field_selector="metadata.name=p",
                                      timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name, event["object"].status.phase))
        release.set()
        if event["object"].status.phase == "Succeeded":
            break
    assert seen[0][:2] == ("ADDED", "p") and seen[-1] == ("MODIFIED", "p", "Succeeded")
    assert {name for _, name, _ in seen} == {"p"}


# ----------------------------------------------------------------------------- LocalProcessKubelet

SCRIPT = """
import os, sys
print("hello", os.environ["GREETING"], os.environ["EXTRA"], os.environ["POD"], sys.argv[1], flush=True)
print("to stderr", file=sys.stderr, flush=True)
sys.exit(int(os.environ["CODE"]))
"""


@pytest.mark.parametrize("code", [0, 3])
def test_local_process_kubelet_runs_the_container_command(fake_kube, core, code) -> None:
    fake_kube.kubelet = LocalProcessKubelet(env={"EXTRA": "extra"}, rewrite=use_local_python())
    env = [{"name": "GREETING", "value": "hi"}, {"name": "CODE", "value": str(code)},
           {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    manifest = pod(command=["python3.11", "-c", SCRIPT], env=env)
    manifest["spec"]["containers"][0]["args"] = ["$(GREETING)-arg"]
    core.create_namespaced_pod(NS, manifest)
    got = fake_kube.wait_for_pod(NS, "p", timeout=20)
    assert got["status"]["phase"] == ("Succeeded" if code == 0 else "Failed")
    assert got["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == code
    assert log_of(core, "p") == "hello hi extra p hi-arg\nto stderr\n"


def test_local_process_kubelet_streams_and_is_killed_with_the_pod(fake_kube, core, tmp_path) -> None:
    fake_kube.kubelet = LocalProcessKubelet(rewrite=use_local_python())
    script = "import os, time\nprint(os.getpid(), flush=True)\nwhile True: time.sleep(0.05)"
    core.create_namespaced_pod(NS, pod(command=["python", "-c", script]))
    fake_kube.wait_for_pod(NS, "p", ["Running"], timeout=20)
    response = core.read_namespaced_pod_log("p", NS, follow=True, _preload_content=False)
    pid = int(next(response.stream(amt=None)))
    os.kill(pid, 0)  # alive, still logging
    core.delete_namespaced_pod("p", NS)
    fake_kube.wait_until(lambda: not _alive(pid), timeout=10, what=f"process {pid} to be killed")


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_local_process_kubelet_start_error(fake_kube, core) -> None:
    fake_kube.kubelet = LocalProcessKubelet()
    core.create_namespaced_pod(NS, pod(command=["/no/such/binary"]))
    got = fake_kube.wait_for_pod(NS, "p")
    terminated = got["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (got["status"]["phase"], terminated["exitCode"], terminated["reason"]) == ("Failed", 128, "StartError")
    assert '"/no/such/binary"' in terminated["message"]


# ----------------------------------------------------------------------------- batch/v1 Jobs


@pytest.mark.parametrize(("codes", "backoff", "final", "counts"), [
    ([0], 6, "Complete", {"succeeded": 1}),
    ([1, 0], 1, "Complete", {"succeeded": 1, "failed": 1}),
    ([1, 1], 1, "Failed", {"failed": 2}),
], ids=["success", "retry-then-success", "backoff-limit"])
def test_jobs(fake_kube, batch, core, codes, backoff, final, counts) -> None:
    attempts = iter(codes)
    fake_kube.kubelet = lambda p: PodRun(logs=["try"], exit_code=next(attempts))
    batch.create_namespaced_job(NS, {"metadata": {"name": "j"}, "spec": {"backoffLimit": backoff,
                                                                         "template": {"spec": pod()["spec"]}}})
    job = fake_kube.wait_until(lambda: (j := fake_kube.read("jobs", NS, "j")) and any(
        c["type"] == final for c in j["status"].get("conditions") or []) and j, what=f"the job {final}")
    assert {k: job["status"][k] for k in counts} == counts
    reason = {"Complete": "CompletionsReached", "Failed": "BackoffLimitExceeded"}[final]
    assert conditions(job)[-2:] == [("SuccessCriteriaMet" if final == "Complete" else "FailureTarget", "True", reason),
                                    (final, "True", reason)]
    assert ("completionTime" in job["status"]) == (final == "Complete")
    pods = core.list_namespaced_pod(NS, label_selector="batch.kubernetes.io/job-name=j").items
    assert len(pods) == len(codes) and all(p.metadata.name.startswith("j-") for p in pods)
    assert batch.read_namespaced_job("j", NS).status.start_time is not None


# ----------------------------------------------------------------------------- the MPI Operator


def _workers_running(fake: FakeKubeAPI, name: str = "hvd", count: int = 2) -> Callable[[], bool]:
    def check() -> bool:
        pods = fake.list_objects("pods", NS, f"training.kubeflow.org/job-name={name},training.kubeflow.org/job-role=worker")
        return len(pods) == count and all(p["status"].get("phase") == "Running" for p in pods)
    return check


def _launcher(fake: FakeKubeAPI, lines: list[str], code: int = 0) -> PodRun:
    def logs() -> Iterator[str]:
        fake.wait_until(_workers_running(fake), what="the workers")
        yield from lines

    return PodRun(logs=logs, exit_code=code)


def _wait_finished(fake: FakeKubeAPI, name: str = "hvd") -> dict:
    def done() -> dict | None:
        job = fake.read("mpijobs", NS, name)
        return job if job and any(c["type"] in ("Succeeded", "Failed") and c["status"] == "True"
                                  for c in job.get("status", {}).get("conditions") or []) else None
    return fake.wait_until(done, what=f"MPIJob {name} to finish")


@pytest.mark.parametrize(("policy", "workers_left"), [("Running", []), ("All", []), (None, ["Running", "Running"])],
                         ids=["Running", "All", "None"])
def test_mpijob_success(fake_kube, custom, core, policy, workers_left) -> None:
    fake_kube.kubelet = ScriptedKubelet(pods={"hvd-launcher-*": _launcher(fake_kube, ["rank 0: loss 0.1"])})
    custom.create_namespaced_custom_object(namespace=NS, body=mpijob(clean=policy), **MPI)
    job = _wait_finished(fake_kube)
    assert conditions(job) == [("Created", "True", "MPIJobCreated"), ("Running", "False", "MPIJobRunning"),
                               ("Succeeded", "True", "MPIJobSucceeded")]
    messages = [c["message"] for c in job["status"]["conditions"]]
    assert messages == ["MPIJob default/hvd is created.", "MPIJob default/hvd is running.",
                        "MPIJob default/hvd successfully completed."]
    assert job["status"]["startTime"] <= job["status"]["completionTime"]
    assert job["status"]["replicaStatuses"]["Launcher"] == {"succeeded": 1}
    if policy in ("Running", "All"):
        fake_kube.wait_until(lambda: not fake_kube.list_objects("pods", NS, "training.kubeflow.org/job-role=worker"),
                             what="cleanPodPolicy")
    workers = core.list_namespaced_pod(NS, label_selector="training.kubeflow.org/job-role=worker").items
    assert [w.status.phase for w in workers] == workers_left
    (launcher,) = core.list_namespaced_pod(NS, label_selector="training.kubeflow.org/job-role=launcher").items
    assert re.fullmatch(r"hvd-launcher-[a-z0-9]{5}", launcher.metadata.name)  # a pod of the launcher Job
    assert launcher.metadata.labels["training.kubeflow.org/job-name"] == "hvd"
    assert launcher.metadata.owner_references[0].kind == "Job"
    assert log_of(core, launcher.metadata.name) == "rank 0: loss 0.1\n"
    hostfile = core.read_namespaced_config_map("hvd-config", NS).data["hostfile"]
    assert hostfile == "hvd-worker-0.hvd.default.svc slots=1\nhvd-worker-1.hvd.default.svc slots=1\n"


def test_mpijob_workers_get_the_operator_shape(fake_kube, custom, core) -> None:
    fake_kube.kubelet = ScriptedKubelet(pods={"hvd-launcher-*": PodRun(run_until_deleted=True)})
    custom.create_namespaced_custom_object(namespace=NS, body=mpijob(), **MPI)
    fake_kube.wait_until(_workers_running(fake_kube), what="the workers")
    worker = core.read_namespaced_pod("hvd-worker-1", NS)
    assert worker.metadata.labels["training.kubeflow.org/replica-index"] == "1"
    assert worker.metadata.owner_references[0].kind == "MPIJob"
    assert worker.spec.containers[0].command == ["/usr/sbin/sshd", "-De"]
    job = fake_kube.wait_until(lambda: (j := fake_kube.read("mpijobs", NS, "hvd"))
                               and ("Running", "True", "MPIJobRunning") in conditions(j) and j, what="Running")
    assert job["status"]["replicaStatuses"] == {"Launcher": {"active": 1}, "Worker": {"active": 2}}


@pytest.mark.parametrize("backoff", [0, 1])
def test_mpijob_failure(fake_kube, custom, core, backoff) -> None:
    fake_kube.kubelet = ScriptedKubelet(pods={"hvd-launcher-*": _launcher(fake_kube, ["boom"], code=1)})
    custom.create_namespaced_custom_object(namespace=NS, body=mpijob(backoff=backoff), **MPI)
    job = _wait_finished(fake_kube)
    failed = job["status"]["conditions"][-1]
    # mpi-operator appends the last failed launcher pod's status.reason/message (empty for an exit code)
    assert (failed["type"], failed["status"], failed["reason"]) == ("Failed", "True", "BackoffLimitExceeded/")
    assert failed["message"] == "Job has reached the specified backoff limit: "
    assert ("Running", "False", "MPIJobRunning") in conditions(job)
    assert job["status"]["replicaStatuses"]["Launcher"] == {"failed": backoff + 1}
    launchers = core.list_namespaced_pod(NS, label_selector="training.kubeflow.org/job-role=launcher").items
    assert sorted(p.status.container_statuses[0].state.terminated.exit_code for p in launchers) == [1] * (backoff + 1)
    fake_kube.wait_until(lambda: not fake_kube.list_objects("pods", NS, "training.kubeflow.org/job-role=worker"),
                         what="cleanPodPolicy Running")


def test_the_launcher_job_ttl_deletes_it_after_the_mpijob_saw_it_finish(fake_kube, custom) -> None:
    manifest = mpijob()
    manifest["spec"]["runPolicy"]["ttlSecondsAfterFinished"] = 0
    custom.create_namespaced_custom_object(namespace=NS, body=manifest, **MPI)
    job = _wait_finished(fake_kube)
    assert conditions(job)[-1] == ("Succeeded", "True", "MPIJobSucceeded")
    fake_kube.wait_until(lambda: not fake_kube.list_objects("jobs"), what="the TTL of the launcher Job")
    with pytest.raises(AssertionError):  # and no new launcher comes back
        fake_kube.wait_until(lambda: fake_kube.list_objects("jobs"), timeout=0.3)


def test_deleting_an_mpijob_deletes_its_pods(fake_kube, custom, core) -> None:
    fake_kube.kubelet = ScriptedKubelet(pods={"hvd-launcher-*": PodRun(run_until_deleted=True)})
    custom.create_namespaced_custom_object(namespace=NS, body=mpijob(), **MPI)
    fake_kube.wait_until(lambda: len(fake_kube.list_objects("pods", NS)) == 3, what="3 pods")
    custom.delete_namespaced_custom_object(name="hvd", namespace=NS, **MPI)
    assert core.list_namespaced_pod(NS).items == []
    assert fake_kube.list_objects("jobs") == fake_kube.list_objects("configmaps") == []


# ----------------------------------------------------------------------------- fault injection


def test_429_with_retry_after(fake_kube, core, kube_client) -> None:
    fake_kube.fail_next("GET", 429, "Too many requests, please try again later.", retry_after=0,
                        path_contains="/pods")
    assert core.list_namespaced_pod(NS).items == []  # urllib3 honours Retry-After on a 429 and retries
    assert len(fake_kube.requests_of("GET")) == 2
    kube_client.configuration.retries = False
    no_retry = k8s.CoreV1Api(k8s.ApiClient(kube_client.configuration))
    fake_kube.fail_next("GET", 429, "Too many requests, please try again later.", retry_after=2)
    with pytest.raises(ApiException) as caught:
        no_retry.list_namespaced_pod(NS)
    assert caught.value.status == 429 and caught.value.headers["Retry-After"] == "2"
    body = body_of(caught.value)
    assert (body["reason"], body["details"]) == ("TooManyRequests", {"kind": "pods", "retryAfterSeconds": 2})
    assert no_retry.list_namespaced_pod(NS).items == []  # only the next one


def test_fail_next_skips_and_filters_by_path(fake_kube, core) -> None:
    fake_kube.fail_next("POST", 500, "Internal error occurred: etcdserver: request timed out", skip=1,
                        path_contains="/pods")
    core.create_namespaced_config_map(NS, {"metadata": {"name": "c"}})  # another path: not counted
    core.create_namespaced_pod(NS, pod("first"))  # skipped
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_pod(NS, pod("second"))
    assert (caught.value.status, body_of(caught.value)["reason"]) == (500, "InternalError")
    assert body_of(caught.value)["details"] == {"kind": "pods"}
    assert [r.method for r in fake_kube.requests] == ["POST", "POST", "POST"]


def test_a_dropped_connection_in_the_sync_client(fake_kube, core, kube_client) -> None:
    fake_kube.drop_next("GET")
    assert core.list_namespaced_pod(NS).items == []  # urllib3 retries an idempotent request
    assert len(fake_kube.requests_of("GET")) == 2
    kube_client.configuration.retries = False
    no_retry = k8s.CoreV1Api(k8s.ApiClient(kube_client.configuration))
    fake_kube.drop_next("GET")
    with pytest.raises(urllib3.exceptions.ProtocolError, match="Connection aborted"):
        no_retry.list_namespaced_pod(NS)
    fake_kube.drop_next("POST")
    with pytest.raises(urllib3.exceptions.ProtocolError):  # never retried
        core.create_namespaced_pod(NS, pod())


def test_before_next_changes_the_object_in_between(fake_kube, core) -> None:
    core.create_namespaced_pod(NS, pod())
    current = core.read_namespaced_pod("p", NS)
    fake_kube.before_next("PUT", lambda f: f.modify(NS, "p", lambda o: o["metadata"].update(labels={"x": "y"}),
                                                    resource="pods"))
    with pytest.raises(ApiException) as caught:
        core.replace_namespaced_pod("p", NS, current)
    assert caught.value.status == 409


# ----------------------------------------------------------------------------- kubernetes_asyncio


def test_kubernetes_asyncio_client(fake_kube) -> None:
    fake_kube.kubelet = ScriptedKubelet(pods={"p": PodRun(logs=["a", "b"], interval=0.05)})

    async def main() -> None:
        async with async_k8s.ApiClient(async_k8s.Configuration(host=fake_kube.url)) as api:
            core, custom = async_k8s.CoreV1Api(api), async_k8s.CustomObjectsApi(api)
            await core.create_namespaced_pod(NS, pod())
            # follow a started container (an unscheduled pod's log is empty, as on a real API server)
            fake_kube.wait_for_pod(NS, "p", phases=("Running", "Succeeded"))
            response = await core.read_namespaced_pod_log("p", NS, follow=True, _preload_content=False)
            assert [line async for line in response.content] == [b"a\n", b"b\n"]
            assert (await core.read_namespaced_pod("p", NS)).status.phase == "Succeeded"
            await custom.create_namespaced_custom_object(namespace=NS, body=mpijob(), **MPI)
            listed = await custom.list_namespaced_custom_object(namespace=NS, **MPI)
            assert [o["metadata"]["name"] for o in listed["items"]] == ["hvd"]
            with pytest.raises(async_k8s.ApiException) as caught:
                await custom.get_namespaced_custom_object(name="nope", namespace=NS, **SELDON)
            assert caught.value.status == 404
            with pytest.raises(async_k8s.ApiException) as caught:  # the asyncio client sends dicts as JSON patch
                await custom.patch_namespaced_custom_object(name="hvd", namespace=NS, body={"spec": {}}, **MPI)
            assert (caught.value.status, json.loads(caught.value.body)["reason"]) == (400, "BadRequest")
            fake_kube.drop_next("GET", times=2)  # aiohttp retries an idempotent request once
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await core.read_namespaced_pod("p", NS)

    asyncio.run(main())


# ----------------------------------------------------------------------------- the cncf provider


def test_kubernetes_hooks_through_an_airflow_connection(fake_kube, kube_conn) -> None:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import (
        AsyncKubernetesHook,
        KubernetesHook,
    )

    fake_kube.create(pod())
    fake_kube.create(mpijob())
    hook = KubernetesHook(conn_id=kube_conn)
    assert hook.get_namespace() == NS
    assert hook.api_client.configuration.host == fake_kube.url
    assert "p" in [p.metadata.name for p in hook.core_v1_client.list_namespaced_pod(NS).items]
    assert hook.get_custom_object(name="hvd", namespace=NS, **MPI)["kind"] == "MPIJob"

    async def main() -> None:
        async_hook = AsyncKubernetesHook(conn_id=kube_conn)
        assert (await async_hook.get_pod("p", NS)).metadata.name == "p"
        async with async_hook.get_conn() as api:
            got = await async_k8s.CustomObjectsApi(api).get_namespaced_custom_object(name="hvd", namespace=NS, **MPI)
            assert got["metadata"]["name"] == "hvd"

    asyncio.run(main())
    assert kube_config(fake_kube)["clusters"][0]["cluster"]["server"] == fake_kube.url


def test_pod_manager_runs_a_pod_to_completion(fake_kube, kube_conn, tmp_path) -> None:
    """How the provider runs runtime steps as pods: PodManager create → start → follow logs → completion."""
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from airflow.providers.cncf.kubernetes.utils.pod_manager import PodManager

    fake_kube.kubelet = LocalProcessKubelet(rewrite=use_local_python())
    script = "import time\nfor i in range(3):\n    print('step', i, flush=True)\n    time.sleep(0.05)"
    manager = PodManager(kube_client=KubernetesHook(conn_id=kube_conn).core_v1_client)
    manifest = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="step", namespace=NS), spec=k8s.V1PodSpec(
        restart_policy="Never", containers=[k8s.V1Container(name="base", image="python:3.11",
                                                            command=["python", "-c", script])]))
    manager.create_pod(manifest)
    asyncio.run(manager.await_pod_start(manifest, check_interval=0.05))
    seen: list[str] = []
    status = manager.fetch_container_logs(manifest, "base", follow=True,
                                          log_formatter=lambda container, line: seen.append(line) or line)
    # the provider's PodLogsConsumer appends a trailing "\n" to the last message, against any server
    assert [line.rstrip("\n") for line in seen] == ["step 0", "step 1", "step 2"]
    assert status.running is False and status.last_log_time is not None
    assert manager.await_pod_completion(manifest).status.phase == "Succeeded"


def test_pod_manager_gives_up_on_an_image_that_cannot_be_pulled(fake_kube, kube_conn) -> None:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from airflow.providers.cncf.kubernetes.utils.pod_manager import (
        PodLaunchFailedException,
        PodManager,
    )

    fake_kube.kubelet = ScriptedKubelet(pods={"step": PodRun(pending_reason="ErrImagePull")})
    manager = PodManager(kube_client=KubernetesHook(conn_id=kube_conn).core_v1_client)
    manifest = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="step", namespace=NS), spec=k8s.V1PodSpec(
        restart_policy="Never", containers=[k8s.V1Container(name="base", image="registry.example/nope:1")]))
    manager.create_pod(manifest)
    with pytest.raises(PodLaunchFailedException, match="Image cannot be pulled, unable to start: ErrImagePull"):
        asyncio.run(manager.await_pod_start(manifest, check_interval=0.05))
