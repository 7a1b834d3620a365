"""Every image of docker/ built with podman (tests/containers/images.py) and run: a real step of each as a
container, as the non-root user the image declares, on a read-only root filesystem (a writable ``/tmp``
mounted, as a pod with ``readOnlyRootFilesystem`` mounts an emptyDir).

* airflow: ``airflow dags list`` shows the template DAGs;
* serving: the image's entrypoint serves a model pushed by the test DAG and answers a prediction;
* drift and tfx: their steps run as step pods of the Kubernetes backend (the manifest our code builds, run
  by the FAKE API server's podman kubelet): tests/containers/test_pods.py.

Skipped, with the reason, where podman cannot run containers.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from tests.containers.images import INPUTS_LABEL, RECIPES, RUNTIME_FROM_LABEL
from tests.containers.podman import inspect, podman

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
READ_ONLY = ["--read-only", "--read-only-tmpfs=false", "--mount", "type=tmpfs,destination=/tmp,tmpfs-mode=1777"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_image_is_built_from_its_dockerfile_and_declares_a_non_root_user(container_image, name):
    image = inspect(container_image(name), "image")
    user = image["Config"]["User"]
    assert user and user.split(":")[0] not in ("", "0", "root"), user
    labels = image["Config"]["Labels"]
    assert labels[INPUTS_LABEL] and labels[RUNTIME_FROM_LABEL] in ("prebuilt", "lock")
    # the build's inputs are its label: building again with nothing changed is a no-op, the same image
    assert inspect(container_image(name), "image")["Id"] == image["Id"]


def test_airflow_image_lists_the_template_dags(container_image):
    out = podman("run", "--rm", *READ_ONLY, "--mount", "type=tmpfs,destination=/opt/airflow-home,tmpfs-mode=1777",
                 "--volume", f"{REPO / 'dags'}:/opt/airflow/dags:ro", "--env", "AIRFLOW_HOME=/opt/airflow-home",
                 "--env", "AIRFLOW__CORE__DAGS_FOLDER=/opt/airflow/dags", "--env", "AIRFLOW__CORE__LOAD_EXAMPLES=False",
                 container_image("airflow"), "bash", "-c",
                 "id -u; airflow db migrate >/dev/null 2>&1 && airflow dags list --local -o json 2>/dev/null",
                 timeout=300).stdout.splitlines()
    assert out[0] == "50000"
    listed = {d["dag_id"]: d["fileloc"] for d in json.loads(out[-1])}
    templates = {p.stem for p in (REPO / "dags").glob("mlops_*.py")}
    assert set(listed) == templates and len(templates) == 4, listed


def test_serving_image_serves_a_pushed_model(container_image, trained_taxi_model, taxi_csv, airflow_home, tmp_path):
    from tests.integration.conftest import TAXI_MODEL, copy_of_trained_taxi_model
    from tests.integration.test_serving import records

    state = copy_of_trained_taxi_model(trained_taxi_model, tmp_path, airflow_home, taxi_csv)
    model = Path(trained_taxi_model / "state" / "models" / TAXI_MODEL / "1").resolve()
    port = free_port()
    name = f"serving-test-{port}"
    podman("run", "--detach", "--name", name, "--network", "host", *READ_ONLY,
           "--volume", f"{model}:/mnt/models:ro", "--env", "MODEL_URI=/mnt/models", "--env", "MODEL_VERSION=1",
           container_image("serving"), "--port", str(port))
    try:
        rows = records(state, 0, 3)
        body = json.dumps({"jsonData": {"instances": rows}}).encode()
        deadline, answer = time.monotonic() + 180, None
        while time.monotonic() < deadline:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1.0/predictions", body,
                                                 {"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=30) as response:
                    answer = json.loads(response.read())
                break
            except OSError:
                assert inspect(name)["State"]["Running"], podman("logs", name).stdout[-3000:]
                time.sleep(1)
        assert answer is not None, podman("logs", name, check=False).stdout[-3000:]
        assert answer["data"]["names"] == ["probabilities"] and answer["meta"]["tags"]["model_version"] == 1
        # the same probabilities as the model gives in the local serving runtime
        from airflow_mlops.hooks.runtime import RuntimeHook

        direct = RuntimeHook(runtime="serving", mlops_conn_id=None, state_dir=str(tmp_path / "state")).run_step(
            "serving.direct_predict", {"model_path": str(model), "records": rows})["outputs"]["probabilities"]
        assert [r[0] for r in answer["data"]["ndarray"]] == pytest.approx(direct, abs=1e-6)
        assert inspect(name)["Config"]["User"] == "1000:1000"
        assert podman("exec", name, "id", "-u").stdout.strip() == "1000"
    finally:
        podman("rm", "--force", name, check=False)
