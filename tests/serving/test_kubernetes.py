"""SeldonKubernetesController through the real kubernetes client, against a FAKE API server.

Only the Kubernetes API is faked (``fake_kube_api.FakeKubeAPI``, at the HTTP level);
the client, the manifests and the CRD validation are real. The CRD is read from
``../shared/k8s-crds/`` next to the repository; tests that need it skip without it.
"""

from __future__ import annotations

import copy

import pytest
from kubernetes.client import ApiClient, Configuration, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from airflow_mlops.kubernetes.api import Backoff
from airflow_mlops.serving.kubernetes import SeldonKubernetesController, SeldonKubernetesError, spec_from_manifest
from airflow_mlops.serving.manifest import (
    MODEL_VERSION_LABEL,
    DeploymentSpec,
    ManifestError,
    PredictorSpec,
    build_manifest,
    canary,
    promote,
    shadow,
    validate_manifest,
)
from tests.serving.fake_kube_api import GROUP, PLURAL, FakeKubeAPI

ITEM = f"/apis/{GROUP}/v1/namespaces/serving/{PLURAL}/taxi"
COLLECTION = f"/apis/{GROUP}/v1/namespaces/serving/{PLURAL}"


class FakeTime:
    """A clock that moves only when slept on."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now



@pytest.fixture
def kube():
    """The FAKE API server and a real ``ApiClient`` pointed at it."""
    with FakeKubeAPI() as server:
        client = ApiClient(Configuration(host=server.url))
        try:
            yield server, client
        finally:
            client.close()


@pytest.fixture
def server(kube) -> FakeKubeAPI:
    return kube[0]


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def controller(kube, fake_time) -> SeldonKubernetesController:
    return SeldonKubernetesController(kube[1], sleep=fake_time.sleep, clock=fake_time.clock)


@pytest.fixture
def v3() -> PredictorSpec:
    return PredictorSpec("v3", 3, "gs://models/taxi/3")


@pytest.fixture
def v4() -> PredictorSpec:
    return PredictorSpec("v4", 4, "gs://models/taxi/4", replicas=2)


@pytest.fixture
def deployed(v3) -> DeploymentSpec:
    return DeploymentSpec("taxi", "serving", [v3])


@pytest.fixture
def live(server, deployed) -> dict:
    """``deployed`` already running in the fake cluster (generation 1, Available)."""
    return server.seed(build_manifest(deployed))


def _deploy(controller, spec, crd=None, timeout=60.0):
    return controller.deploy(spec, crd_path=crd, timeout=timeout, poll_interval=5)


def _traffic(obj: dict) -> dict[str, int]:
    return {p["name"]: p["traffic"] for p in obj["spec"]["predictors"]}


# ----------------------------------------------------------------------- apply / deploy


def test_deploy_creates_when_absent(controller, server, deployed, crd, fake_time) -> None:
    obj = _deploy(controller, deployed, crd)
    assert [(r.method, r.path) for r in server.requests[:2]] == [("GET", ITEM), ("POST", COLLECTION)]
    (post,) = server.requests_of("POST")
    assert post.body == build_manifest(deployed)
    validate_manifest(post.body, crd)
    assert obj["status"] == {"state": "Available", "description": "", "observedGeneration": 1}
    assert server.objects["serving", "taxi"]["spec"] == build_manifest(deployed)["spec"]
    assert fake_time.sleeps == [5, 5]  # no status yet, Creating, Available
    assert not server.requests_of("PUT")


def test_deploy_replaces_when_present(controller, server, live, deployed, v3, v4, crd) -> None:
    new = DeploymentSpec("taxi", "serving", [v4], labels={"team": "pricing"})
    obj = _deploy(controller, new, crd)
    (put,) = server.requests_of("PUT")
    assert put.path == ITEM
    assert put.body["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]
    assert put.body["metadata"]["labels"]["team"] == "pricing"
    assert put.body["spec"] == build_manifest(new)["spec"]
    assert "status" not in put.body
    validate_manifest({**put.body, "metadata": {"name": "taxi", "namespace": "serving"}}, crd)
    assert not server.requests_of("POST")
    assert obj["metadata"]["generation"] == 2
    assert obj["status"]["observedGeneration"] == 2
    assert _traffic(obj) == {"v4": 100}


@pytest.mark.parametrize("before", ["Available", "Failed"])
def test_a_stale_status_is_not_taken_for_the_new_spec(controller, server, deployed, v4, fake_time, before) -> None:
    """Right after the PUT the status still describes generation 1."""
    server.seed(build_manifest(deployed), state=before, description="earlier rollout")
    server.stale_polls = 3
    obj = _deploy(controller, DeploymentSpec("taxi", "serving", [v4]))
    assert obj["status"]["state"] == "Available"
    polls = server.requests_of("GET")[1:]  # the first read is apply's
    assert len(polls) == 3 + 1 + 1  # stale, Creating, Available
    assert len(fake_time.sleeps) == 4


def test_apply_without_change_sends_nothing(controller, server, live, deployed) -> None:
    applied, previous = controller.apply(deployed)
    assert applied == previous
    assert applied["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]
    assert [r.method for r in server.requests] == ["GET"]


def test_invalid_spec_fails_before_any_api_call(controller, server, deployed, v4) -> None:
    deployed.predictors.append(v4)  # specs are frozen, their lists are not: 100 + 100 traffic
    with pytest.raises(ManifestError, match="sum to 100"):
        controller.deploy(deployed, crd_path=None, timeout=10, poll_interval=1)
    assert server.requests == []


def test_crd_validation_fails_before_any_api_call(controller, server, deployed, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="CRD not found"):
        controller.apply(deployed, str(tmp_path / "missing.yaml"))
    assert server.requests == []


# ----------------------------------------------------------------------- failures


def test_failed_rollout_restores_the_previous_spec(controller, server, live, crd) -> None:
    broken = DeploymentSpec("taxi", "serving", [PredictorSpec("v4", 4, "gs://models/broken/4")])
    with pytest.raises(SeldonKubernetesError) as caught:
        _deploy(controller, broken, crd)
    message = str(caught.value)
    assert caught.value.state == "Failed"
    assert "SeldonDeployment serving/taxi" in message
    assert "ended Failed: failed to download the model from gs://models/broken/4" in message
    assert "restored the previous spec: v3 (model version 3, 100%)" in message
    first, restore = server.requests_of("PUT")
    assert first.body["spec"] == build_manifest(broken)["spec"]
    assert restore.body["spec"] == live["spec"]
    assert restore.body["metadata"]["resourceVersion"] != live["metadata"]["resourceVersion"]
    validate_manifest(restore.body, crd)
    assert server.objects["serving", "taxi"]["spec"] == live["spec"]
    assert server.objects["serving", "taxi"]["metadata"]["generation"] == 3


def test_timeout_restores_the_previous_spec(controller, server, live, fake_time) -> None:
    stuck = DeploymentSpec("taxi", "serving", [PredictorSpec("v4", 4, "gs://models/stuck/4")])
    with pytest.raises(SeldonKubernetesError, match=r"ended Timeout: still Creating after 30 s") as caught:
        _deploy(controller, stuck, timeout=30)
    assert caught.value.state == "Timeout"
    assert fake_time.now == 30
    assert server.requests_of("PUT")[-1].body["spec"] == live["spec"]
    assert server.objects["serving", "taxi"]["spec"] == live["spec"]


def test_failure_on_first_creation_deletes_the_resource(controller, server) -> None:
    broken = DeploymentSpec("taxi", "serving", [PredictorSpec("v1", 1, "s3://broken/1")])
    with pytest.raises(SeldonKubernetesError, match="ended Failed.*deleted it") as caught:
        _deploy(controller, broken)
    assert caught.value.state == "Failed"
    assert [r.path for r in server.requests_of("DELETE")] == [ITEM]
    assert server.objects == {}
    assert not server.requests_of("PUT")


def test_failed_restore_is_reported(controller, server, live) -> None:
    broken = DeploymentSpec("taxi", "serving", [PredictorSpec("v4", 4, "gs://models/broken/4")])
    server.fail_next("PUT", 403, 'seldondeployments "taxi" is forbidden: User "airflow" cannot update', skip=1)
    with pytest.raises(SeldonKubernetesError, match="ended Failed.*restore FAILED too.*403 Forbidden.*cannot update"):
        _deploy(controller, broken)
    assert len(server.requests_of("PUT")) == 2
    assert server.objects["serving", "taxi"]["spec"] == build_manifest(broken)["spec"]


def test_a_conflict_during_the_restore_is_retried(controller, server, live) -> None:
    broken = DeploymentSpec("taxi", "serving", [PredictorSpec("v4", 4, "gs://models/broken/4")])
    server.before_next(
        "PUT", lambda s: s.modify("serving", "taxi", lambda o: o["metadata"]["labels"].update(x="y")), skip=1
    )
    with pytest.raises(SeldonKubernetesError, match="ended Failed.*restored the previous spec"):
        _deploy(controller, broken)
    rollout, stale, restore = server.requests_of("PUT")
    assert stale.body["spec"] == restore.body["spec"] == live["spec"]
    assert restore.body["metadata"]["labels"]["x"] == "y"
    assert server.objects["serving", "taxi"]["spec"] == live["spec"]


def test_a_conflict_is_retried_once(controller, server, live, v4) -> None:
    def someone_else(s: FakeKubeAPI) -> None:
        s.modify("serving", "taxi", lambda o: o["metadata"].setdefault("annotations", {}).update(owner="ops"))

    server.before_next("PUT", someone_else)
    obj = _deploy(controller, DeploymentSpec("taxi", "serving", [v4]))
    first, second = server.requests_of("PUT")
    assert first.body["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]
    assert second.body["metadata"]["resourceVersion"] != first.body["metadata"]["resourceVersion"]
    assert obj["metadata"]["annotations"] == {"owner": "ops"}  # the other change is kept
    assert _traffic(obj) == {"v4": 100}


def test_a_second_conflict_is_an_error(controller, server, live, v4) -> None:
    def someone_else(s: FakeKubeAPI) -> None:
        s.modify("serving", "taxi", lambda o: o["metadata"]["labels"].update(touched="yes"))

    server.before_next("PUT", someone_else)
    server.before_next("PUT", someone_else)
    with pytest.raises(SeldonKubernetesError, match="409 Conflict.*the object has been modified") as caught:
        _deploy(controller, DeploymentSpec("taxi", "serving", [v4]))
    assert caught.value.status == 409
    assert len(server.requests_of("PUT")) == 2
    assert server.objects["serving", "taxi"]["spec"] == live["spec"]


def test_create_racing_another_client_replaces_instead(controller, server, deployed, v4) -> None:
    server.before_next("POST", lambda s: s.seed(build_manifest(deployed)))
    obj = _deploy(controller, DeploymentSpec("taxi", "serving", [v4]))
    assert [r.method for r in server.requests if r.method != "GET"] == ["POST", "PUT"]
    assert _traffic(obj) == {"v4": 100}


@pytest.mark.parametrize(
    ("method", "code", "message"),
    [
        ("GET", 403, 'seldondeployments.machinelearning.seldon.io "taxi" is forbidden: User "airflow" cannot get'),
        ("POST", 422, 'SeldonDeployment.machinelearning.seldon.io "taxi" is invalid: spec.predictors: Invalid'),
    ],
)
def test_api_errors_become_seldon_errors(controller, server, deployed, method, code, message) -> None:
    server.fail_next(method, code, message)
    with pytest.raises(SeldonKubernetesError) as caught:
        _deploy(controller, deployed)
    assert caught.value.status == code
    assert f"answered {code} " in str(caught.value)
    assert message in str(caught.value)
    assert isinstance(caught.value.__cause__.__cause__, ApiException)


def test_server_errors_and_throttling_are_retried(controller, server, deployed) -> None:
    server.fail_next("POST", 500, "Internal error occurred: failed calling webhook v1.vseldondeployment.kb.io")
    server.fail_next("GET", 429, "too many requests", skip=1)
    obj = _deploy(controller, deployed)
    assert _traffic(obj)
    assert [r.method for r in server.requests].count("POST") == 2


def test_a_server_error_that_persists_is_reported(server, kube, fake_time, deployed) -> None:
    controller = SeldonKubernetesController(kube[1], sleep=fake_time.sleep, clock=fake_time.clock,
                                            backoff=Backoff(attempts=3))
    for _ in range(3):
        server.fail_next("POST", 503, "the server is currently unable to handle the request")
    with pytest.raises(SeldonKubernetesError, match="answered 503 .*unable to handle") as caught:
        _deploy(controller, deployed)
    assert caught.value.status == 503
    assert [r.method for r in server.requests].count("POST") == 3


def test_unreachable_api_server(deployed) -> None:
    with FakeKubeAPI() as gone:
        url = gone.url
    client = ApiClient(Configuration(host=url))
    client.configuration.retries = 0
    try:
        with pytest.raises(SeldonKubernetesError, match="cannot reach the API server") as caught:
            SeldonKubernetesController(client, sleep=lambda _: None).get("taxi", "serving")
    finally:
        client.close()
    assert caught.value.status is None


def test_get_and_delete(controller, server, live) -> None:
    assert controller.get("taxi", "serving")["spec"] == live["spec"]
    assert controller.get("other", "serving") is None
    assert controller.delete("taxi", "serving") is True
    assert controller.delete("taxi", "serving") is False
    assert controller.get("taxi", "serving") is None


def test_wait_on_a_deleted_deployment(controller) -> None:
    with pytest.raises(SeldonKubernetesError, match="deleted during the rollout"):
        controller.wait("taxi", "serving", timeout=10, poll_interval=1)


def test_wait_returns_the_state(controller, server, live, fake_time) -> None:
    assert controller.wait("taxi", "serving", timeout=10, poll_interval=1) == ("Available", "")
    server.modify("serving", "taxi", lambda o: o["spec"]["predictors"][0]["graph"].update(modelUri="gs://broken/3"))
    state, description = controller.wait("taxi", "serving", timeout=10, poll_interval=1, generation=2)
    assert (state, description) == (
        "Failed",
        "failed to download the model from gs://broken/3: storage initializer exited with code 1",
    )
    assert fake_time.sleeps == [1, 1]


# ----------------------------------------------------------------------- canary / promote


def test_canary_then_promote(controller, server, live, v4, crd) -> None:
    obj = controller.canary("taxi", "serving", v4, 10, crd_path=crd, timeout=60, poll_interval=5)
    assert _traffic(obj) == {"v3": 90, "v4": 10}
    canary_put = server.requests_of("PUT")[-1]
    assert _traffic(canary_put.body) == {"v3": 90, "v4": 10}
    assert canary_put.body["spec"]["predictors"][1]["labels"][MODEL_VERSION_LABEL] == "4"
    validate_manifest(canary_put.body, crd)

    obj = controller.promote("taxi", "serving", "v4", crd_path=crd, timeout=60, poll_interval=5)
    promote_put = server.requests_of("PUT")[-1]
    assert _traffic(promote_put.body) == {"v4": 100}
    assert promote_put.body["spec"]["predictors"][0]["replicas"] == 2
    validate_manifest(promote_put.body, crd)
    assert _traffic(server.objects["serving", "taxi"]) == {"v4": 100}
    assert obj["status"]["state"] == "Available"
    assert obj["metadata"]["generation"] == 3


def test_failed_canary_goes_back_to_the_stable_predictor(controller, server, live) -> None:
    broken = PredictorSpec("v4", 4, "gs://models/broken/4")
    with pytest.raises(SeldonKubernetesError, match="rollout of v3 .*90%.*v4 .*10%.*ended Failed"):
        controller.canary("taxi", "serving", broken, 10, timeout=60, poll_interval=5)
    assert _traffic(server.objects["serving", "taxi"]) == {"v3": 100}


def test_canary_needs_a_deployment(controller, server, v4) -> None:
    with pytest.raises(SeldonKubernetesError, match="does not exist; deploy it first") as caught:
        controller.canary("taxi", "serving", v4, 10)
    assert caught.value.status == 404
    assert [r.method for r in server.requests] == ["GET"]


def test_promote_unknown_predictor_sends_no_change(controller, server, live) -> None:
    with pytest.raises(ManifestError, match="has no predictor 'v9'"):
        controller.promote("taxi", "serving", "v9")
    assert [r.method for r in server.requests] == ["GET"]


# ----------------------------------------------------------------------- spec_from_manifest

GPU = PredictorSpec(
    "v5",
    5,
    "s3://models/taxi/5",
    implementation=None,
    image="ghcr.io/example/model-server:1.2",
    resources={"requests": {"cpu": "500m"}, "limits": {"cpu": 2, "nvidia.com/gpu": 1}},
    env={"LOG_LEVEL": "debug"},
    labels={"team": "pricing"},
)
V3 = PredictorSpec("v3", 3, "gs://models/taxi/3", env={"WORKERS": "2"})
V4 = PredictorSpec("v4", 4, "pvc://models/taxi/4", replicas=0)
BASE = DeploymentSpec("taxi", "serving", [V3], annotations={"seldon.io/rest-timeout": "10000"}, labels={"a": "b"})


@pytest.mark.parametrize(
    "spec",
    [
        BASE,
        DeploymentSpec("taxi", "serving", [GPU], protocol="v2"),
        canary(BASE, V4, 10),
        shadow(canary(BASE, V4, 25), GPU),
        promote(canary(BASE, GPU, 10), "v5"),
        DeploymentSpec("taxi", "serving", [V4], protocol="tensorflow"),
    ],
    ids=["prepackaged", "custom-image", "canary", "canary-and-shadow", "promoted", "tensorflow"],
)
def test_spec_from_manifest_round_trips(spec) -> None:
    manifest = build_manifest(spec)
    assert spec_from_manifest(manifest) == spec
    live = copy.deepcopy(manifest)  # as read back: server metadata, status, defaults
    live["metadata"].update(resourceVersion="7", generation=2, uid="u")
    live["status"] = {"state": "Available"}
    live["spec"]["predictors"][0]["graph"]["endpoint"] = {"type": "REST"}
    assert spec_from_manifest(live) == spec
    assert build_manifest(spec_from_manifest(live)) == manifest


def test_spec_from_manifest_defaults_a_lone_predictors_traffic() -> None:
    manifest = build_manifest(BASE)
    del manifest["spec"]["predictors"][0]["traffic"]
    assert spec_from_manifest(manifest).predictors[0].traffic == 100


@pytest.mark.parametrize("label", [None, "latest"])
def test_spec_from_manifest_needs_the_model_version_label(label) -> None:
    manifest = build_manifest(BASE)
    labels = manifest["spec"]["predictors"][0]["labels"]
    if label is None:
        del labels[MODEL_VERSION_LABEL]
    else:
        labels[MODEL_VERSION_LABEL] = label
    with pytest.raises(ManifestError, match=r"predictors\[0\]\.labels.*not a predictor deployed by airflow-mlops"):
        spec_from_manifest(manifest)


# ----------------------------------------------------------------------- the fake itself


def test_the_fake_enforces_resource_versions(kube, live) -> None:
    server, client = kube
    api = CustomObjectsApi(client)
    args = {"group": GROUP, "version": "v1", "namespace": "serving", "plural": PLURAL, "name": "taxi"}
    stale = copy.deepcopy(live)
    server.modify("serving", "taxi", lambda o: o["metadata"]["labels"].update(x="y"))
    with pytest.raises(ApiException) as caught:
        api.replace_namespaced_custom_object(body=stale, **args)
    assert (caught.value.status, caught.value.reason) == (409, "Conflict")
    del stale["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as caught:
        api.replace_namespaced_custom_object(body=stale, **args)
    assert caught.value.status == 422
    current = api.get_namespaced_custom_object(**args)
    current["metadata"]["labels"]["x"] = "z"  # metadata only: no new generation
    after = api.replace_namespaced_custom_object(body=current, **args)
    assert after["metadata"]["generation"] == 1
    assert int(after["metadata"]["resourceVersion"]) > int(current["metadata"]["resourceVersion"])
    listed = api.list_namespaced_custom_object(group=GROUP, version="v1", namespace="serving", plural=PLURAL)
    assert [o["metadata"]["name"] for o in listed["items"]] == ["taxi"]
