"""Step runners built from a :class:`RunnerContext` alone: no hook, no Airflow connection, no cluster."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

import airflow_mlops
from airflow_mlops.exceptions import InvalidArgumentError, MlopsException, RuntimeUnavailableError
from airflow_mlops.kubernetes.pods import RUNTIME_LABEL, pod_namespace, pod_settings
from airflow_mlops.runtimes.contract import REQUEST_ENV
from airflow_mlops.runtimes.context import RunnerContext
from airflow_mlops.runtimes.runners import (
    MPIJobRunner,
    Placement,
    PodRunner,
    ProcessRunner,
    WarmRunner,
    choose_runner,
    runner_for_handle,
)
from airflow_mlops.settings import MlopsSettings

CONTEXT = {"dag_id": "train", "task_id": "Trainer", "run_id": "manual__1", "map_index": -1}
IMAGE = "registry.example/airflow-mlops-{runtime}:{version}"


class FakeClients:
    """A client factory's clients: the connection's namespace, and a CoreV1 API that records deletions."""

    def __init__(self, namespace: str | None = "from-connection"):
        self.namespace = namespace
        self.deleted: list[tuple[str, str]] = []
        self.core_v1_client = self
        self.api_client = object()

    def get_namespace(self) -> str | None:
        return self.namespace

    def delete_namespaced_pod(self, name: str, namespace: str, **kwargs) -> None:
        self.deleted.append((namespace, name))


def no_runtime():
    raise RuntimeUnavailableError("no runtime in this test")


def context(tmp_path: Path, clients: FakeClients | Callable[[], FakeClients] | None = None,
            **settings) -> RunnerContext:
    """A context of runtime ``tfx`` with ``settings``; ``clients``: the clients, or their factory."""
    made = clients or FakeClients()
    return RunnerContext(runtime="tfx", settings=MlopsSettings(**{"kubernetes_image": IMAGE, **settings}),
                         state_dir=tmp_path, log=logging.getLogger("test"), get_runtime=no_runtime,
                         kubernetes=made if callable(made) else lambda: made)


def test_a_pod_runner_builds_its_manifest_from_the_context(tmp_path):
    runner = PodRunner(context(tmp_path, kubernetes_volume_claim="data", kubernetes_service_account="ml"))
    manifest, labels, settings = runner.manifest("runtime.info", {"x": 1}, CONTEXT, timeout=60)
    spec = manifest["spec"]
    assert manifest["metadata"]["namespace"] == settings.namespace == "from-connection"  # the client's fallback
    assert spec["containers"][0]["image"] == f"registry.example/airflow-mlops-tfx:{airflow_mlops.__version__}"
    assert spec["containers"][0]["volumeMounts"][0]["mountPath"] == str(tmp_path)  # the state dir
    assert spec["serviceAccountName"] == "ml" and spec["activeDeadlineSeconds"] == 60
    assert labels[RUNTIME_LABEL] == "tfx"
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert json.loads(env[REQUEST_ENV])["params"] == {"x": 1}
    again, _, _ = runner.manifest("runtime.info", {}, CONTEXT, timeout=None)  # the second call: its own pod
    assert again["metadata"]["name"] != manifest["metadata"]["name"]


def test_the_kubernetes_clients_are_made_only_when_used(tmp_path):
    made = []

    def clients():
        made.append(True)
        return FakeClients()

    ctx = context(tmp_path, clients, kubernetes_namespace="ml")
    manifest, _, _ = PodRunner(ctx).manifest("runtime.info", {}, CONTEXT, timeout=None)
    assert manifest["metadata"]["namespace"] == "ml" and not made
    PodRunner(ctx).delete({"name": "p", "namespace": "ml"})
    assert made


def test_a_deferred_pod_is_found_again_from_its_handle(tmp_path):
    clients = FakeClients()
    ctx = context(tmp_path, clients, kubernetes_conn_id="k8s")
    handle = {"runner": "pod", "step": "runtime.info", "name": "tfx-1", "namespace": "ml", "startup_timeout": 5}
    runner = runner_for_handle(ctx, handle, poll_interval=3)
    assert isinstance(runner, PodRunner) and runner.poll_interval == 3
    assert runner.trigger(handle, 3).kubernetes_conn_id == "k8s"
    runner.delete(handle)
    assert clients.deleted == [("ml", "tfx-1")]
    with pytest.raises(MlopsException, match="names no runner"):
        runner_for_handle(ctx, {"runner": "process"})


@pytest.mark.parametrize(("settings", "placement", "expected"), [
    ({"backend": "local"}, Placement(), WarmRunner),
    ({"backend": "local", "warm_runtimes": False}, Placement(), ProcessRunner),
    ({"backend": "kubernetes"}, Placement(), PodRunner),
    ({"backend": "kubernetes"}, Placement(distributed=True, workers=2), MPIJobRunner),
])
def test_the_settings_and_placement_choose_the_runner(tmp_path, settings, placement, expected):
    assert choose_runner(context(tmp_path, **settings), placement) is expected


def test_an_unknown_backend_chooses_no_runner(tmp_path):
    with pytest.raises(MlopsException, match="backend must be one of"):
        choose_runner(context(tmp_path, backend="docker"), Placement())


def test_a_process_runner_asks_the_context_for_its_runtime(tmp_path):
    with pytest.raises(RuntimeUnavailableError, match="no runtime in this test"):
        ProcessRunner(context(tmp_path / "state")).run("runtime.info", {}, {}, binds=[], timeout=None,
                                                      placement=Placement())


def test_an_mpijob_of_gpus_runs_the_cuda_image(tmp_path):
    spec, _ = MPIJobRunner(context(tmp_path, kubernetes_namespace="ml")).spec(
        "tfx.run_node", {}, CONTEXT, None, Placement(distributed=True, workers=2, gpus_per_worker=1))
    assert spec.image.startswith("registry.example/airflow-mlops-tfx-cuda:") and spec.namespace == "ml"


def test_pod_settings_come_from_the_settings_alone(tmp_path):
    settings = MlopsSettings(kubernetes_image='{"tfx": "img:1"}')
    assert pod_namespace(settings, lambda: None) == "default"
    assert pod_namespace(settings.replace(kubernetes_namespace="ml"), lambda: pytest.fail("asked")) == "ml"
    assert pod_settings(settings, "tfx", state_dir=tmp_path, connection_namespace=lambda: "ns").image == "img:1"
    with pytest.raises(InvalidArgumentError, match="not for runtime 'drift'"):
        pod_settings(settings, "drift", state_dir=tmp_path, connection_namespace=lambda: "ns")
    with pytest.raises(InvalidArgumentError, match="no image is configured"):
        pod_settings(MlopsSettings(), "tfx", state_dir=tmp_path, connection_namespace=lambda: "ns")
