"""Runtime steps as pods: the manifest, and :class:`PodStepRunner` through the cncf provider's PodManager.

Against the FAKE Kubernetes API server (tests/kubernetes/fake_api.py), through the real client. Its
kubelet runs the pod's command as a local process: the real step entrypoint, in its pod form
(request from the environment, result on stdout), with this repository on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from kubernetes import client as k8s

from airflow_mlops.kubernetes.api import Backoff, owner_labels
from airflow_mlops.kubernetes.pods import CONTAINER, PodSettings, PodStepError, PodStepRunner, step_pod
from airflow_mlops.runtimes.contract import REQUEST_ENV, StepRequest
from tests.kubernetes.fake_api import LocalProcessKubelet, PodRun, ScriptedKubelet, use_local_python

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LABELS = owner_labels("dag", "task", "manual__1")
SETTINGS = PodSettings(namespace="default", image="airflow-mlops-tfx:0.1.0")


def manifest(name: str = "step-1", step: str = "runtime.info", settings: PodSettings = SETTINGS, **params) -> dict:
    return step_pod(name, StepRequest(step=step, params=params), settings, labels=LABELS, run_id="manual__1")


@pytest.fixture
def local_kubelet(fake_kube):
    """Pods run the real entrypoint as local processes (this interpreter, this repository)."""
    fake_kube.kubelet = LocalProcessKubelet(env={"PYTHONPATH": REPO}, rewrite=use_local_python())
    return fake_kube


@pytest.fixture
def runner(kube_client) -> PodStepRunner:
    return PodStepRunner(k8s.CoreV1Api(kube_client), prefix="[tfx] ", poll_interval=0.05,
                         backoff=Backoff(attempts=3, initial=0.01, maximum=0.05))


def test_the_manifest_is_a_valid_pod():
    settings = PodSettings(
        namespace="mlops", image="registry/airflow-mlops-tfx:0.1.0", service_account="airflow-mlops",
        volume_claim="airflow-mlops-data", mount_path="/srv/mlops",
        resources={"requests": {"cpu": "2", "memory": "4Gi"}}, node_selector={"pool": "ml"},
        tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
    )
    body = manifest(settings=settings)
    model = k8s.ApiClient()._ApiClient__deserialize(body, "V1Pod")  # the client's own model: no field lost
    assert k8s.ApiClient().sanitize_for_serialization(model) == body
    container = body["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "airflow_mlops.runtime_side.entrypoint", "--request-env",
                                    REQUEST_ENV, "--result-stdout"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert StepRequest.from_dict(json.loads(env[REQUEST_ENV])).step == "runtime.info"
    assert container["volumeMounts"] == [{"name": "mlops-data", "mountPath": "/srv/mlops"}]
    assert body["spec"]["volumes"][0]["persistentVolumeClaim"] == {"claimName": "airflow-mlops-data"}
    assert body["spec"]["restartPolicy"] == "Never" and body["spec"]["securityContext"]["runAsNonRoot"]
    assert body["metadata"]["labels"] == LABELS


@pytest.mark.parametrize(("change", "message"), [
    ({"image": ""}, "no image is configured"),
    ({"on_finish_action": "delete_everything"}, "on_finish_action: must be one of"),
    ({"volume_claim": "data", "mount_path": None}, "needs an absolute mount path"),
])
def test_bad_settings_are_named(change, message):
    settings = PodSettings(**{**SETTINGS.__dict__, **change})
    with pytest.raises(PodStepError, match=message):
        manifest(settings=settings)


def test_a_step_runs_as_a_pod_and_its_result_comes_back(local_kubelet, runner, capsys):
    result = runner.run(manifest(packages=["kubernetes"], sleep=1), LABELS)
    assert result.succeeded
    assert result.outputs["packages"]["kubernetes"]  # ran in the "image" (here: this interpreter)
    logged = capsys.readouterr().out  # PodManager's log lines (Airflow's logging writes them to stdout)
    assert "[tfx] runtime.info: sleeping, 1 s" in logged  # the pod's log, streamed
    assert "[tfx] (the step's result: " in logged and "AIRFLOW_MLOPS_RESULT" not in logged
    assert local_kubelet.list_objects("pods") == []  # deleted on success (delete_succeeded_pod)


def test_a_failed_step_returns_its_error_and_keeps_the_pod(local_kubelet, runner):
    result = runner.run(manifest(step="no.such.step"), LABELS)
    assert result.status == "failed" and "unknown step 'no.such.step'" in result.error["message"]
    assert [p["status"]["phase"] for p in local_kubelet.list_objects("pods")] == ["Failed"]  # exit 1: kept


def test_a_pod_that_dies_without_a_result_says_how(local_kubelet, runner):
    with pytest.raises(PodStepError, match=r"ended \(phase Failed, exit code 3 \(Error\)\) without a usable result"
                                           r"[\s\S]*runtime.info: sleeping, 1 s") as caught:
        runner.run(manifest(sleep=1, exit=3), LABELS)
    assert "no result line" in str(caught.value)
    assert [p["status"]["phase"] for p in local_kubelet.list_objects("pods")] == ["Failed"]  # kept to inspect


@pytest.mark.parametrize("action, kept", [("delete_pod", 0), ("keep_pod", 1)])
def test_on_finish_action(local_kubelet, runner, action, kept):
    runner.run(manifest(), LABELS, on_finish_action=action)
    assert len(local_kubelet.list_objects("pods")) == kept


def test_an_image_that_cannot_be_pulled_fails_fast_with_the_reason(fake_kube, runner):
    fake_kube.kubelet = ScriptedKubelet(pods={"step-*": PodRun(pending_reason="ErrImagePull")})
    with pytest.raises(PodStepError, match=r"did not start \(deleted\): .*ErrImagePull"):
        runner.run(manifest(), LABELS, startup_timeout=30)
    assert fake_kube.list_objects("pods") == []  # it would otherwise run the step later, unseen


def test_an_unschedulable_pod_times_out_with_the_schedulers_message(fake_kube, runner):
    fake_kube.kubelet = ScriptedKubelet(
        pods={"step-*": PodRun(unschedulable="0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")})
    with pytest.raises(PodStepError, match=r"did not start \(deleted\): .*too long.*Insufficient nvidia.com/gpu"):
        runner.run(manifest(), LABELS, startup_timeout=1)
    assert fake_kube.list_objects("pods") == []


def test_a_retry_reads_the_result_of_a_pod_that_already_succeeded(local_kubelet, runner):
    runner.run(manifest(), LABELS, on_finish_action="keep_pod")  # the earlier try: its worker died after this
    posts = len(local_kubelet.requests_of("POST", "/pods"))
    result = runner.run(manifest(), LABELS)
    assert result.succeeded
    assert len(local_kubelet.requests_of("POST", "/pods")) == posts + 1  # the create answered 409: adopted
    assert local_kubelet.list_objects("pods") == []


def test_a_retry_reattaches_to_a_running_pod(fake_kube, runner):
    fake_kube.kubelet = ScriptedKubelet(pods={"step-*": PodRun(
        logs=["working", 'AIRFLOW_MLOPS_RESULT {"contract_version": 1, "status": "succeeded", "outputs": {"n": 7}}'],
        interval=0.5)})
    fake_kube.create(manifest())  # started by the earlier try
    result = runner.run(manifest(), LABELS)
    assert result.outputs == {"n": 7}
    assert len(fake_kube.list_objects("pods")) == 0


def test_a_retry_replaces_a_pod_that_failed(local_kubelet, runner):
    with pytest.raises(PodStepError):
        runner.run(manifest(exit=3), LABELS)
    uid = local_kubelet.list_objects("pods")[0]["metadata"]["uid"]
    result = runner.run(manifest(), LABELS)  # the retry runs the step again
    assert result.succeeded
    deletes = local_kubelet.requests_of("DELETE", "/pods/step-1")
    assert deletes and uid not in [p["metadata"]["uid"] for p in local_kubelet.list_objects("pods")]


def test_a_pod_of_someone_else_with_the_same_name_is_not_touched(fake_kube, runner):
    fake_kube.create({**manifest(), "metadata": {"name": "step-1", "labels": {"app": "theirs"}}})
    with pytest.raises(PodStepError, match="not made by this task"):
        runner.run(manifest(), LABELS)
    assert fake_kube.read("pods", "default", "step-1") is not None


def test_kill_deletes_the_running_pod(local_kubelet, runner):
    errors: list[BaseException] = []

    def run():
        try:
            runner.run(manifest(sleep=60), LABELS)
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 20
    while runner.current is None or not local_kubelet.list_objects("pods") or \
            local_kubelet.list_objects("pods")[0]["status"].get("phase") != "Running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    runner.kill()
    thread.join(30)
    assert not thread.is_alive()
    assert local_kubelet.requests_of("DELETE", "/pods/step-1")
    assert errors  # the step did not succeed


def test_api_faults_while_following_are_survived(local_kubelet, runner):
    local_kubelet.fail_next("GET", 500, "etcdserver: leader changed", path_contains="/pods/step-1", skip=2)
    local_kubelet.fail_next("GET", 429, "slow down", path_contains="/pods/step-1", skip=4, retry_after=1)
    assert runner.run(manifest(sleep=1), LABELS).succeeded


def test_collect_reads_a_finished_pod(local_kubelet, runner):
    local_kubelet.create(manifest())
    deadline = time.monotonic() + 20
    while local_kubelet.read("pods", "default", "step-1")["status"].get("phase") != "Succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    result = runner.collect("step-1", "default")
    assert result.succeeded and local_kubelet.list_objects("pods") == []
    assert CONTAINER == "step"


def test_collect_of_a_pod_that_is_gone_says_so_as_a_step_error(fake_kube, runner):
    """A deferred task resuming after someone deleted its pod: the API's 404, as the step's error."""
    with pytest.raises(PodStepError, match="step-1") as raised:
        runner.collect("step-1", "default")
    assert raised.value.status == 404


def test_a_pod_killed_by_its_memory_limit_names_the_limit_and_the_setting(fake_kube, runner):
    fake_kube.kubelet = ScriptedKubelet(["loading"], exit_code=137, reason="OOMKilled")
    settings = PodSettings(namespace="default", image="airflow-mlops-tfx:0.1.0",
                           resources={"limits": {"memory": "512Mi"}})
    with pytest.raises(PodStepError) as failed:
        runner.run(manifest(settings=settings), LABELS)
    assert failed.value.fault == "OOMKilled"
    message = str(failed.value)
    assert "killed by its memory limit (OOMKilled, limits.memory=512Mi)" in message, message
    assert "kubernetes_resources" in message and "not retried" in message and "loading" in message


def test_a_pod_past_its_deadline_is_stopped_and_says_so(fake_kube, runner):
    fake_kube.kubelet = ScriptedKubelet(pods={"*": PodRun(logs=["working"], run_until_deleted=True)})
    body = step_pod("step-1", StepRequest(step="runtime.info"), SETTINGS, labels=LABELS, run_id="manual__1",
                    timeout=1)
    with pytest.raises(PodStepError) as failed:
        runner.run(body, LABELS)
    assert failed.value.fault == "DeadlineExceeded"
    assert "DeadlineExceeded: activeDeadlineSeconds=1" in str(failed.value) and "step_timeout" in str(failed.value)
    pod = fake_kube.read("pods", "default", "step-1")
    assert pod["status"]["phase"] == "Failed" and pod["status"]["reason"] == "DeadlineExceeded"


def test_only_a_memory_kill_fails_the_task_without_retries():
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_mlops.exceptions import limit_failure

    assert issubclass(limit_failure("OOMKilled"), AirflowFailException)
    assert not issubclass(limit_failure("DeadlineExceeded"), AirflowFailException)
    assert not issubclass(limit_failure(None), AirflowFailException)
