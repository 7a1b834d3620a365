"""Retries, error messages and adoption of ``airflow_mlops.kubernetes.api``.

Against the FAKE Kubernetes API server (tests/kubernetes/fake_api.py), through the real client.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from kubernetes import client as k8s

from airflow_mlops.kubernetes.api import (
    Backoff,
    CrdMissingError,
    KubernetesApiError,
    acall,
    call,
    create_or_adopt,
    is_ours,
    object_name,
    owner_labels,
    wait_gone,
)
from tests.kubernetes.fake_api import FakeKubeAPI

FAST = Backoff(attempts=4, initial=0.01, maximum=0.05)


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def core(fake_kube):
    """A real client without urllib3's own retries (it retries 429/503 with Retry-After itself)."""
    configuration = k8s.Configuration(host=fake_kube.url)
    configuration.retries = 0
    api = k8s.ApiClient(configuration)
    yield k8s.CoreV1Api(api)
    api.close()


def pod(name: str, labels: dict[str, str] | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "step", "image": "busybox"}]}}


def test_throttling_is_retried_after_the_servers_retry_after(fake_kube, core, sleeps):
    fake_kube.create(pod("p"))
    fake_kube.fail_next("GET", 429, "too many requests", retry_after=3, times=2)
    got = call("reading pod default/p", core.read_namespaced_pod, "p", "default", backoff=FAST, sleep=sleeps)
    assert got.metadata.name == "p"
    assert sleeps == [0.05, 0.05]  # Retry-After (3 s), capped by the backoff's maximum
    assert len(fake_kube.requests_of("GET", "/pods/p")) == 3


@pytest.mark.parametrize("code", [500, 502, 503, 504])
def test_server_errors_are_retried_then_reported(fake_kube, core, sleeps, code):
    fake_kube.fail_next("GET", code, "etcdserver: request timed out", times=FAST.attempts)
    with pytest.raises(KubernetesApiError, match=rf"reading pod default/p: the API server answered {code} .*etcdserver"):
        call("reading pod default/p", core.read_namespaced_pod, "p", "default", backoff=FAST, sleep=sleeps)
    assert len(sleeps) == FAST.attempts - 1
    assert sleeps == sorted(sleeps)  # backing off


@pytest.mark.parametrize("code", [400, 403, 404, 409, 422])
def test_client_errors_are_not_retried(fake_kube, core, sleeps, code):
    fake_kube.fail_next("GET", code, f"answer {code}")
    with pytest.raises(KubernetesApiError) as caught:
        call("reading pod default/p", core.read_namespaced_pod, "p", "default", backoff=FAST, sleep=sleeps)
    assert caught.value.status == code and sleeps == []
    assert not isinstance(caught.value, CrdMissingError)


def test_a_dropped_connection_is_retried(fake_kube, core, sleeps):
    fake_kube.create(pod("p"))
    fake_kube.drop_next("GET", path_contains="/pods/p", times=2)
    got = call("reading pod default/p", core.read_namespaced_pod, "p", "default", backoff=FAST, sleep=sleeps)
    assert got.metadata.name == "p" and len(sleeps) == 2


def test_an_unreachable_server_is_reported_after_the_attempts(sleeps):
    with FakeKubeAPI() as gone:
        url = gone.url
    configuration = k8s.Configuration(host=url)
    configuration.retries = 0
    api = k8s.ApiClient(configuration)
    try:
        with pytest.raises(KubernetesApiError, match="cannot reach the API server after 4 attempts") as caught:
            call("listing pods", k8s.CoreV1Api(api).list_namespaced_pod, "default", backoff=FAST, sleep=sleeps)
    finally:
        api.close()
    assert caught.value.status is None and len(sleeps) == 3


@pytest.mark.parametrize(("plural", "group", "controller"), [
    ("mpijobs", "kubeflow.org", "MPI Operator"),
    ("seldondeployments", "machinelearning.seldon.io", "Seldon Core v1 operator"),
])
def test_a_missing_crd_names_the_controller_to_install(kube_client, plural, group, controller, sleeps):
    with FakeKubeAPI(crds=()) as bare:
        kube_client.configuration.host = bare.url
        custom = k8s.CustomObjectsApi(kube_client)
        version = "v2beta1" if plural == "mpijobs" else "v1"
        with pytest.raises(CrdMissingError, match=f"does not know the {group} API: .*{controller}") as caught:
            call("creating it", custom.create_namespaced_custom_object, group, version, "default", plural,
                 {"apiVersion": f"{group}/{version}", "metadata": {"name": "x"}}, api_group=group, backoff=FAST,
                 sleep=sleeps)
    assert caught.value.status == 404 and not caught.value.not_found and sleeps == []  # the type is missing, not x


def test_a_missing_object_is_not_a_missing_crd(fake_kube, kube_client, sleeps):
    custom = k8s.CustomObjectsApi(kube_client)
    with pytest.raises(KubernetesApiError) as caught:
        call("reading MPIJob default/x", custom.get_namespaced_custom_object, "kubeflow.org", "v2beta1", "default",
             "mpijobs", "x", api_group="kubeflow.org", backoff=FAST, sleep=sleeps)
    assert caught.value.status == 404 and not isinstance(caught.value, CrdMissingError) and caught.value.not_found
    assert '"x" not found' in str(caught.value)


LABELS = owner_labels("dag", "train", "manual__1")


def _create_or_adopt(core, manifest, labels=LABELS, sleeps=None):
    name = manifest["metadata"]["name"]
    return create_or_adopt(f"creating pod default/{name}", lambda: core.create_namespaced_pod("default", manifest),
                           lambda: core.read_namespaced_pod(name, "default"), labels, backoff=FAST,
                           sleep=sleeps or Sleeps())


def test_create_then_adopt_on_a_retry(fake_kube, core):
    first, adopted = _create_or_adopt(core, pod("step-1", LABELS))
    assert not adopted
    again, adopted = _create_or_adopt(core, pod("step-1", LABELS))
    assert adopted and again.metadata.uid == first.metadata.uid
    assert len(fake_kube.list_objects("pods")) == 1


def test_an_object_of_someone_else_is_not_adopted(fake_kube, core):
    fake_kube.create(pod("step-1", {"app": "other"}))
    with pytest.raises(KubernetesApiError, match="already exists and was not made by this task") as caught:
        _create_or_adopt(core, pod("step-1", LABELS))
    assert caught.value.status == 409


def test_a_create_whose_answer_was_lost_adopts_what_it_created(fake_kube, core):
    """The POST reaches the server, the answer is lost; the retried POST answers 409: adopt, do not fail."""
    fake_kube.before_next("POST", lambda fake: fake.create(pod("step-1", LABELS)), path_contains="/pods")
    fake_kube.drop_next("POST", path_contains="/pods")
    got, adopted = _create_or_adopt(core, pod("step-1", LABELS))
    assert adopted and got.metadata.name == "step-1"
    assert len(fake_kube.list_objects("pods")) == 1


def test_names_and_labels_are_deterministic_and_valid():
    name = object_name("tfx-tfx.run_node-1", "mlops_train_deploy", "Trainer", "manual__2026-11-27T08:00:00+00:00")
    assert name == object_name("tfx-tfx.run_node-1", "mlops_train_deploy", "Trainer",
                               "manual__2026-11-27T08:00:00+00:00")
    assert name != object_name("tfx-tfx.run_node-1", "mlops_train_deploy", "Trainer", "manual__other")
    assert len(name) <= 63 and name.replace("-", "").isalnum() and name == name.lower()
    labels = owner_labels("d" * 100, "weird task/id!", "scheduled__2026")
    assert all(len(v) <= 63 for v in labels.values())
    k8s.ApiClient().sanitize_for_serialization(k8s.V1ObjectMeta(labels=labels))
    assert is_ours({"metadata": {"labels": {**labels, "extra": "x"}}}, labels)
    assert not is_ours({"metadata": {"labels": {}}}, labels)


def test_acall_retries_with_the_asyncio_client(fake_kube):
    from kubernetes_asyncio import client as aio

    fake_kube.create(pod("p"))
    fake_kube.fail_next("GET", 503, "unavailable", times=2)

    async def read():
        async with aio.ApiClient(aio.Configuration(host=fake_kube.url)) as api:
            return await acall("reading pod default/p", aio.CoreV1Api(api).read_namespaced_pod, "p", "default",
                               backoff=FAST)

    assert asyncio.run(read()).metadata.name == "p"
    assert len(fake_kube.requests_of("GET", "/pods/p")) == 3


@pytest.mark.parametrize(("answers", "expected", "sleeps_taken"), [
    ([True, True, False], True, 2),  # gone after two polls
    ([True] * 100, False, None),  # still there when the time is up
])
def test_wait_gone_polls_until_the_object_is_gone_or_the_time_is_up(answers, expected, sleeps_taken):
    polls, slept = iter(answers), []
    gone = wait_gone(lambda: next(polls), timeout=0.05, poll=0.01, sleep=lambda s: (slept.append(s), time.sleep(s)))
    assert gone is expected
    if sleeps_taken is not None:
        assert slept == [0.01] * sleeps_taken
