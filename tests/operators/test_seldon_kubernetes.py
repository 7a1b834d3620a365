"""The Seldon operators with backend = kubernetes: Airflow connection → KubernetesHook → real client.

The Kubernetes API is FAKE here (tests/serving/fake_kube_api.py: an HTTP server speaking the
custom-objects API, with a scripted Seldon controller); everything on this side of HTTP is real.
"""

from __future__ import annotations

import json
import re

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_mlops.exceptions import InvalidArgumentError, MlopsException
from airflow_mlops.hooks.seldon import SeldonDeployError, SeldonHook
from airflow_mlops.operators.seldon import (
    SeldonDeployOperator,
    SeldonPromoteOperator,
    SeldonRollbackOperator,
    SeldonUndeployOperator,
)
from airflow_mlops.serving.backends import (
    DeploymentResult,
    LocalServerBackend,
    SeldonDeploymentBackend,
    UnsupportedOperation,
)
from tests.conftest import CRD_DIR, HAVE_CRDS
from tests.serving.fake_kube_api import FakeKubeAPI

ROOT = "gs://models/taxi"


@pytest.fixture
def cluster(clean_mlops_env, tmp_path):
    """A FAKE API server, an Airflow Kubernetes connection to it, and backend = kubernetes."""
    with FakeKubeAPI(stale_polls=0, creating_polls=1) as server:
        kube_config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": server.url}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "robot", "namespace": "mlops"}}],
            "users": [{"name": "robot", "user": {"token": "not-a-secret"}}],
        }
        conn = {"conn_type": "kubernetes", "extra": {"kube_config": json.dumps(kube_config), "namespace": "mlops"}}
        clean_mlops_env.setenv("AIRFLOW_CONN_K8S_FAKE", json.dumps(conn))
        clean_mlops_env.setenv("AIRFLOW__MLOPS__BACKEND", "kubernetes")
        clean_mlops_env.setenv("AIRFLOW__MLOPS__KUBERNETES_CONN_ID", "k8s_fake")
        clean_mlops_env.setenv("AIRFLOW__MLOPS__STATE_DIR", str(tmp_path / "state"))
        if HAVE_CRDS:
            clean_mlops_env.setenv("AIRFLOW__MLOPS__SELDON_CRD_PATH", str(CRD_DIR))
        yield server


def deploy(version, **kwargs):
    return SeldonDeployOperator(task_id="deploy", deployment_name="taxi", model_root=kwargs.pop("root", ROOT),
                                model_version=version, poll_interval=0.01, timeout=5, **kwargs).execute({})


def test_deploy_creates_a_seldondeployment_and_waits_for_available(cluster):
    result = deploy(3)
    assert result == DeploymentResult(name="taxi", backend="kubernetes", version=3, namespace="mlops",
                                      traffic={"v3": 100}).as_dict()  # the keys every backend returns
    posts = cluster.requests_of("POST")
    assert len(posts) == 1 and posts[0].path == "/apis/machinelearning.seldon.io/v1/namespaces/mlops/seldondeployments"
    predictor = posts[0].body["spec"]["predictors"][0]
    assert predictor["graph"]["implementation"] == "TENSORFLOW_SERVER"
    assert predictor["graph"]["modelUri"] == "gs://models/taxi/3"


def test_canary_then_promote(cluster):
    deploy(3)
    assert deploy(4, canary_traffic=10)["traffic"] == {"v3": 90, "v4": 10}
    promoted = SeldonPromoteOperator(task_id="promote", deployment_name="taxi", model_version=4, poll_interval=0.01,
                                     timeout=5).execute({})
    assert promoted["traffic"] == {"v4": 100}
    last_put = cluster.requests_of("PUT")[-1].body
    assert [p["name"] for p in last_put["spec"]["predictors"]] == ["v4"]


def test_failed_rollout_restores_the_previous_spec_and_fails_the_task(cluster):
    deploy(3)
    before = cluster.requests_of("POST")[0].body["spec"]
    with pytest.raises(SeldonDeployError, match="Failed") as info:
        deploy(5, root="gs://models/broken")
    assert "restored the previous spec" in str(info.value)
    assert cluster.requests_of("PUT")[-1].body["spec"] == before


def test_pushed_models_on_the_volume_claim_are_served_from_it(cluster, clean_mlops_env, tmp_path):
    """The template DAG's deploy (pipeline_name, no model_root): the claim holding the state directory."""
    clean_mlops_env.setenv("AIRFLOW__MLOPS__KUBERNETES_VOLUME_CLAIM", "airflow-mlops-data")
    SeldonDeployOperator(task_id="deploy", deployment_name="taxi", pipeline_name="chicago_taxi", model_version=3,
                         poll_interval=0.01, timeout=5).execute({})
    predictor = cluster.requests_of("POST")[0].body["spec"]["predictors"][0]
    assert predictor["graph"]["modelUri"] == "pvc://airflow-mlops-data/models/chicago_taxi/3"


def test_without_seldon_core_the_task_says_what_to_install(cluster):
    cluster.unregister_crd("seldondeployments")
    with pytest.raises(SeldonDeployError, match="does not know the machinelearning.seldon.io API: the Seldon Core v1 "
                                                "operator"):
        deploy(3)


@pytest.mark.parametrize("operation", ["undeploy", "status"])
def test_without_seldon_core_other_operations_say_what_to_install_not_that_nothing_is_deployed(cluster, operation):
    """The API's 404 for a missing CRD is not "no such deployment": an undeploy must not report it stopped."""
    deploy(3)
    cluster.unregister_crd("seldondeployments")
    with pytest.raises(SeldonDeployError, match="does not know the machinelearning.seldon.io API: the Seldon Core v1 "
                                                "operator"):
        if operation == "undeploy":
            SeldonUndeployOperator(task_id="u", deployment_name="taxi").execute({})
        else:
            SeldonHook().get_deployment("taxi")


def test_undeploy_deletes_it(cluster):
    deploy(3)
    result = SeldonUndeployOperator(task_id="u", deployment_name="taxi").execute({})
    assert result["name"] == "taxi" and result["stopped"] is True and result["backend"] == "kubernetes"
    assert [r.method for r in cluster.requests_of("DELETE")] == ["DELETE"]


@pytest.mark.parametrize("make, message", [
    (lambda: SeldonDeployOperator(task_id="d", deployment_name="taxi", pipeline_name="taxi", model_version=1),
     "is a path on the Airflow worker that no model server in the cluster can read"),
    (lambda: SeldonDeployOperator(task_id="d", deployment_name="taxi", model_root=ROOT), "must be a number"),
    (lambda: SeldonDeployOperator(task_id="d", deployment_name="taxi", model_root="/srv/models", model_version=1),
     "kubernetes_volume_claim"),
    (lambda: SeldonRollbackOperator(task_id="r", deployment_name="taxi"),
     "the kubernetes deployment backend cannot roll back: deploy the earlier version"),
])
def test_kubernetes_argument_errors_before_any_request(cluster, make, message):
    with pytest.raises(InvalidArgumentError, match=message):
        make().execute({})
    assert cluster.requests_of("POST") == [] and cluster.requests_of("PUT") == []


@pytest.mark.parametrize("make, operation", [
    (lambda root: SeldonDeployOperator(task_id="d", deployment_name="taxi", model_root=root, model_version=1,
                                       canary_traffic=10), "run a canary or a shadow (canary_traffic, shadow)"),
    (lambda root: SeldonDeployOperator(task_id="d", deployment_name="taxi", model_root=root, model_version=1,
                                       shadow=True), "run a canary or a shadow (canary_traffic, shadow)"),
    (lambda root: SeldonPromoteOperator(task_id="p", deployment_name="taxi", model_version=2), "promote a canary"),
])
def test_what_a_local_deployment_cannot_do_is_refused_in_one_shape(clean_mlops_env, tmp_path, make, operation):
    clean_mlops_env.setenv("AIRFLOW__MLOPS__STATE_DIR", str(tmp_path))
    with pytest.raises(UnsupportedOperation, match="^" + re.escape(f"the local deployment backend cannot {operation}: ")) as caught:
        make(str(tmp_path)).execute({})
    assert caught.value.backend == "local"
    assert isinstance(caught.value, AirflowFailException)  # not retried


def test_the_backend_is_chosen_once_from_the_settings(cluster, clean_mlops_env, tmp_path):
    assert type(SeldonHook().deployments) is SeldonDeploymentBackend
    clean_mlops_env.setenv("AIRFLOW__MLOPS__BACKEND", "local")
    assert type(SeldonHook().deployments) is LocalServerBackend
    clean_mlops_env.setenv("AIRFLOW__MLOPS__BACKEND", "nomad")
    with pytest.raises(MlopsException, match="backend must be one of .*got 'nomad'"):
        SeldonHook().deployments


def test_sensor_and_its_trigger_on_kubernetes(cluster):
    import asyncio

    from airflow_mlops.sensors.seldon import SeldonDeploymentSensor
    from airflow_mlops.triggers.seldon import SeldonDeploymentKubernetesTrigger

    deploy(3)
    assert SeldonDeploymentSensor(task_id="s", deployment_name="taxi").poke({}) is True

    async def first_event(trigger):
        async for event in trigger.run():
            return event.payload

    event = asyncio.run(first_event(SeldonDeploymentKubernetesTrigger("taxi", "mlops", "k8s_fake", poll_interval=0.01,
                                                                       timeout=5)))
    assert event["status"] == "success" and event["state"] == "Available"
    missing = asyncio.run(first_event(SeldonDeploymentKubernetesTrigger("ghost", "mlops", "k8s_fake",
                                                                         poll_interval=0.01, timeout=0.2)))
    assert missing["status"] == "timeout"
    classpath, kwargs = SeldonDeploymentKubernetesTrigger("taxi", "mlops", "k8s_fake").serialize()
    assert classpath == "airflow_mlops.triggers.seldon.SeldonDeploymentKubernetesTrigger"
    assert kwargs == {"name": "taxi", "namespace": "mlops", "kubernetes_conn_id": "k8s_fake", "poll_interval": 5.0,
                      "timeout": 600.0}
    assert SeldonDeploymentKubernetesTrigger(**kwargs).name == "taxi"


def test_shadow_adds_the_new_version_without_traffic(cluster):
    deploy(3)
    result = deploy(4, shadow=True)
    assert result["traffic"] == {"v3": 100, "v4": 0}
    predictors = cluster.requests_of("PUT")[-1].body["spec"]["predictors"]
    assert [(p["name"], p.get("shadow", False)) for p in predictors] == [("v3", False), ("v4", True)]


@pytest.mark.parametrize("existing", [False, True], ids=["new deployment", "update"])
def test_on_kill_during_the_rollout_undoes_it(cluster, existing):
    import threading
    import time

    if existing:
        deploy(3)
    before = cluster.read("seldondeployments", "mlops", "taxi")
    op = SeldonDeployOperator(task_id="deploy", deployment_name="taxi", model_root="gs://models/stuck",
                              model_version=4, poll_interval=0.01, timeout=30)
    errors: list[BaseException] = []
    thread = threading.Thread(target=lambda: _run(op, errors))
    thread.start()
    deadline = time.monotonic() + 10
    while not (op.hook.__dict__.get("kube") and op.hook.kube.in_progress):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    op.on_kill()
    after = cluster.read("seldondeployments", "mlops", "taxi")
    if existing:
        assert after["spec"] == before["spec"]  # version 3 again
    else:
        assert after is None  # the deployment this task created is gone
    thread.join(40)


def _run(op, errors):
    try:
        op.execute({})
    except BaseException as err:  # noqa: BLE001 - the killed rollout fails (or times out)
        errors.append(err)


def test_the_projects_server_image_logs_predictions_on_the_claim_for_monitoring(cluster, clean_mlops_env, tmp_path):
    """kubernetes_serving_image: the project's model server, the claim mounted at the state directory."""
    from airflow_mlops.hooks.seldon import SeldonHook
    from airflow_mlops.serving.manifest import validate_manifest

    state = tmp_path / "state"
    clean_mlops_env.setenv("AIRFLOW__MLOPS__KUBERNETES_VOLUME_CLAIM", "airflow-mlops-data")
    clean_mlops_env.setenv("AIRFLOW__MLOPS__KUBERNETES_SERVING_IMAGE", "registry.example/airflow-mlops-serving:0.1.0")
    SeldonDeployOperator(task_id="deploy", deployment_name="taxi", pipeline_name="chicago_taxi", model_version=3,
                         poll_interval=0.01, timeout=5).execute({})
    body = cluster.requests_of("POST")[0].body
    if HAVE_CRDS:
        validate_manifest(body, CRD_DIR)
    pod = body["spec"]["predictors"][0]["componentSpecs"][0]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert container["image"] == "registry.example/airflow-mlops-serving:0.1.0"
    assert env == {"MODEL_URI": f"{state}/models/chicago_taxi/3", "MODEL_VERSION": "3", "DEPLOYMENT_NAME": "taxi",
                   "PREDICTION_LOG": f"{state}/predictions/taxi"}
    assert container["volumeMounts"] == [{"name": "mlops-data", "mountPath": str(state)}]
    assert pod["volumes"] == [{"name": "mlops-data", "persistentVolumeClaim": {"claimName": "airflow-mlops-data"}}]

    # monitoring reads what the SeldonDeployment says: version, model directory, prediction log
    record = SeldonHook().get_deployment("taxi")
    assert (record.version, record.model_path, record.model_root, record.prediction_log, record.status) == (
        3, f"{state}/models/chicago_taxi/3", f"{state}/models/chicago_taxi", f"{state}/predictions/taxi", "available")

    # health is judged from the prediction log the server wrote on the claim
    from datetime import datetime, timezone

    log_dir = state / "predictions" / "taxi"
    log_dir.mkdir(parents=True)
    now = datetime.now(timezone.utc).isoformat()
    lines = [{"ts": now, "ms": 12.0}] * 40 + [{"ts": now, "status": 500, "error": "boom", "ms": 3.0}] * 10
    (log_dir / "pod-1.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    from airflow_mlops.exceptions import MlopsException
    from airflow_mlops.operators.seldon import SeldonHealthCheckOperator

    with pytest.raises(MlopsException, match=r"error rate 20.0% > 1.0% \(10 of 50 requests failed"):
        SeldonHealthCheckOperator(task_id="health", deployment_name="taxi").execute({})


def test_monitoring_a_prepackaged_server_says_what_to_change(cluster):
    from airflow_mlops.operators.drift import DriftDetectionOperator

    deploy(3)
    with pytest.raises(InvalidArgumentError, match="logs no predictions to check: on Kubernetes serve it with the "
                                                   "project's model-server image"):
        DriftDetectionOperator(task_id="drift", deployment_name="taxi").execute({"run_id": "r"})
