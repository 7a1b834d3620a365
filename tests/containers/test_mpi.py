"""Horovod for real across containers: an MPIJob's launcher and two workers of the tfx image, on a podman network of
the test's own, ssh between them.

The Kubernetes API and the MPI Operator are FAKE (tests/kubernetes/fake_api.py): the operator makes what the real
v2beta1 operator makes (a real ECDSA key pair in the Secret ``<job>-ssh``, the ConfigMap ``<job>-config`` with the
``hostfile`` and ``discover_hosts.sh`` of the running workers, worker pods ``<job>-worker-N`` with hostname and
subdomain, the launcher Job once the workers are ready). The pods are REAL containers (tests/kubernetes/
podman_kubelet.py): the network resolves ``<job>-worker-N.<job>.<namespace>.svc`` as the cluster's DNS would, the
Secret and ConfigMap are mounted as the kubelet mounts them. Nothing is rewritten: the workers run the image's
``airflow-mlops-mpi-worker`` (sshd on port 2222 as uid 1000 with the mounted key), and the launcher runs the
provider's launch (``horovodrun_args`` over the operator's hostfile or discovery script, see ``mpi_train.py``),
whose ``horovodrun --gloo`` reaches the workers over ssh by name.

The job is the provider's: an :class:`MPIJobSpec` with ``horovodrun=False`` (as ``DistributedJobRunner`` makes it:
the launcher runs the step's command with ``horovod_env``), built by :func:`build_mpijob`, submitted and followed by
:class:`MPIJobController`. The step is a small Horovod training (``mpi_train.py``) rather than a TFX Trainer node,
whose inputs (examples, schema, transform graph) would take a pipeline's worth of components to make.

``AIRFLOW_MLOPS_MPI_TIMING=N`` also times N two-rank trainings over ssh between containers against N with two local
ranks in one container (``test_timing_ssh_between_containers_vs_local_ranks``, skipped otherwise).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from kubernetes import client as k8s

from airflow_mlops.kubernetes.api import read_log
from airflow_mlops.kubernetes.mpijob import MPIJobController, MPIJobSpec, build_mpijob
from tests.containers.podman import podman
from tests.kubernetes.fake_api import FakeKubeAPI
from tests.kubernetes.podman_kubelet import PodmanKubelet

pytestmark = pytest.mark.integration
CLAIM, NAMESPACE = "airflow-mlops-data", "mlops"
SCRIPT = Path(__file__).with_name("mpi_train.py")
STEPS = 40  # the two-rank training: ~5 s of training on 2 cores
FINAL = re.compile(r"^\[(\d)\]<stdout>:FINAL rank=(\d) size=(\d) host=(\S+) steps=\d+ seconds=([\d.]+) sha256=(\w+)$",
                   re.M)


@pytest.fixture
def network(container_image) -> Iterator[str]:
    """A podman network of this test's own (DNS on), removed with whatever is left on it."""
    name = f"airflow-mlops-mpi-{uuid.uuid4().hex[:10]}"
    podman("network", "create", name)
    try:
        yield name
    finally:
        podman("network", "rm", "--force", name, check=False, timeout=120)


@pytest.fixture
def cluster(container_image, network, tmp_path) -> Iterator[SimpleNamespace]:
    """The fake API server and MPI Operator, pods as containers on ``network``, and the claim holding the training."""
    image = container_image("tfx")
    claim = tmp_path / "claim"
    claim.mkdir()
    shutil.copy(SCRIPT, claim / SCRIPT.name)
    with PodmanKubelet(claims={CLAIM: claim}, network=network, kill_after=2) as kubelet, \
            FakeKubeAPI(kubelet=kubelet, stale_polls=0, creating_polls=1) as fake:
        kubelet.objects = fake.read  # the Secret and ConfigMap the operator made, mounted and kept in sync
        api = k8s.ApiClient(k8s.Configuration(host=fake.url))
        try:
            yield SimpleNamespace(fake=fake, kubelet=kubelet, claim=claim, image=image, network=network,
                                  jobs=MPIJobController(api), core=k8s.CoreV1Api(api))
        finally:
            api.close()
    assert not fake.errors, "the FAKE Kubernetes API server failed:\n" + "\n".join(fake.errors)


def job_spec(cluster: SimpleNamespace, name: str, *rank_args: str, **fields) -> MPIJobSpec:
    """The job as the provider makes it for a distributed step: the launcher runs the step with ``horovod_env``."""
    return MPIJobSpec(name=name, image=cluster.image, namespace=NAMESPACE, horovodrun=False,
                      command=["python", str(cluster.claim / SCRIPT.name), "launch", "2", *rank_args],
                      volume_claim=CLAIM, mount_path=str(cluster.claim), launcher_resources={},
                      env={"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", **fields.pop("env", {})}, **fields)


def submit(cluster: SimpleNamespace, spec: MPIJobSpec) -> None:
    manifest = build_mpijob(spec)
    cluster.jobs.submit(manifest, manifest["metadata"]["labels"])


def finish(cluster: SimpleNamespace, name: str, timeout: float = 300) -> tuple[str, str, str]:
    """The job's final state and its launcher's log."""
    state, _, message = cluster.jobs.wait(name, NAMESPACE, poll_interval=0.5, timeout=timeout)
    return state, message, cluster.jobs.launcher_log(name, NAMESPACE)


def wait_for_line(cluster: SimpleNamespace, name: str, pattern: str, timeout: float = 240) -> str:
    """The launcher's log once a line matches ``pattern`` (the job must still be running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = cluster.jobs.launcher_log(name, NAMESPACE)
        if re.search(pattern, log, re.M):
            return log
        state = cluster.jobs.job_state(cluster.jobs.get(name, NAMESPACE))[0]
        assert state not in ("Succeeded", "Failed"), f"{state} before {pattern!r}:\n{log[-4000:]}"
        time.sleep(0.5)
    raise AssertionError(f"no {pattern!r} in the launcher's log after {timeout} s:\n{log[-4000:]}")


def finals(log: str) -> dict[int, tuple[int, str, float, str]]:
    """rank → (size, host, training seconds, sha256 of the final weights) (horovodrun's ``[N]`` prefix is the slot it
    started the process for: after an elastic reset, not its rank)."""
    return {int(m[2]): (int(m[3]), m[4], float(m[5]), m[6]) for m in FINAL.finditer(log)}


def pod_log(cluster: SimpleNamespace, pod: str) -> str:
    return read_log(cluster.core, f"reading the log of {pod}", pod, NAMESPACE)


def ran(cluster: SimpleNamespace, pod: str) -> list[str]:
    """The podman arguments of the one container that ran ``pod``."""
    runs = [r["args"] for r in cluster.kubelet.started if r["pod"] == pod]
    assert len(runs) == 1, [r["pod"] for r in cluster.kubelet.started]
    return runs[0]


def local_two_ranks(cluster: SimpleNamespace) -> tuple[float, str]:
    """The same training with two ranks in one container (``-H localhost:2``): wall seconds, log."""
    started = time.monotonic()
    result = podman("run", "--rm", "--network", "none", "--user", "1000:1000", "--volume",
                    f"{cluster.claim}:{cluster.claim}:ro", "--env", "TF_CPP_MIN_LOG_LEVEL=2", cluster.image,
                    "python", str(cluster.claim / SCRIPT.name), "launch", "2", str(STEPS), timeout=300)
    return time.monotonic() - started, result.stdout + result.stderr


def two_ranks_over_ssh(cluster: SimpleNamespace, name: str) -> tuple[float, str]:
    """One MPIJob of two workers training ``STEPS`` steps, from submission to success: wall seconds, log."""
    started = time.monotonic()
    submit(cluster, job_spec(cluster, name, str(STEPS), num_workers=2, clean_pod_policy="None"))
    state, message, log = finish(cluster, name)
    assert state == "Succeeded", f"{message}\n{log[-6000:]}"
    return time.monotonic() - started, log


def test_two_ranks_train_over_ssh_between_containers_to_identical_weights(cluster):
    name = "hvd-ssh"
    wall, log = two_ranks_over_ssh(cluster, name)

    # what the operator made: a real key pair, the hostfile of the workers' cluster names
    secret = cluster.fake.read("secrets", NAMESPACE, f"{name}-ssh")
    assert secret["type"] == "kubernetes.io/ssh-auth" and set(secret["data"]) == {"ssh-privatekey", "ssh-publickey"}
    hostfile = cluster.fake.read("configmaps", NAMESPACE, f"{name}-config")["data"]["hostfile"]
    assert hostfile == f"{name}-worker-0.{name}.{NAMESPACE}.svc slots=1\n{name}-worker-1.{name}.{NAMESPACE}.svc slots=1\n"

    public = base64.b64decode(base64.b64decode(secret["data"]["ssh-publickey"]).split()[1])
    key = "SHA256:" + base64.b64encode(hashlib.sha256(public).digest()).decode().rstrip("=")  # as sshd logs it

    # every pod a container on the test's network (no host network), the workers running the image's sshd command
    workers = [f"{name}-worker-{i}" for i in range(2)]
    launcher = cluster.jobs.launcher_pod(name, NAMESPACE).metadata.name
    for pod in [*workers, launcher]:
        args = ran(cluster, pod)
        assert args[args.index("--network") + 1] == cluster.network, args
        assert args[args.index("--user") + 1] == "1000:1000", args
    for pod in workers:
        args = ran(cluster, pod)
        assert args[args.index("--entrypoint") + 1] == '["airflow-mlops-mpi-worker"]', args
        assert f"{pod}.{name}.{NAMESPACE}.svc" in args  # the name the hostfile gives it resolves to it
        sshd = pod_log(cluster, pod)  # sshd -D -e logs to the container's log
        assert "Server listening on 0.0.0.0 port 2222." in sshd, sshd
        # the launcher logged in as mlops with the job's key (the Secret's, mounted in both pods)
        assert re.search(rf"^Accepted publickey for mlops from [\d.]+ port \d+ ssh2: ECDSA {re.escape(key)}$", sshd,
                         re.M), sshd

    # the launcher started horovodrun over the operator's hostfile (nothing rewritten to localhost)
    assert re.search(r"^LAUNCH \S+ -m horovod.runner.launch -np 2 --gloo --hostfile /etc/mpi/hostfile ", log, re.M), log
    # two ranks, one in each worker container, ending with the same weights
    ranks = finals(log)
    assert set(ranks) == {0, 1} and {r[0] for r in ranks.values()} == {2}, log[-6000:]
    assert sorted(r[1] for r in ranks.values()) == workers, ranks
    assert ranks[0][3] == ranks[1][3], ranks

    print(f"\ntwo Horovod ranks over ssh between containers, {STEPS} steps: {wall:.1f} s from submission to success "
          f"(training {max(r[2] for r in ranks.values()):.1f} s)")


@pytest.mark.skipif(not os.environ.get("AIRFLOW_MLOPS_MPI_TIMING"),
                    reason="set AIRFLOW_MLOPS_MPI_TIMING=N to time N trainings of each kind")
def test_timing_ssh_between_containers_vs_local_ranks(cluster):
    """Wall time (submission to success; ``podman run`` to exit) and training time (the slowest rank's loop) of the
    same two-rank training over ssh between containers and in one container; both end with the same weights (Gloo's
    average of two gradients is exact)."""
    n = int(os.environ["AIRFLOW_MLOPS_MPI_TIMING"])
    ssh, local, weights = [], [], set()
    for i in range(n):
        wall, log = two_ranks_over_ssh(cluster, f"hvd-time-{i}")
        ranks = finals(log)
        ssh.append((wall, max(r[2] for r in ranks.values())))
        weights |= {r[3] for r in ranks.values()}
        cluster.jobs.delete(f"hvd-time-{i}", NAMESPACE)
        wall, log = local_two_ranks(cluster)
        ranks = finals(log)
        assert set(ranks) == {0, 1}, log[-4000:]
        local.append((wall, max(r[2] for r in ranks.values())))
        weights |= {r[3] for r in ranks.values()}
    assert len(weights) == 1, weights
    for kind, runs in (("over ssh between containers", ssh), ("local, one container", local)):
        print(f"\ntwo ranks {kind}: wall {statistics.median(w for w, _ in runs):.1f} s, training "
              f"{statistics.median(t for _, t in runs):.2f} s (median of {n}; wall {[round(w, 1) for w, _ in runs]}, "
              f"training {[round(t, 2) for _, t in runs]})")

STEP = re.compile(r"^\[\d\]<stdout>:STEP rank=(\d) size=(\d) host=(\S+) step=(\d+)$", re.M)
RESET = re.compile(r"^\[\d\]<stdout>:RESET rank=(\d) size=(\d) host=(\S+)$", re.M)


def elastic_run(cluster: SimpleNamespace, name: str, min_workers: int, **env: str) -> tuple[str, str, str, str]:
    """An elastic job of 2 workers (``min_workers`` to 2) training 100 steps (at least 10 s); its worker 1 deleted
    through the API once rank 0 has committed step 10. The job's final state, message, launcher log, and the uid of
    the deleted pod."""
    submit(cluster, job_spec(cluster, name, "100", "--elastic", "--pause", "0.1", min_workers=min_workers,
                             max_workers=2, clean_pod_policy="None", env=env))
    wait_for_line(cluster, name, r"^\[\d\]<stdout>:STEP rank=0 size=2 host=\S+ step=10$")
    removed = cluster.fake.read("pods", NAMESPACE, f"{name}-worker-1")["metadata"]["uid"]
    cluster.core.delete_namespaced_pod(f"{name}-worker-1", NAMESPACE)
    return *finish(cluster, name), removed


def assert_worker_1_came_back_unused(cluster: SimpleNamespace, name: str, removed: str, log: str) -> None:
    """The operator made worker 1 again (same name, same hostname), and Horovod, which blacklisted the host whose
    rank failed, never used it again."""
    again = cluster.fake.read("pods", NAMESPACE, f"{name}-worker-1")
    assert again is not None and again["metadata"]["uid"] != removed, again
    after = log[log.index("closed by remote host"):]
    assert f"host={name}-worker-1" not in after, after[-4000:]


def test_elastic_training_goes_on_with_the_workers_left(cluster):
    """min-np 1: a worker removed mid-training, the other one goes on alone from the last commit and the job succeeds
    (Horovod elastic: the failed rank's host is blacklisted, the others reset and continue while min-np slots remain)."""
    name = "hvd-elastic"
    state, message, log, removed = elastic_run(cluster, name, min_workers=1)
    assert state == "Succeeded", f"{message}\n{log[-6000:]}"
    assert "--min-np 1 --max-np 2 --host-discovery-script /etc/mpi/discover_hosts.sh --slots-per-host 1 " in log, log
    steps = [(int(rank), int(size), host, int(step)) for rank, size, host, step in STEP.findall(log)]
    both = [s for s in steps if s[1] == 2]
    alone = [s for s in steps if s[1] == 1]
    assert {s[2] for s in both} == {f"{name}-worker-0", f"{name}-worker-1"}, log[-6000:]
    # one reset, then the worker left trains on as rank 0 of 1 from the last state both saved: the step of the last
    # commit both printed, or the next one (commit() saves, then checks the other ranks: that check may be what failed)
    assert set(RESET.findall(log)) == {("0", "1", f"{name}-worker-0")}, log[-6000:]
    assert {s[:3] for s in alone} == {(0, 1, f"{name}-worker-0")}, log[-6000:]
    assert alone[0][3] - max(s[3] for s in both) in (5, 10), steps
    assert [s[3] for s in alone] == list(range(alone[0][3], 101, 5)), steps
    ranks = finals(log)
    assert list(ranks) == [0] and ranks[0][:2] == (1, f"{name}-worker-0"), log[-6000:]
    assert_worker_1_came_back_unused(cluster, name, removed, log)


def test_elastic_training_below_min_np_fails_saying_why(cluster):
    """min-np 2: with one worker left Horovod waits --elastic-timeout (HOROVOD_ELASTIC_TIMEOUT) for a second slot,
    then stops, saying so; the job fails with that reason in the step's error."""
    name = "hvd-elastic-min"
    state, message, log, removed = elastic_run(cluster, name, min_workers=2, HOROVOD_ELASTIC_TIMEOUT="5")
    assert state == "Failed", f"{message}\n{log[-6000:]}"
    assert not RESET.findall(log) and not finals(log), log[-6000:]
    why = ("Timed out waiting for {activity}. Please check that you have enough resources to run at least 2 Horovod "
           "processes. Timeout after 5 seconds.")  # Horovod 0.28.1's words, its placeholder unfilled
    failed = log[log.index("\nFAILED Horovod training with 2 worker(s) failed (exit code 1)"):]
    assert f"TimeoutException: {why}" in failed, log[-6000:]  # the provider's error says why
    assert_worker_1_came_back_unused(cluster, name, removed, log)
