"""The template training DAG with ``backend = kubernetes``: every runtime step a pod, Horovod an MPIJob.

The Kubernetes API is FAKE (tests/kubernetes/fake_api.py, with its scripted MPI Operator and Seldon
controller); everything on Airflow's side of HTTP is real: ``airflow dags test`` of
``dags/mlops_train_deploy.py``, the cncf-kubernetes provider's hook and PodManager, the clients.

Where podman runs containers (tests/containers/), the fake's kubelet runs every pod as a CONTAINER of
the image built from docker/ (tests/kubernetes/podman_kubelet.py): each TFX component in the tfx image
as uid 1000 with the volume claim (the state directory) mounted, the MPIJob's launcher (its Horovod ranks
in the launcher's container: its hostfile lists ``localhost``; ranks over ssh between containers are
tests/containers/test_mpi.py), the SeldonDeployment's predictor in the serving image (answering
predictions, logging them on the claim), then the monitoring DAG's drift check in the drift image.
Elsewhere it runs each pod's command in the LOCAL runtime its image stands for (``airflow-mlops-tfx`` →
the tfx runtime), saying so.
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
from tests.containers.podman import unavailable as podman_unavailable
from tests.kubernetes.fake_api import FakeKubeAPI, LocalProcessKubelet, airflow_connection_env
from tests.kubernetes.podman_kubelet import PodmanKubelet
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


class ContainerPods(PodmanKubelet):
    """The podman kubelet, with the launcher's hostfile listing ``localhost`` (its ranks in its own container)
    and MPI workers idle."""

    def __init__(self, claim: Path, scratch: Path) -> None:
        super().__init__(claims={CLAIM: claim}, skip=self._worker, extra_args=self._launcher_hostfile)
        self.scratch = scratch

    @staticmethod
    def _worker(pod: dict):
        is_worker = (pod["metadata"].get("labels") or {}).get("training.kubeflow.org/job-role") == "worker"
        return None if is_worker else False

    def _launcher_hostfile(self, pod: dict) -> list[str]:
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env") or []}
        if not env.get(ENV_HOSTFILE):
            return []
        hostfile = self.scratch / f"{pod['metadata']['name']}.hostfile"
        hostfile.write_text(f"localhost slots={env[ENV_NP]}\n")
        hostfile.chmod(0o644)
        return ["--volume", f"{hostfile}:/etc/airflow-mlops-test/hostfile:ro",
                "--env", f"{ENV_HOSTFILE}=/etc/airflow-mlops-test/hostfile"]


CLAIM = "airflow-mlops-data"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, airflow_home, taxi_csv, tfx_runtime, request):
    root = tmp_path_factory.mktemp("k8s")
    state_dir, scratch = root / "state", root / "scratch"
    state_dir.mkdir()
    scratch.mkdir()
    data = state_dir / "data"  # on the claim: the pods read it there
    write_slice(taxi_csv, data / "span-1" / "data.csv", 0, 2000)
    containers = podman_unavailable() is None
    if containers:
        build = request.getfixturevalue("container_image")
        images = {name: build(name) for name in ("tfx", "serving", "drift")}
        kubelet = ContainerPods(state_dir, scratch)
        image_setting = "localhost/airflow-mlops-{runtime}:{version}"
    else:
        print(f"the pods run as LOCAL processes: containers cannot run here ({podman_unavailable()})")
        images, kubelet = {}, RuntimePods(root, scratch)
        image_setting = "registry.example/airflow-mlops-{runtime}:{version}"
    with FakeKubeAPI(kubelet=kubelet, stale_polls=0, creating_polls=1, seldon_pods=containers) as fake:
        if containers:  # the MPIJob's ssh key Secret and hostfile ConfigMap, mounted into its launcher
            kubelet.objects = fake.read
        env = {
            **airflow_connection_env(fake, "kubernetes_fake", namespace="mlops"),
            "AIRFLOW__MLOPS__BACKEND": "kubernetes",
            "AIRFLOW__MLOPS__KUBERNETES_CONN_ID": "kubernetes_fake",
            "AIRFLOW__MLOPS__KUBERNETES_NAMESPACE": "mlops",
            "AIRFLOW__MLOPS__KUBERNETES_IMAGE": image_setting,
            "AIRFLOW__MLOPS__KUBERNETES_VOLUME_CLAIM": CLAIM,
            "AIRFLOW__MLOPS__KUBERNETES_SERVICE_ACCOUNT": "airflow-mlops",
            "AIRFLOW__MLOPS__KUBERNETES_ON_FINISH_ACTION": "delete_pod",
        }
        if containers:
            env["AIRFLOW__MLOPS__KUBERNETES_SERVING_IMAGE"] = images["serving"]
        yield {"fake": fake, "kubelet": kubelet, "env": env, "home": airflow_home, "state_dir": state_dir,
               "data": data, "containers": containers, "images": images}
        for name in [d["metadata"]["name"] for d in fake.list_objects("seldondeployments", "mlops")]:
            fake.delete("seldondeployments", "mlops", name)  # its predictor's container goes with it
    if containers:
        kubelet.close()


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
    kubelet = cluster["kubelet"]
    ran = [r["image"] for r in kubelet.started] if cluster["containers"] else kubelet.images
    tfx_image = cluster["images"].get("tfx", "registry.example/airflow-mlops-tfx:0.1.0")
    assert all(image == tfx_image for image in ran if "serving" not in image and "drift" not in image), ran
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
    assert (cluster["state_dir"] / "models" / PIPELINE / "1" / "saved_model.pb").is_file()
    if cluster["containers"]:  # its predictor: a container of the serving image, answering on its port
        served = served_predictions(cluster, PIPELINE, rows=300)
        assert len(served["data"]["ndarray"]) == 300 and served["meta"]["tags"]["model_version"] == 1
        predictor = [r for r in kubelet.started if r["image"] == cluster["images"]["serving"]]
        assert len(predictor) == 1 and "1000:1000" in predictor[0]["args"], predictor  # the claim's user
        # logged on the claim (as uid 8888, Seldon's default, it could not: found here), where monitoring reads
        logged = [json.loads(line) for f in sorted((cluster["state_dir"] / "predictions" / "taxi-k8s").glob("*.jsonl"))
                  for line in f.read_text().splitlines()]
        assert sum(len(entry["instances"]) for entry in logged) == 300, logged[-1:]
        # the monitoring DAG's drift check on that traffic: lineage read in a tfx pod, Alibi Detect in a drift pod
        code, log, monitor_run = dags_test(cluster, {"deployment_name": "taxi-k8s", "window_size": 300},
                                           dag_id="mlops_monitor", **cluster["env"])
        monitor = task_states(cluster, "mlops_monitor", monitor_run)
        assert monitor["detect_drift"] == "success", (monitor, log[-6000:])
        assert any(r["image"] == cluster["images"]["drift"] for r in kubelet.started), kubelet.started
    else:
        uri = deployment["spec"]["predictors"][0]["graph"]["modelUri"]
        assert uri == f"pvc://airflow-mlops-data/models/{PIPELINE}/1"

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
    left = [p["metadata"]["name"] for p in fake.list_objects("pods", "mlops")
            if "seldon-deployment-id" not in p["metadata"]["labels"]]
    assert all("-launcher-" in name for name in left), left
    assert_allowed(fake)
    assert json.dumps(states)


def served_predictions(cluster, pipeline: str, rows: int = 5) -> dict:
    """A prediction of ``rows`` taxi trips from the SeldonDeployment's predictor container (port 9000 of the
    pod: the host's, as the podman kubelet runs pods on the host's network), retried while its server loads."""
    import csv
    import time
    import urllib.request

    from airflow_mlops.shared import typed_record

    spec = json.loads((cluster["state_dir"] / "models" / pipeline / "1" / "assets.extra" / "feature_spec.json")
                      .read_text())
    with open(cluster["data"] / "span-1" / "data.csv", newline="") as handle:
        trips = list(csv.DictReader(handle))[:rows]
    body = json.dumps({"jsonData": {"instances": [typed_record(t, spec) for t in trips]}}).encode()
    deadline = time.monotonic() + 180
    while True:
        try:
            request = urllib.request.Request("http://127.0.0.1:9000/api/v1.0/predictions", body,
                                             {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
