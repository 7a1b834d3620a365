"""MPIJob (kubeflow.org/v2beta1) manifests for Horovod training, checked against the real CRD.

The CRD is read from ``../shared/k8s-crds/`` beside the repository (never copied in); the
schema tests skip with the reason where that folder is absent.
"""

from __future__ import annotations


import pytest

from airflow_mlops.kubernetes.api import CrdMissingError
from airflow_mlops.kubernetes.mpijob import (
    DISCOVER_HOSTS,
    HOSTFILE,
    MPIJobController,
    MPIJobSpec,
    build_mpijob,
    job_name,
    mpijob_state,
    validate_mpijob,
)
from airflow_mlops.serving.manifest import ManifestError

from tests.conftest import CRD_DIR, needs_crds
COMMAND = ["python", "-m", "airflow_mlops.runtime_side.entrypoint", "horovod.train"]


def spec(**overrides) -> MPIJobSpec:
    return MPIJobSpec(**{"name": job_name("mlops_train_deploy", "Trainer", "manual__2026-11-27T08:00:00+00:00"),
                         "image": "registry.example/airflow-mlops-tfx:0.1.0", "command": COMMAND, **overrides})


def test_job_names_are_deterministic_short_and_distinct():
    first = job_name("mlops_train_deploy", "Trainer", "manual__1")
    assert first == job_name("mlops_train_deploy", "Trainer", "manual__1")  # a retry finds its job
    assert first != job_name("mlops_train_deploy", "Trainer", "manual__2")
    long = job_name("d" * 200, "A_Very.Long_Task_ID" * 10, "r")
    assert len(long) <= 48 and long[0].isalpha() and spec(name=long).errors() == []


@needs_crds
@pytest.mark.parametrize("overrides", [
    {},
    {"num_workers": 4, "gpus_per_worker": 8, "worker_resources": {"requests": {"cpu": "16", "memory": "64Gi"}},
     "node_selector": {"nvidia.com/gpu.product": "A100"}, "service_account": "airflow-mlops",
     "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
     "active_deadline_seconds": 7200, "env": {"NCCL_DEBUG": "INFO"}},
    {"min_workers": 2, "max_workers": 6, "clean_pod_policy": "All", "ttl_seconds_after_finished": None},
], ids=["cpu", "gpus", "elastic"])
def test_manifests_validate_against_the_real_crd(overrides):
    validate_mpijob(build_mpijob(spec(**overrides)), CRD_DIR)


def test_gpus_set_slots_limits_and_ranks():
    manifest = build_mpijob(spec(num_workers=3, gpus_per_worker=4))
    job = manifest["spec"]
    worker = job["mpiReplicaSpecs"]["Worker"]
    assert job["slotsPerWorker"] == 4 and worker["replicas"] == 3
    assert worker["template"]["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": 4}
    launcher = job["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
    assert launcher["command"] == ["horovodrun", "-np", "12", "--hostfile", HOSTFILE, *COMMAND]
    assert job["runPolicy"] == {"cleanPodPolicy": "Running", "backoffLimit": 0, "ttlSecondsAfterFinished": 3600}


def test_elastic_uses_the_discovery_script_and_max_replicas():
    job = build_mpijob(spec(min_workers=2, max_workers=5, gpus_per_worker=2))["spec"]
    launcher = job["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
    assert launcher["command"][:9] == ["horovodrun", "-np", "4", "--min-np", "4", "--max-np", "10",
                                       "--host-discovery-script", DISCOVER_HOSTS]
    assert job["mpiReplicaSpecs"]["Worker"]["replicas"] == 5


def test_every_spec_problem_is_named():
    bad = spec(name="Bad_Name", image=" ", command=[], num_workers=0, min_workers=3, max_workers=2,
               clean_pod_policy="Never", labels={"bad key!": "x"}, worker_resources={"limits": {"cpu": "lots"}})
    with pytest.raises(ManifestError) as info:
        build_mpijob(bad)
    message = str(info.value)
    for part in ("name: 'Bad_Name'", "image: a container image", "command: a non-empty list", "num_workers: must be",
                 "elastic mode needs 1 <= min_workers <= max_workers, got 3/2", "clean_pod_policy: must be one of",
                 "labels['bad key!']", "worker_resources.limits['cpu']: 'lots'"):
        assert part in message


@needs_crds
def test_schema_errors_carry_their_path():
    manifest = build_mpijob(spec())
    manifest["spec"]["slotsPerWorker"] = "four"
    manifest["spec"]["runPolicy"]["cleanPodPolicy"] = 3
    with pytest.raises(ManifestError, match=r"\$\.spec\.runPolicy\.cleanPodPolicy: 3 is not of type 'string'"
                                            r"(.|\n)*\$\.spec\.slotsPerWorker: 'four' is not of type 'integer'"):
        validate_mpijob(manifest, CRD_DIR)


def condition(kind: str, at: str, reason: str = "", message: str = "", status: str = "True") -> dict:
    return {"type": kind, "status": status, "lastTransitionTime": at, "reason": reason, "message": message}


@pytest.mark.parametrize("conditions, expected", [
    ([], ("Pending", "", "")),
    ([condition("Created", "2026-11-27T08:00:00Z", "MPIJobCreated")], ("Created", "MPIJobCreated", "")),
    ([condition("Created", "2026-11-27T08:00:00Z"), condition("Running", "2026-11-27T08:01:00Z", "MPIJobRunning")],
     ("Running", "MPIJobRunning", "")),
    ([condition("Created", "2026-11-27T08:00:00Z"), condition("Running", "2026-11-27T08:01:00Z", status="False"),
      condition("Failed", "2026-11-27T08:05:00Z", "BackoffLimitExceeded", "launcher failed 1 times")],
     ("Failed", "BackoffLimitExceeded", "launcher failed 1 times")),
    ([condition("Running", "2026-11-27T08:01:00Z", status="False"),
      condition("Succeeded", "2026-11-27T08:09:00Z", "MPIJobSucceeded", "MPIJob default/hvd is successfully completed.")],
     ("Succeeded", "MPIJobSucceeded", "MPIJob default/hvd is successfully completed.")),
])
def test_state_from_the_operators_conditions(conditions, expected):
    assert mpijob_state({"status": {"conditions": conditions}}) == expected


@pytest.mark.parametrize("operation", ["get", "delete"])
def test_a_missing_job_is_none_but_a_missing_mpi_operator_is_an_error(fake_kube, kube_client, operation):
    """Both are a 404 from the API server; only the first means "no such job"."""
    controller = MPIJobController(kube_client, sleep=lambda seconds: None)
    assert getattr(controller, operation)("nope", "default") in (None, False)
    fake_kube.unregister_crd("mpijobs")
    with pytest.raises(CrdMissingError, match="the Kubeflow MPI Operator"):
        getattr(controller, operation)("nope", "default")
