"""Step pods as REAL containers: the Kubernetes backend builds each step's pod as it would for a cluster;
the FAKE API server's podman kubelet (tests/kubernetes/podman_kubelet.py) runs it from the image built
here, as its securityContext says (uid 1000, fsGroup), with the volume claim (the state directory) bind
mounted at the same path. A TFX component (CsvExampleGen, with its lineage in ML Metadata on the claim) for
the tfx image, a drift check for the drift image.

The Kubernetes API is FAKE (tests/kubernetes/fake_api.py); the containers, the images and the steps are real.
"""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.containers.podman import podman
from tests.kubernetes.fake_api import FakeKubeAPI, airflow_connection_env
from tests.kubernetes.podman_kubelet import PodmanKubelet

pytestmark = pytest.mark.integration
CLAIM = "airflow-mlops-data"


@pytest.fixture
def cluster(container_image, tmp_path, monkeypatch):
    """The fake API server with the podman kubelet, and the settings of the Kubernetes backend pointed at it."""
    claim = tmp_path / "claim"  # the claim's storage; mounted in every pod at the same path (the state directory)
    claim.mkdir()
    images = {name: container_image(name) for name in ("tfx", "drift")}
    with PodmanKubelet(claims={CLAIM: claim}) as kubelet, \
            FakeKubeAPI(kubelet=kubelet, stale_polls=0, creating_polls=1) as fake:
        settings = {**airflow_connection_env(fake, "kubernetes_fake", namespace="mlops"),
                    "AIRFLOW__MLOPS__BACKEND": "kubernetes", "AIRFLOW__MLOPS__KUBERNETES_CONN_ID": "kubernetes_fake",
                    "AIRFLOW__MLOPS__KUBERNETES_NAMESPACE": "mlops",
                    "AIRFLOW__MLOPS__KUBERNETES_IMAGE": "localhost/airflow-mlops-{runtime}:{version}",
                    "AIRFLOW__MLOPS__KUBERNETES_VOLUME_CLAIM": CLAIM, "AIRFLOW__MLOPS__STATE_DIR": str(claim),
                    "AIRFLOW__MLOPS__KUBERNETES_ON_FINISH_ACTION": "delete_pod"}
        for key, value in settings.items():
            monkeypatch.setenv(key, value)
        yield SimpleNamespace(fake=fake, kubelet=kubelet, claim=claim, images=images)
    assert not fake.errors, fake.errors


def ran_as_container(cluster, image: str) -> list[str]:
    """The podman arguments of the one pod of ``image`` that ran, checked for the user and the claim."""
    runs = [r for r in cluster.kubelet.started if r["image"] == image]
    assert len(runs) == 1, cluster.kubelet.started
    args = runs[0]["args"]
    assert args[args.index("--user") + 1] == "1000:1000" and args[args.index("--group-add") + 1] == "1000"
    assert f"{cluster.claim}:{cluster.claim}" in args
    return args


def test_a_tfx_component_runs_in_the_tfx_image(cluster, taxi_csv):
    from airflow.sdk import DAG

    from airflow_mlops.operators.tfx import CsvExampleGenOperator
    from tests.integration.test_ingest_dag import write_slice

    write_slice(taxi_csv, cluster.claim / "data" / "span-1" / "data.csv", 0, 300)
    with DAG("containers", schedule=None, start_date=datetime(2026, 1, 1)):
        op = CsvExampleGenOperator(task_id="eg", pipeline_name="p", input_base=str(cluster.claim / "data"))
    result = op.execute({"run_id": "manual__1", "ti": SimpleNamespace(try_number=1, map_index=-1)})

    ran_as_container(cluster, cluster.images["tfx"])
    assert result["state"] == "COMPLETE", result
    examples = result["outputs"]["examples"][0]
    written = sorted(Path(examples["uri"]).rglob("*.gz"))
    assert {p.parent.name for p in written} == {"Split-train", "Split-eval"}, written
    assert all(p.stat().st_uid == 1000 for p in written)  # written by the container's user, on the claim
    assert (cluster.claim / "metadata" / "mlmd.sqlite").stat().st_size > 0  # its lineage, on the claim too
    assert cluster.fake.list_objects("pods", "mlops") == []  # on_finish_action=delete_pod


def test_a_drift_check_runs_in_the_drift_image(cluster):
    from airflow_mlops.hooks.runtime import RuntimeHook

    rng = random.Random(7)
    reference = [{"fare": rng.gauss(12, 4), "payment_type": rng.choice(["Cash", "Card"])} for _ in range(600)]
    window = [{"fare": rng.gauss(18, 4), "payment_type": rng.choice(["Cash", "Card"])} for _ in range(300)]
    result = RuntimeHook(runtime="drift", mlops_conn_id=None).run_step(
        "drift.detect", {"features": {"fare": "numeric", "payment_type": "categorical"}, "reference": reference,
                         "window": window})
    assert result["is_drift"] is True and result["drifted_features"] == ["fare"], result
    ran_as_container(cluster, cluster.images["drift"])


def run_example_gen(cluster, taxi_csv, **kwargs):
    from airflow.sdk import DAG

    from airflow_mlops.operators.tfx import CsvExampleGenOperator
    from tests.integration.test_ingest_dag import write_slice

    write_slice(taxi_csv, cluster.claim / "data" / "span-1" / "data.csv", 0, 300)
    with DAG("containers", schedule=None, start_date=datetime(2026, 1, 1)):
        op = CsvExampleGenOperator(task_id="eg", pipeline_name="p", input_base=str(cluster.claim / "data"), **kwargs)
    return op.execute({"run_id": "manual__1", "ti": SimpleNamespace(try_number=1, map_index=-1)})


def test_a_step_killed_by_its_memory_limit_says_so_and_is_not_retried(cluster, taxi_csv):
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_mlops.exceptions import StepOutOfMemory

    # TensorFlow alone needs more than 200 MiB: the kernel kills the container at its cgroup's limit
    with pytest.raises(StepOutOfMemory) as failed:
        run_example_gen(cluster, taxi_csv, kubernetes={"resources": {"limits": {"memory": "200Mi"}}})
    message = str(failed.value)
    assert isinstance(failed.value, AirflowFailException)  # the same limit would kill it again
    assert "OOMKilled, limits.memory=200Mi" in message and "kubernetes_resources" in message, message
    assert "exit code 137" in message, message
    args = ran_as_container(cluster, cluster.images["tfx"])
    assert args[args.index("--memory") + 1] == str(200 * 1024**2)


def test_a_step_past_its_deadline_says_so_and_is_retried(cluster, taxi_csv):
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_mlops.exceptions import RuntimeStepFailed

    with pytest.raises(RuntimeStepFailed) as failed:
        run_example_gen(cluster, taxi_csv, step_timeout=2)
    message = str(failed.value)
    assert not isinstance(failed.value, AirflowFailException)  # a retry may be faster (Airflow retries timeouts)
    assert "DeadlineExceeded: activeDeadlineSeconds=2" in message and "step_timeout" in message, message
    ran_as_container(cluster, cluster.images["tfx"])
    names = set(podman("ps", "--all", "--format", "{{.Names}}").stdout.split())
    assert not names & {run["container"] for run in cluster.kubelet.started}  # the stopped container is removed
