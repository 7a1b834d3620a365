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
from airflow_mlops.kubernetes.trainjob import CUDA_RUNTIME, TrainJobSpec
from airflow_mlops.runtimes.runners import (
    DistributedJobRunner,
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
    ({"backend": "kubernetes"}, Placement(distributed=True, workers=2), DistributedJobRunner),
    ({"backend": "kubernetes"}, Placement(distributed=True, workers=2, launcher="trainjob"), DistributedJobRunner),
    ({"backend": "local"}, Placement(distributed=True, workers=2, launcher="trainjob"), WarmRunner),
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
    spec, _ = DistributedJobRunner(context(tmp_path, kubernetes_namespace="ml")).spec(
        "tfx.run_node", {}, CONTEXT, None, Placement(distributed=True, workers=2, gpus_per_worker=1))
    assert spec.image.startswith("registry.example/airflow-mlops-tfx-cuda:") and spec.namespace == "ml"
    assert type(spec).__name__ == "MPIJobSpec"


def test_a_trainjob_of_gpus_runs_the_cuda_image_from_the_cuda_runtime(tmp_path):
    spec, labels = DistributedJobRunner(context(tmp_path, kubernetes_namespace="ml")).spec(
        "tfx.run_node", {}, CONTEXT, 600, Placement(distributed=True, workers=2, gpus_per_worker=1, launcher="trainjob"))
    assert isinstance(spec, TrainJobSpec) and spec.runtime_name == CUDA_RUNTIME
    assert spec.image.startswith("registry.example/airflow-mlops-tfx-cuda:") and spec.active_deadline_seconds == 600
    assert labels[RUNTIME_LABEL] == "airflow-mlops-tfx-cuda"


@pytest.mark.parametrize(("placement", "message"), [
    (Placement(distributed=True, launcher="trainjob", min_workers=1, max_workers=3),
     r'the TrainJob would be invalid: min_workers/max_workers: .* use launcher="mpijob" for elastic Horovod'),
    (Placement(distributed=True, launcher="trainjob", run_policy={"backoff_limit": 2}),
     r"the TrainJob would be invalid: backoff_limit: the TrainingRuntime sets it"),
    (Placement(distributed=True, launcher="tfjob"),
     r"launcher: unknown Horovod launcher 'tfjob'; known: \['mpijob', 'trainjob'\]"),
])
def test_what_the_launcher_cannot_run_is_refused_before_anything_is_submitted(tmp_path, placement, message):
    runner = DistributedJobRunner(context(tmp_path, kubernetes_namespace="ml"))
    with pytest.raises(InvalidArgumentError, match=message):
        runner.check(placement)  # what the placement alone decides: before the pipeline ingests anything
    with pytest.raises(InvalidArgumentError, match=message):
        runner.spec("tfx.run_node", {}, CONTEXT, None, placement)


@pytest.mark.parametrize(("handle", "trigger"), [
    ({"runner": "mpijob", "step": "tfx.run_node", "name": "hvd-1", "namespace": "ml"}, "MPIJobTrigger"),  # before TrainJobs
    ({"runner": "mpijob", "launcher": "mpijob", "step": "tfx.run_node", "name": "hvd-1", "namespace": "ml"},
     "MPIJobTrigger"),
    ({"runner": "mpijob", "launcher": "trainjob", "step": "tfx.run_node", "name": "hvd-1", "namespace": "ml"},
     "TrainJobTrigger"),
])
def test_a_deferred_training_job_is_found_again_from_its_handle(tmp_path, handle, trigger):
    runner = runner_for_handle(context(tmp_path, kubernetes_conn_id="k8s"), handle, poll_interval=3)
    assert isinstance(runner, DistributedJobRunner)
    made = runner.trigger(handle, 3)
    assert type(made).__name__ == trigger and made.kubernetes_conn_id == "k8s" and made.name == "hvd-1"


def test_pod_settings_come_from_the_settings_alone(tmp_path):
    settings = MlopsSettings(kubernetes_image='{"tfx": "img:1"}')
    assert pod_namespace(settings, lambda: None) == "default"
    assert pod_namespace(settings.replace(kubernetes_namespace="ml"), lambda: pytest.fail("asked")) == "ml"
    assert pod_settings(settings, "tfx", state_dir=tmp_path, connection_namespace=lambda: "ns").image == "img:1"
    with pytest.raises(InvalidArgumentError, match="not for runtime 'drift'"):
        pod_settings(settings, "drift", state_dir=tmp_path, connection_namespace=lambda: "ns")
    with pytest.raises(InvalidArgumentError, match="no image is configured"):
        pod_settings(MlopsSettings(), "tfx", state_dir=tmp_path, connection_namespace=lambda: "ns")
