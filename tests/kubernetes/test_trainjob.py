"""Horovod training as a Kubeflow Trainer v2 TrainJob: manifests checked against the real CRDs, the state read
from its status, and the controller against the FAKE API server's scripted Trainer v2 (tests/kubernetes/fake_api.py)
through the real kubernetes client, running from the TrainingRuntimes of deploy/kubernetes/trainer/.

The CRDs are read from ``../shared/k8s-crds/`` beside the repository (never copied in); the schema tests skip with
the reason where that folder is absent.
"""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from airflow_mlops.kubernetes.api import CrdMissingError, KubernetesApiError, owner_labels
from airflow_mlops.kubernetes.jobs import JobController
from airflow_mlops.kubernetes.launchers import LAUNCHERS, horovod_launcher
from airflow_mlops.kubernetes.mpijob import HOSTFILE, MPIJobSpec, job_name
from airflow_mlops.kubernetes.schema import ManifestError
from airflow_mlops.kubernetes.trainjob import (
    CUDA_RUNTIME,
    RUNTIME,
    TrainJobController,
    TrainJobSpec,
    build_trainjob,
    runtime_errors,
    trainjob_state,
    validate_trainingruntime,
    validate_trainjob,
)
from airflow_mlops.shared import ENV_HOSTFILE, ENV_NP
from tests.conftest import CRD_DIR, NO_CRDS, REPO
from tests.kubernetes.fake_api import LocalProcessKubelet, PodRun, ScriptedKubelet, use_local_python
from tests.kubernetes.rbac_check import assert_allowed

needs_trainer_crds = pytest.mark.skipif(not (CRD_DIR / "trainer.kubeflow.org_trainjobs.yaml").is_file(), reason=NO_CRDS)

RUNTIMES = REPO / "deploy" / "kubernetes" / "trainer" / "trainingruntime-horovod.yaml"
NS = "mlops"
IMAGE, CUDA_IMAGE = "airflow-mlops-tfx:0.1.0", "airflow-mlops-tfx-cuda:0.1.0"  # the shipped runtimes' images
COMMAND = ["python", "-m", "airflow_mlops.runtime_side.entrypoint", "horovod.train"]
LABELS = owner_labels("mlops_train_deploy", "Trainer", "manual__1")


def spec(**overrides) -> TrainJobSpec:
    return TrainJobSpec(**{"name": job_name("mlops_train_deploy", "Trainer", "manual__1"), "image": IMAGE,
                           "command": COMMAND, "namespace": NS, "labels": LABELS, **overrides})


def runtimes() -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in yaml.safe_load_all(RUNTIMES.read_text())}


# ----------------------------------------------------------------------------- the manifest


@needs_trainer_crds
@pytest.mark.parametrize("overrides", [
    {},
    {"num_workers": 4, "gpus_per_worker": 8, "image": CUDA_IMAGE,
     "worker_resources": {"requests": {"cpu": "16", "memory": "64Gi"}},
     "node_selector": {"nvidia.com/gpu.product": "A100"}, "service_account": "airflow-mlops",
     "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
     "active_deadline_seconds": 7200, "env": {"NCCL_DEBUG": "INFO"}, "volume_claim": "airflow-mlops-data",
     "mount_path": "/srv/mlops"},
    {"horovodrun": False, "num_workers": 1},
], ids=["cpu", "gpus", "command-itself"])
def test_manifests_validate_against_the_real_crd(overrides):
    validate_trainjob(build_trainjob(spec(**overrides)), CRD_DIR)


def test_the_trainer_runs_the_step_on_every_node_with_gpus_per_node():
    job = build_trainjob(spec(num_workers=3, gpus_per_worker=4, image=CUDA_IMAGE,
                              worker_resources={"requests": {"cpu": "8"}}))["spec"]
    assert job["runtimeRef"] == {"apiGroup": "trainer.kubeflow.org", "kind": "TrainingRuntime", "name": CUDA_RUNTIME}
    trainer = job["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (3, 4)
    assert trainer["resourcesPerNode"] == {"requests": {"cpu": "8"}, "limits": {"nvidia.com/gpu": 4}}
    assert trainer["command"] == ["horovodrun", "-np", "12", "--hostfile", HOSTFILE, *COMMAND]
    assert trainer["image"] == CUDA_IMAGE and "ttlSecondsAfterFinished" not in job
    assert build_trainjob(spec())["spec"]["runtimeRef"]["name"] == RUNTIME


def test_a_launcher_that_runs_the_step_itself_learns_the_world_from_its_env():
    trainer = build_trainjob(spec(horovodrun=False, num_workers=2, gpus_per_worker=2, env={"REQ": "{}"}))["spec"]["trainer"]
    assert trainer["command"] == COMMAND
    assert {e["name"]: e["value"] for e in trainer["env"]} == {"REQ": "{}", ENV_NP: "4", ENV_HOSTFILE: HOSTFILE}


def test_labels_volume_and_placement_are_patched_into_both_jobs():
    manifest = build_trainjob(spec(volume_claim="airflow-mlops-data", mount_path="/srv/mlops", service_account="sa",
                                   node_selector={"pool": "gpu"}, tolerations=[{"key": "k", "operator": "Exists"}]))
    assert LABELS.items() <= manifest["metadata"]["labels"].items()
    [patch] = manifest["spec"]["runtimePatches"]
    jobs = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert [j["name"] for j in jobs] == ["launcher", "node"]
    for job in jobs:
        pod = job["template"]["spec"]["template"]
        assert LABELS.items() <= pod["metadata"]["labels"].items()
        assert pod["spec"]["volumes"] == [{"name": "mlops-data", "persistentVolumeClaim": {"claimName": "airflow-mlops-data"}}]
        assert pod["spec"]["containers"] == [{"name": "node", "volumeMounts": [{"name": "mlops-data",
                                                                                  "mountPath": "/srv/mlops"}]}]
        assert (pod["spec"]["serviceAccountName"], pod["spec"]["nodeSelector"]) == ("sa", {"pool": "gpu"})


def test_elastic_training_is_refused_with_what_to_use_instead():
    with pytest.raises(ManifestError, match=r'no elastic MPI training .* use launcher="mpijob" for elastic Horovod'):
        build_trainjob(spec(min_workers=2, max_workers=4))


@pytest.mark.parametrize(("overrides", "message"), [
    ({"clean_pod_policy": "All"}, "clean_pod_policy: a TrainJob has none"),
    ({"backoff_limit": 2}, "backoff_limit: the TrainingRuntime sets it"),
    ({"ttl_seconds_after_finished": 60}, "ttl_seconds_after_finished: the TrainingRuntime sets it"),
    ({"launcher_resources": {"requests": {"cpu": "1"}}}, "launcher_resources: the launcher is one of the nodes"),
    ({"active_deadline_seconds": 0}, "active_deadline_seconds: a TrainJob's is at least 1"),
    ({"worker_command": ["sshd"]}, "worker_command: the TrainingRuntime sets it"),
    ({"ssh_auth_mount_path": "/root/.ssh"}, "ssh_auth_mount_path: the TrainingRuntime sets it"),
    ({"run_as_user": 0}, "run_as_user: the TrainingRuntime runs the pods as 1000"),
    ({"env": {"OMPI_MCA_plm_rsh_args": "-p 22"}}, "set by Trainer's MPI plugin"),
    ({"runtime": "Not_A_Name"}, "runtime: 'Not_A_Name' is no TrainingRuntime name"),
], ids=lambda v: next(iter(v)) if isinstance(v, dict) else None)
def test_what_the_runtime_decides_is_refused_not_ignored(overrides, message):
    assert any(message in problem for problem in spec(**overrides).errors())


def test_the_mpijob_checks_still_apply():
    bad = spec(name="Bad_Name", image=" ", command=[], num_workers=0, worker_resources={"limits": {"cpu": "lots"}})
    with pytest.raises(ManifestError) as info:
        build_trainjob(bad)
    for part in ("name: 'Bad_Name'", "image: a container image", "command: a non-empty list", "num_workers: must be",
                 "worker_resources.limits['cpu']: 'lots'"):
        assert part in str(info.value)


@needs_trainer_crds
def test_schema_cel_and_webhook_errors_carry_their_path():
    manifest = build_trainjob(spec())
    manifest["spec"]["trainer"]["numNodes"] = "four"
    manifest["spec"]["trainer"]["numProcPerNode"] = 0
    manifest["spec"]["trainer"]["env"] = [{"name": "OMPI_MCA_orte_default_hostfile", "value": "/x"}]
    manifest["spec"]["runtimePatches"][0]["manager"] = "airflow mlops"
    manifest["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]["template"][
        "spec"]["template"]["spec"] = {"containers": [{"name": "node", "env": [{"name": "A", "value": "1"}]}]}
    manifest["metadata"]["name"] = "9-starts-with-a-digit"
    with pytest.raises(ManifestError) as info:
        validate_trainjob(manifest, CRD_DIR)
    message = str(info.value)
    for part in ("$.spec.trainer.numNodes: 'four' is not of type 'integer'", "$.metadata.name: '9-starts-with-a-digit'",
                 "$.spec.trainer.numProcPerNode: must be >= 1", "must not set the MPI plugin's",
                 "$.spec.runtimePatches[0].manager: 'airflow mlops' must be a domain-prefixed path",
                 "must not patch the env of the container 'node'"):
        assert part in message


# ----------------------------------------------------------------------------- the shipped TrainingRuntimes


@needs_trainer_crds
@pytest.mark.parametrize("name", [RUNTIME, CUDA_RUNTIME])
def test_the_shipped_runtimes_validate_against_the_real_crd(name):
    validate_trainingruntime(runtimes()[name], CRD_DIR)


@pytest.mark.parametrize(("name", "image", "gpus"), [(RUNTIME, IMAGE, 0), (CUDA_RUNTIME, CUDA_IMAGE, 2)])
def test_the_shipped_runtimes_run_the_jobs_this_module_builds(name, image, gpus):
    """Each runtime is the one a spec with (or without) GPUs names, on the image of [mlops] kubernetes_image's default."""
    job = build_trainjob(spec(image=image, gpus_per_worker=gpus))
    assert job["spec"]["runtimeRef"]["name"] == name
    assert runtime_errors(runtimes()[name], job) == []


def test_runtime_errors_name_what_the_runtime_lacks():
    runtime = runtimes()[RUNTIME]
    runtime["spec"]["mlPolicy"]["mpi"]["runLauncherAsNode"] = False
    problems = runtime_errors(runtime, build_trainjob(spec(image="registry.example/airflow-mlops-tfx:0.1.0")))
    assert any("runLauncherAsNode must be true" in p for p in problems)
    assert any("runs the nodes on 'airflow-mlops-tfx:0.1.0' but the step's image is "
               "'registry.example/airflow-mlops-tfx:0.1.0'" in p for p in problems)
    del runtime["spec"]["mlPolicy"]["mpi"]
    assert runtime_errors(runtime, build_trainjob(spec())) == [
        "TrainingRuntime mlops/airflow-mlops-horovod has no MPI policy (spec.mlPolicy.mpi): it is no Horovod runtime"]


@needs_trainer_crds
def test_runtime_rules_beyond_the_schema():
    runtime = runtimes()[RUNTIME]
    jobs = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    jobs.reverse()  # the launcher now depends on a job listed after it
    jobs[0]["template"]["spec"]["template"]["spec"]["containers"][0]["name"] = "main"
    runtime["spec"]["mlPolicy"]["torch"] = {}
    with pytest.raises(ManifestError) as info:
        validate_trainingruntime(runtime, CRD_DIR)
    for part in ("replicatedJobs[0].dependsOn: 'node' is not a replicated job listed before it",
                 "a trainer job needs a container 'node'", "only one of the policies can be configured"):
        assert part in str(info.value)


# ----------------------------------------------------------------------------- the state


def condition(kind: str, reason: str = "", message: str = "", status: str = "True") -> dict:
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-11-27T08:00:00Z"}


def jobs_status(launcher: dict, node: dict) -> list[dict]:
    zero = dict.fromkeys(("active", "failed", "ready", "succeeded", "suspended"), 0)
    return [{"name": "node", **zero, **node}, {"name": "launcher", **zero, **launcher}]


@pytest.mark.parametrize(("status", "expected"), [
    ({}, ("Pending", "", "")),
    ({"jobsStatus": jobs_status({}, {"active": 1})}, ("Created", "", "node: 1 active; launcher: no pods yet")),
    ({"jobsStatus": jobs_status({"active": 1}, {"active": 1, "ready": 1})},
     ("Running", "", "node: 1 active, 1 ready; launcher: 1 active")),
    ({"conditions": [condition("Suspended", "Suspended", "TrainJob is suspended")]},
     ("Suspended", "Suspended", "TrainJob is suspended")),
    ({"conditions": [condition("Suspended", "Resumed", status="False")], "jobsStatus": jobs_status({}, {"active": 1})},
     ("Created", "", "node: 1 active; launcher: no pods yet")),
    ({"conditions": [condition("Complete", "AllJobsCompleted", "jobset completed successfully")]},
     ("Succeeded", "AllJobsCompleted", "jobset completed successfully")),
    ({"conditions": [condition("Failed", "DeadlineExceeded", "TrainJob exceeded its active deadline")]},
     ("Failed", "DeadlineExceeded", "TrainJob exceeded its active deadline")),
], ids=["nothing", "created", "running", "suspended", "resumed", "complete", "deadline"])
def test_state_from_the_trainers_status(status, expected):
    assert trainjob_state({"status": status}) == expected


# ----------------------------------------------------------------------------- the launchers


def test_both_launchers_offer_the_same_runner_facing_api():
    assert set(LAUNCHERS) == {"mpijob", "trainjob"}
    public = {n for n, _ in inspect.getmembers(JobController, inspect.isfunction) if not n.startswith("_")}
    assert {"submit", "get", "delete", "launcher_pod", "launcher_log", "wait"} <= public
    kwargs = {"name": "hvd-a", "image": IMAGE, "command": COMMAND, "namespace": NS, "num_workers": 2,
              "horovodrun": False, "env": {"A": "1"}}
    for launcher in LAUNCHERS.values():
        assert issubclass(launcher.controller_class, JobController)
        assert issubclass(launcher.spec_class, MPIJobSpec)
        manifest = launcher.build(launcher.spec_class(**kwargs))
        assert manifest["kind"] == launcher.kind and launcher.state(manifest)[0] == "Pending"
        trigger = launcher.trigger("hvd-a", NS, "kubernetes_default", poll_interval=1.0)
        assert trigger.serialize()[0] == launcher.trigger_path
    assert horovod_launcher("trainjob").controller_class.launcher_container == "node"
    assert horovod_launcher("mpijob").controller_class.launcher_container == "launcher"
    with pytest.raises(ValueError, match=r"unknown Horovod launcher 'tfjob'; known: \['mpijob', 'trainjob'\]"):
        horovod_launcher("tfjob")


# ----------------------------------------------------------------------------- against the FAKE Trainer v2


@pytest.fixture
def trainer(fake_kube):
    """The fake with Kubeflow Trainer v2's CRDs and the provider's TrainingRuntimes in ``mlops``."""
    for plural in ("trainjobs", "trainingruntimes"):
        fake_kube.register_crd(plural)
    for doc in runtimes().values():
        fake_kube.create(doc)
    return fake_kube


@pytest.fixture
def jobs(kube_client) -> TrainJobController:
    return TrainJobController(kube_client, sleep=lambda seconds: time.sleep(min(seconds, 0.02)))


def launcher(lines, exit_code=0, interval=0.02, **kwargs) -> ScriptedKubelet:
    return ScriptedKubelet(pods={"*-launcher-*": PodRun(logs=list(lines), exit_code=exit_code, interval=interval)},
                           **kwargs)


def pods(fake, role: str | None = None) -> list[dict]:
    return [p for p in fake.list_objects("pods", NS)
            if role in (None, p["metadata"]["labels"].get("jobset.sigs.k8s.io/replicatedjob-name"))]


def test_a_job_runs_its_nodes_then_its_launcher_and_succeeds(trainer, jobs):
    trainer.kubelet = launcher(["epoch 1", "done"], interval=0.3)
    followed = []
    job, adopted = jobs.submit(build_trainjob(spec(num_workers=3)), LABELS)
    assert not adopted and job["kind"] == "TrainJob"
    state = jobs.wait(job["metadata"]["name"], NS, poll_interval=0.02,
                      follow=lambda pod: followed.append(pod.metadata.name))
    assert state == ("Succeeded", "AllJobsCompleted", "jobset completed successfully")
    name = job["metadata"]["name"]
    assert jobs.launcher_log(name, NS) == "epoch 1\ndone\n"
    assert followed == [jobs.launcher_pod(name, NS).metadata.name]
    hostfile = trainer.read("configmaps", NS, f"{name}-mpi-hostfile")["data"]["hostfile"]
    assert hostfile == "".join(f"{name}-{host}.{name} slots=1\n" for host in ("node-0-0", "node-0-1", "launcher-0-0"))
    assert pods(trainer, "node") == []  # the finished JobSet deleted the nodes
    assert_allowed(trainer)


def test_the_launcher_waits_for_every_node_to_be_ready(trainer, jobs):
    trainer.kubelet = launcher(["done"], workers=PodRun(run_until_deleted=True, start_delay=1.0))
    job, _ = jobs.submit(build_trainjob(spec(num_workers=3)), LABELS)
    name = job["metadata"]["name"]
    trainer.wait_until(lambda: len(pods(trainer, "node")) == 2, what="two node pods")
    assert pods(trainer, "launcher") == [] and jobs.get(name, NS) is not None
    assert trainjob_state(jobs.get(name, NS))[0] == "Created"
    trainer.wait_until(lambda: pods(trainer, "launcher"), what="the launcher pod")
    assert all(p["status"]["phase"] == "Running" for p in pods(trainer, "node"))


def test_one_worker_still_starts_a_node_pod(trainer, jobs):
    """Trainer v2 with runLauncherAsNode runs max(numNodes-1, 1) node pods."""
    trainer.kubelet = ScriptedKubelet(pods={"*-launcher-*": PodRun(run_until_deleted=True)})
    job, _ = jobs.submit(build_trainjob(spec(num_workers=1)), LABELS)
    trainer.wait_until(lambda: pods(trainer, "launcher"), what="the launcher pod")
    [node] = pods(trainer, "node")
    assert node["spec"]["hostname"] == f"{job['metadata']['name']}-node-0-0"


def test_gpus_volume_and_env_reach_the_launcher_and_the_nodes(trainer, jobs):
    trainer.kubelet = ScriptedKubelet(pods={"*-launcher-*": PodRun(run_until_deleted=True)})
    manifest = build_trainjob(spec(num_workers=2, gpus_per_worker=4, image=CUDA_IMAGE, horovodrun=False,
                                   volume_claim="airflow-mlops-data", mount_path="/srv/mlops"))
    jobs.submit(manifest, LABELS)
    trainer.wait_until(lambda: pods(trainer, "launcher"), what="the launcher pod")
    for pod in (pods(trainer, "launcher")[0], pods(trainer, "node")[0]):
        container = pod["spec"]["containers"][0]
        assert container["image"] == CUDA_IMAGE and container["resources"]["limits"] == {"nvidia.com/gpu": 4}
        assert {"name": "mlops-data", "mountPath": "/srv/mlops"} in container["volumeMounts"]
        assert {"name": "mpi-ssh-auth", "mountPath": "/home/mlops/.ssh"} in container["volumeMounts"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert (env[ENV_NP], env[ENV_HOSTFILE]) == ("8", HOSTFILE)
        assert LABELS.items() <= pod["metadata"]["labels"].items()
    launcher_pod, node_pod = pods(trainer, "launcher")[0], pods(trainer, "node")[0]
    assert node_pod["spec"]["containers"][0]["command"] == ["airflow-mlops-mpi-worker"]
    assert launcher_pod["spec"]["containers"][0]["command"] == COMMAND
    env = {e["name"]: e.get("value") for e in launcher_pod["spec"]["containers"][0]["env"]}
    assert env["OMPI_MCA_orte_set_default_slots"] == "4"
    name = manifest["metadata"]["name"]
    assert trainer.read("configmaps", NS, f"{name}-mpi-hostfile")["data"]["hostfile"].count("slots=4") == 2


@pytest.mark.parametrize(("kubelet", "reason"), [
    (launcher(["Traceback", "boom"], exit_code=1), "FailedJobs"),
    (ScriptedKubelet(pods={"*-launcher-*": PodRun(run_until_deleted=True)},
                     workers=PodRun(logs=["sshd listening", "sshd killed"], interval=0.3, exit_code=1)), "FailedJobs"),
], ids=["launcher", "node"])
def test_a_failed_launcher_or_node_fails_the_job(trainer, jobs, kubelet, reason):
    trainer.kubelet = kubelet
    job, _ = jobs.submit(build_trainjob(spec()), LABELS)
    state = jobs.wait(job["metadata"]["name"], NS, poll_interval=0.02, timeout=10)
    assert state == ("Failed", reason, "jobset failed due to one or more job failures")
    trainer.wait_until(lambda: not [p for p in pods(trainer) if p["status"]["phase"] in ("Pending", "Running")],
                       what="the failed JobSet to delete what still ran")


def test_the_deadline_fails_the_job_and_removes_its_pods(trainer, jobs):
    trainer.kubelet = ScriptedKubelet(pods={"*-launcher-*": PodRun(run_until_deleted=True)})
    job, _ = jobs.submit(build_trainjob(spec(active_deadline_seconds=1)), LABELS)
    state = jobs.wait(job["metadata"]["name"], NS, poll_interval=0.05, timeout=10)
    assert state == ("Failed", "DeadlineExceeded", "TrainJob exceeded its active deadline")
    trainer.wait_until(lambda: not pods(trainer), what="the pods to go")


def test_a_retry_adopts_its_running_job_and_replaces_a_failed_one(trainer, jobs):
    trainer.kubelet = ScriptedKubelet(pods={"*-launcher-*": PodRun(run_until_deleted=True)})
    manifest = build_trainjob(spec())
    name = manifest["metadata"]["name"]
    first, _ = jobs.submit(manifest, LABELS)
    again, adopted = jobs.submit(manifest, LABELS)
    assert adopted and again["metadata"]["uid"] == first["metadata"]["uid"]
    assert len(trainer.requests_of("POST", "/trainjobs")) == 2  # the second answered 409, then was adopted
    trainer.modify(NS, name, lambda o: o["status"].update(conditions=[condition("Failed", "FailedJobs")]),
                   resource="trainjobs")
    replaced, adopted = jobs.submit(manifest, LABELS)
    assert not adopted and replaced["metadata"]["uid"] != first["metadata"]["uid"]
    assert_allowed(trainer)


def test_a_job_of_the_same_name_that_is_not_ours_is_refused(trainer, jobs):
    manifest = build_trainjob(spec())
    trainer.create({**manifest, "metadata": {**manifest["metadata"], "labels": {"someone": "else"}}})
    with pytest.raises(KubernetesApiError, match="was not made by this task"):
        jobs.submit(manifest, LABELS)


@pytest.mark.parametrize(("change", "message"), [
    (lambda fake: fake.delete("trainingruntimes", NS, RUNTIME),
     "TrainingRuntime mlops/airflow-mlops-horovod does not exist: apply deploy/kubernetes/trainer"),
    (lambda fake: fake.modify(NS, RUNTIME, lambda o: o["spec"]["template"]["spec"]["replicatedJobs"][0]["template"][
        "spec"]["template"]["spec"]["containers"][0].update(image="other:1"), resource="trainingruntimes"),
     "runs the nodes on 'other:1' but the step's image is 'airflow-mlops-tfx:0.1.0'"),
], ids=["missing", "other-image"])
def test_a_runtime_that_cannot_run_the_job_is_refused_before_submitting(trainer, jobs, change, message):
    change(trainer)
    with pytest.raises(ManifestError, match=message):
        jobs.submit(build_trainjob(spec()), LABELS)
    assert trainer.requests_of("POST", "/trainjobs") == []


def test_delete_removes_the_job_and_its_pods(trainer, jobs):
    trainer.kubelet = ScriptedKubelet(pods={"*-launcher-*": PodRun(run_until_deleted=True)})
    job, _ = jobs.submit(build_trainjob(spec()), LABELS)
    name = job["metadata"]["name"]
    trainer.wait_until(lambda: pods(trainer, "launcher"), what="the launcher pod")
    assert jobs.delete(name, NS) is True
    assert jobs.get(name, NS) is None and pods(trainer) == [] and jobs.delete(name, NS) is False
    assert trainer.list_objects("secrets", NS) == [] and trainer.list_objects("configmaps", NS) == []
    with pytest.raises(KubernetesApiError, match="TrainJob mlops/.* was deleted before it ended"):
        jobs.wait(name, NS, poll_interval=0.02)


def test_wait_gives_up_after_its_timeout(trainer, jobs):
    trainer.kubelet = ScriptedKubelet(pods={"*-launcher-*": PodRun(run_until_deleted=True)})
    job, _ = jobs.submit(build_trainjob(spec()), LABELS)
    state, _, message = jobs.wait(job["metadata"]["name"], NS, poll_interval=0.02, timeout=0.2)
    assert state == "Timeout" and message.startswith("TrainJob mlops/") and "after 0.2 s" in message


def test_a_suspended_job_has_no_pods_until_resumed(trainer, jobs):
    trainer.kubelet = ScriptedKubelet(pods={"*-launcher-*": PodRun(run_until_deleted=True)})
    job, _ = jobs.submit(build_trainjob(spec()), LABELS)
    name = job["metadata"]["name"]
    trainer.wait_until(lambda: pods(trainer, "launcher"), what="the launcher pod")
    trainer.modify(NS, name, lambda o: o["spec"].update(suspend=True), resource="trainjobs")
    assert pods(trainer) == [] and trainjob_state(jobs.get(name, NS))[0] == "Suspended"
    trainer.modify(NS, name, lambda o: o["spec"].update(suspend=False), resource="trainjobs")
    trainer.wait_until(lambda: pods(trainer, "launcher"), what="the launcher pod again")


@pytest.mark.parametrize("operation", ["get", "delete"])
def test_a_missing_job_is_none_but_a_missing_trainer_is_an_error(trainer, jobs, operation):
    assert getattr(jobs, operation)("nope", NS) in (None, False)
    trainer.unregister_crd("trainjobs")
    with pytest.raises(CrdMissingError, match="does not know the trainer.kubeflow.org API: Kubeflow Trainer v2"):
        getattr(jobs, operation)("nope", NS)


def test_without_trainer_v2_submitting_says_what_to_install(fake_kube, jobs):
    with pytest.raises(CrdMissingError, match='Kubeflow Trainer v2 .* or use launcher="mpijob"'):
        jobs.submit(build_trainjob(spec()), LABELS)


def test_the_webhook_refuses_a_job_whose_runtime_does_not_exist(trainer, kube_client):
    from kubernetes.client import CustomObjectsApi

    manifest = build_trainjob(spec(runtime="nowhere"))
    with pytest.raises(ApiException) as caught:
        CustomObjectsApi(kube_client).create_namespaced_custom_object("trainer.kubeflow.org", "v1alpha1", NS,
                                                                      "trainjobs", manifest)
    message = json.loads(caught.value.body)["message"]
    assert caught.value.status == 422
    assert message.startswith('admission webhook "validator.trainjob.trainer.kubeflow.org" denied the request: ')
    assert message.endswith('trainingruntimes.trainer.kubeflow.org "nowhere" not found: specified trainingRuntime '
                            "must be created before the TrainJob is created")


def test_the_local_process_kubelet_runs_the_launcher_with_its_env(trainer, jobs, tmp_path):
    """The launcher's command runs as a local process (the nodes idle as sshd would); its env is the TrainJob's."""
    trainer.kubelet = LocalProcessKubelet(rewrite=use_local_python())
    command = ["python", "-c", f"import os; print(os.environ['{ENV_NP}'], os.environ['{ENV_HOSTFILE}'])"]
    job, _ = jobs.submit(build_trainjob(spec(command=command, horovodrun=False, num_workers=2, gpus_per_worker=3,
                                             image=CUDA_IMAGE)), LABELS)
    name = job["metadata"]["name"]
    assert jobs.wait(name, NS, poll_interval=0.02, timeout=30)[0] == "Succeeded"
    assert jobs.launcher_log(name, NS) == f"6 {HOSTFILE}\n"


def test_the_shipped_runtime_file_is_what_the_kustomization_applies():
    from tests.deploy import minikustomize as mk

    folder = Path(RUNTIMES).parent
    kustomization = mk.load_kustomization(folder)
    assert kustomization["resources"] == [RUNTIMES.name]
    assert {p.name for p in folder.glob("*.yaml")} == {RUNTIMES.name, "kustomization.yaml"}
    assert kustomization["namespace"] == NS
    assert {doc["metadata"]["namespace"] for doc in runtimes().values()} == {NS}
