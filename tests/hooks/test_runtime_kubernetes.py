"""RuntimeHook with ``backend = kubernetes``: runtime steps as pods, through an Airflow connection.

Against the FAKE Kubernetes API server (tests/kubernetes/fake_api.py); the cncf-kubernetes provider's
``KubernetesHook`` and the real client talk to it. Its kubelet runs the pod's command (the real step
entrypoint) as a local process.
"""

from __future__ import annotations

import json
import os

import pytest

from airflow_mlops.exceptions import InvalidArgumentError, RuntimeStepFailed
from airflow_mlops.hooks.runtime import RuntimeHook
from airflow_mlops.kubernetes.api import owner_labels
from airflow_mlops.runtimes.contract import REQUEST_ENV, StepRequest
from tests.kubernetes.rbac_check import assert_allowed
from tests.kubernetes.fake_api import LocalProcessKubelet, use_local_python

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONTEXT = {"dag_id": "mlops_train_deploy", "task_id": "Transform", "run_id": "manual__1", "try_number": 1}


@pytest.fixture
def hook(fake_kube, kube_conn, clean_mlops_env, tmp_path):
    fake_kube.kubelet = LocalProcessKubelet(env={"PYTHONPATH": REPO}, rewrite=use_local_python())
    return RuntimeHook(runtime="tfx", mlops_conn_id=None, backend="kubernetes", state_dir=str(tmp_path),
                       settings={"kubernetes_conn_id": kube_conn, "kubernetes_namespace": "mlops",
                                 "kubernetes_image": "registry.example/airflow-mlops-{runtime}:{version}",
                                 "kubernetes_service_account": "airflow-mlops",
                                 "kubernetes_volume_claim": "airflow-mlops-data",
                                 "kubernetes_resources": {"requests": {"cpu": "1"}},
                                 "kubernetes_node_selector": '{"pool": "ml"}'})


@pytest.fixture(autouse=True)
def every_request_is_allowed_by_the_role(fake_kube):
    """Whatever these tests make the operators do, the least-privilege Role allows."""
    yield
    assert_allowed(fake_kube)


def test_a_step_runs_as_a_pod_of_the_runtimes_image(hook, fake_kube):
    pods_seen = []
    fake_kube.before_next("POST", lambda fake: pods_seen.append(True), path_contains="/pods")
    outputs = hook.run_step("runtime.info", {"packages": ["kubernetes"]}, context=CONTEXT)
    assert outputs["packages"]["kubernetes"] and pods_seen
    created = fake_kube.requests_of("POST", "/namespaces/mlops/pods")[0].body
    spec = created["spec"]
    assert spec["containers"][0]["image"] == "registry.example/airflow-mlops-tfx:0.1.0"
    assert spec["serviceAccountName"] == "airflow-mlops" and spec["nodeSelector"] == {"pool": "ml"}
    assert spec["volumes"][0]["persistentVolumeClaim"]["claimName"] == "airflow-mlops-data"
    assert spec["containers"][0]["volumeMounts"][0]["mountPath"] == str(hook.state_dir)  # same paths both sides
    assert spec["containers"][0]["resources"] == {"requests": {"cpu": "1"}}
    labels = created["metadata"]["labels"]
    assert owner_labels("mlops_train_deploy", "Transform", "manual__1").items() <= labels.items()
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert StepRequest.from_dict(json.loads(env[REQUEST_ENV])).context["task_id"] == "Transform"
    assert fake_kube.list_objects("pods") == []  # deleted after success


def test_the_nth_call_of_a_step_has_its_own_pod_in_every_try(hook, fake_kube):
    hook.run_step("runtime.info", {}, context=CONTEXT)
    hook.run_step("runtime.info", {}, context=CONTEXT)
    names = [r.body["metadata"]["name"] for r in fake_kube.requests_of("POST", "/pods")]
    assert len(set(names)) == 2
    retry = hook.replace()  # the retry's own hook, same settings
    retry.run_step("runtime.info", {}, context=CONTEXT)
    assert fake_kube.requests_of("POST", "/pods")[-1].body["metadata"]["name"] == names[0]


def test_a_failed_step_raises_the_runtimes_error(hook):
    with pytest.raises(RuntimeStepFailed, match="unknown step 'no.such'"):
        hook.run_step("no.such", {}, context=CONTEXT)


def test_a_step_that_dies_names_the_pod_and_exit_code(hook):
    with pytest.raises(RuntimeStepFailed, match=r"pod mlops/tfx-runtime-info-1-transform-\w+ ended \(phase Failed, "
                                                r"exit code 5"):
        hook.run_step("runtime.info", {"exit": 5}, context=CONTEXT)


def test_start_and_finish_for_deferrable_operators(hook, fake_kube):
    handle = hook.start_step("runtime.info", {"packages": ["six"]}, context=CONTEXT)
    assert handle["runner"] == "pod" and handle["namespace"] == "mlops" and handle["step"] == "runtime.info"
    json.dumps(handle)  # travels through the trigger: primitives only
    import time

    deadline = time.monotonic() + 20
    while fake_kube.read("pods", "mlops", handle["name"])["status"].get("phase") != "Succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    fresh = RuntimeHook(runtime="tfx", mlops_conn_id=None, backend="kubernetes",
                        settings={"kubernetes_conn_id": hook.settings.kubernetes_conn_id})
    outputs = fresh.finish_step(handle)  # a fresh hook (as in a resumed task): the handle is enough
    assert "packages" in outputs and fake_kube.list_objects("pods") == []


def test_a_step_finished_from_its_handle_keeps_the_count_of_the_hooks_pods(hook, fake_kube):
    """The n-th call of a step has its own pod, also when an earlier call was finished from its handle."""
    import time

    handle = hook.start_step("runtime.info", {}, context=CONTEXT)
    deadline = time.monotonic() + 20
    while fake_kube.read("pods", "mlops", handle["name"])["status"].get("phase") != "Succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    hook.finish_step(handle)
    hook.run_step("runtime.info", {}, context=CONTEXT)
    names = [r.body["metadata"]["name"] for r in fake_kube.requests_of("POST", "/pods")]
    assert len(names) == 2 and len(set(names)) == 2, names


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("kubernetes_resources", "{cpu: 1", "kubernetes_resources must be JSON"),
    ("kubernetes_tolerations", '{"key": "x"}', "kubernetes_tolerations must be a JSON list"),
    ("kubernetes_image", '{"serving": "x"}', "names images for \\['serving'\\], not for runtime 'tfx'"),
    ("kubernetes_on_finish_action", "delete_all", "on_finish_action: must be one of"),
    ("kubernetes_startup_timeout", "soon", "kubernetes_startup_timeout must be a number"),
])
def test_wrong_settings_are_named_before_anything_runs(hook, fake_kube, setting, value, message):
    with pytest.raises(InvalidArgumentError, match=message):
        hook.replace(**{setting: value}).run_step("runtime.info", {}, context=CONTEXT)
    assert fake_kube.requests_of("POST", "/pods") == []


def test_a_step_outside_a_task_run_or_with_a_pod_key_never_adopts_another_pod(hook, fake_kube):
    """A step with no task run (the CLI) or a sensor's repeated check: a new pod every time."""
    hook = hook.replace(kubernetes_on_finish_action="keep_pod")  # even when the earlier pod is still there
    hook.run_step("runtime.info", {})
    hook.replace().run_step("runtime.info", {})
    for _ in range(2):
        fresh = hook.replace()
        fresh.run_step("runtime.info", {}, context={**CONTEXT, "pod_key": os.urandom(4).hex()})
    names = [r.body["metadata"]["name"] for r in fake_kube.requests_of("POST", "/pods")]
    assert len(names) == len(set(names)) == 4
    assert len(fake_kube.list_objects("pods")) == 4
