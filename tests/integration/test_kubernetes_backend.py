"""The template training DAG with ``backend = kubernetes``: every runtime step a pod, Horovod an MPIJob.

The Kubernetes API is FAKE (tests/kubernetes/fake_api.py, with its scripted MPI Operator and Seldon
controller); everything on Airflow's side of HTTP is real: ``airflow dags test`` of
``dags/mlops_train_deploy.py``, the cncf-kubernetes provider's hook and PodManager, the clients. The
fake's kubelet runs each pod's command in the LOCAL runtime its image stands for (``airflow-mlops-tfx``
→ the tfx runtime), so the real TFX components, the real TFX node in the MPIJob's launcher and real
Horovod ranks run (the ranks on this machine: the launcher's hostfile lists ``localhost``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from airflow_mlops.hooks.runtime import RuntimeHook
from airflow_mlops.runtimes.local import runtime_command
from airflow_mlops.runtime_side.steps.horovod_launch import ENV_HOSTFILE, ENV_NP
from tests.conftest import CRD_DIR, HAVE_CRDS
from tests.kubernetes.fake_api import FakeKubeAPI, LocalProcessKubelet, airflow_connection_env
from tests.kubernetes.rbac_check import assert_allowed

from .test_ingest_dag import dags_test, lineage, task_states, write_slice

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
PIPELINE = "it_k8s"
IMAGE = re.compile(r"(?:.*/)?airflow-mlops-(?P<runtime>[a-z]+)(?:-cuda)?:")


class RuntimePods:
    """A FAKE kubelet: runs a pod's container command in the local runtime its image names."""

    def __init__(self, root: Path, scratch: Path) -> None:
        self.root, self.scratch = root, scratch  # root: the state directory, data and scratch (the "volume")
        self.images: list[str] = []

    def __call__(self, pod: dict):
        labels = pod["metadata"].get("labels") or {}
        if labels.get("training.kubeflow.org/job-role") == "worker":
            return None  # MPI workers idle (sshd in the image); the launcher's hostfile points at localhost
        image = pod["spec"]["containers"][0]["image"]
        self.images.append(image)
        install = RuntimeHook(runtime=IMAGE.match(image)["runtime"], mlops_conn_id=None).get_runtime()

        def rewrite(argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
            env = {k: v for k, v in env.items() if k not in ("PATH", "HOME", "LANG")}  # TMPDIR: the pod's own
            env["PYTHONPATH"] = str(REPO)  # the image's /opt/airflow-mlops
            if env.get(ENV_HOSTFILE):  # the MPI Operator's /etc/mpi/hostfile, for ranks on this machine
                hostfile = self.scratch / f"{pod['metadata']['name']}.hostfile"
                hostfile.write_text(f"localhost slots={env[ENV_NP]}\n")
                env[ENV_HOSTFILE] = str(hostfile)
            return runtime_command(install, argv, env=env, binds=[str(REPO), str(self.root)])

        return LocalProcessKubelet(rewrite=rewrite, kill_after=5)(pod)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, airflow_home, taxi_csv, tfx_runtime):
    root = tmp_path_factory.mktemp("k8s")
    state_dir, scratch = root / "state", root / "scratch"
    state_dir.mkdir()
    scratch.mkdir()
    write_slice(taxi_csv, root / "data" / "span-1" / "data.csv", 0, 2000)
    kubelet = RuntimePods(root, scratch)
    with FakeKubeAPI(kubelet=kubelet, stale_polls=0, creating_polls=1) as fake:
        env = {
            **airflow_connection_env(fake, "kubernetes_fake", namespace="mlops"),
            "AIRFLOW__MLOPS__BACKEND": "kubernetes",
            "AIRFLOW__MLOPS__KUBERNETES_CONN_ID": "kubernetes_fake",
            "AIRFLOW__MLOPS__KUBERNETES_NAMESPACE": "mlops",
            "AIRFLOW__MLOPS__KUBERNETES_IMAGE": "registry.example/airflow-mlops-{runtime}:{version}",
            "AIRFLOW__MLOPS__KUBERNETES_VOLUME_CLAIM": "airflow-mlops-data",
            "AIRFLOW__MLOPS__KUBERNETES_SERVICE_ACCOUNT": "airflow-mlops",
            "AIRFLOW__MLOPS__KUBERNETES_ON_FINISH_ACTION": "delete_pod",
        }
        yield {"fake": fake, "kubelet": kubelet, "env": env, "home": airflow_home, "state_dir": state_dir,
               "data": root / "data"}


def test_the_training_dag_runs_on_kubernetes_unchanged(cluster):
    fake = cluster["fake"]
    conf = {"pipeline_name": PIPELINE, "data_root": str(cluster["data"]), "train_steps": 60, "num_workers": 2,
            "eval_threshold": 0.0, "deployment_name": "taxi-k8s"}
    code, log, run_id = dags_test(cluster, conf, dag_id="mlops_train_deploy", **cluster["env"])
    assert code == 0, log[-6000:]
    states = task_states(cluster, "mlops_train_deploy", run_id)
    assert set(states.values()) == {"success"}, states

    # every TFX component ran as a pod of the tfx image; the Trainer as an MPIJob on the CUDA-less image
    created = [r.body["metadata"]["name"] for r in fake.requests_of("POST", "/namespaces/mlops/pods")]
    for component in ("csvexamplegen", "statisticsgen", "schemagen", "examplevalidator", "transform", "evaluator",
                      "pusher"):
        assert any(component in name for name in created), (component, created)
    assert all(image == "registry.example/airflow-mlops-tfx:0.1.0" for image in cluster["kubelet"].images)
    jobs = fake.list_objects("mpijobs", "mlops")
    assert len(jobs) == 1 and jobs[0]["status"]["conditions"][-1]["type"] == "Succeeded"
    assert jobs[0]["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"] == 2

    # the launcher ran the TFX node; its executor started 2 real Horovod ranks, which agree
    hashes = dict(re.findall(r"\[launcher\] \[(\d)\]<stdout>:rank \d: final weights sha256 (\w+)", log))
    assert set(hashes) == {"0", "1"} and hashes["0"] == hashes["1"], log[-6000:]

    # lineage in ML Metadata is the same as with the local backend
    runs = lineage(cluster, run_id, pipeline=PIPELINE)
    transform, trainer = runs["Transform"]["outputs"], runs["Trainer"]
    assert trainer["state"] == "COMPLETE"
    assert [a["id"] for a in trainer["inputs"]["transform_graph"]] == [a["id"] for a in transform["transform_graph"]]
    assert (Path(trainer["outputs"]["model"][0]["uri"]) / "Format-Serving" / "saved_model.pb").is_file()

    # served from the volume claim by a SeldonDeployment
    deployment = fake.read("seldondeployments", "mlops", "taxi-k8s")
    assert deployment["status"]["state"] == "Available"
    uri = deployment["spec"]["predictors"][0]["graph"]["modelUri"]
    assert uri == f"pvc://airflow-mlops-data/models/{PIPELINE}/1"
    assert (cluster["state_dir"] / "models" / PIPELINE / "1" / "saved_model.pb").is_file()

    # what was sent is valid: pods for the client's own model, the MPIJob and SeldonDeployment for the real CRDs
    from kubernetes import client as k8s

    api = k8s.ApiClient()
    for posted in fake.requests_of("POST", "/namespaces/mlops/pods"):
        assert api.sanitize_for_serialization(api._ApiClient__deserialize(posted.body, "V1Pod")) == posted.body
    if HAVE_CRDS:
        from airflow_mlops.kubernetes.mpijob import validate_mpijob
        from airflow_mlops.serving.manifest import validate_manifest

        validate_mpijob(fake.requests_of("POST", "/mpijobs")[0].body, CRD_DIR)
        validate_manifest(fake.requests_of("POST", "/seldondeployments")[0].body, CRD_DIR)

    # nothing left behind but the finished launcher (the MPIJob's TTL removes it), and nothing the Role forbids
    left = [p["metadata"]["name"] for p in fake.list_objects("pods", "mlops")]
    assert all("-launcher-" in name for name in left), left
    assert_allowed(fake)
    assert json.dumps(states)
