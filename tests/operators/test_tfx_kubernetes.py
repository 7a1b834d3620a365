"""The TFX operators on the Kubernetes backend: Horovod training as an MPIJob or a Kubeflow Trainer v2
TrainJob, deferrable step pods.

Against the FAKE Kubernetes API server (tests/kubernetes/fake_api.py) and its scripted MPI Operator and
Trainer v2; the cncf-kubernetes provider's hooks, triggers and PodManager and the real clients talk to it. The
launcher's "work" is scripted here (its log, its exit code); the real TFX node in a launcher is run
by tests/integration/test_kubernetes_backend.py.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from types import SimpleNamespace

import pytest
import yaml
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from airflow_mlops.exceptions import (
    DataValidationError,
    InvalidArgumentError,
    MlopsException,
    RuntimeStepFailed,
    RuntimeStepRejected,
)
import airflow_mlops
from airflow_mlops.kubernetes.mpijob import build_mpijob, validate_mpijob
from airflow_mlops.kubernetes.trainjob import CUDA_RUNTIME, build_trainjob, validate_trainjob
from airflow_mlops.operators.tfx import (
    CsvExampleGenOperator,
    ExampleValidatorOperator,
    HorovodTrainerOperator,
    ImportSchemaGenOperator,
    SchemaGenOperator,
    StatisticsGenOperator,
    TransformOperator,
)
from airflow_mlops.runtimes.contract import REQUEST_ENV, RESULT_MARKER, StepRequest
from airflow_mlops.triggers.mpijob import MPIJobTrigger
from airflow_mlops.triggers.trainjob import TrainJobTrigger
from tests.conftest import CRD_DIR, NO_CRDS, REPO, needs_crds
from tests.kubernetes.rbac_check import assert_allowed
from tests.kubernetes.fake_api import PodRun, ScriptedKubelet

NODE_RESULT = {"component": "HorovodTrainer", "execution_id": 12, "state": "COMPLETE", "reused": False,
               "outputs": {"model": [{"type": "Model", "id": 40, "uri": "/srv/mlops/pipelines/p/tr/model/12"}]}}


def result_line(outputs: dict, status: str = "succeeded", error_type: str = "RuntimeError", message: str = "boom") -> str:
    error = None if status == "succeeded" else {"type": error_type, "message": message, "details": []}
    return RESULT_MARKER + json.dumps({"contract_version": 1, "status": status, "outputs": outputs, "error": error})


@pytest.fixture
def k8s_env(fake_kube, kube_conn, clean_mlops_env, tmp_path):
    for key, value in {"BACKEND": "kubernetes", "KUBERNETES_CONN_ID": kube_conn, "KUBERNETES_NAMESPACE": "mlops",
                       "KUBERNETES_IMAGE": "registry.example/airflow-mlops-{runtime}:{version}",
                       "KUBERNETES_VOLUME_CLAIM": "airflow-mlops-data", "STATE_DIR": str(tmp_path / "state"),
                       "KUBERNETES_SERVICE_ACCOUNT": "airflow-mlops"}.items():
        clean_mlops_env.setenv(f"AIRFLOW__MLOPS__{key}", value)
    return fake_kube


def build_ops(launcher: str = "mpijob") -> SimpleNamespace:
    """The DAG's operators, built from scratch: Airflow resumes a deferred task on a fresh operator."""
    with DAG("train", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        eg = CsvExampleGenOperator(task_id="eg", pipeline_name="p")
        sg = StatisticsGenOperator(task_id="sg", pipeline_name="p", examples=eg, deferrable=True, poll_interval=0.1)
        sc = ImportSchemaGenOperator(task_id="sc", pipeline_name="p", schema_file=__file__)
        tf = TransformOperator(task_id="tf", pipeline_name="p", examples=eg, schema=sc)
        tr = HorovodTrainerOperator(task_id="tr", pipeline_name="p", examples=tf, transform_graph=tf, schema=sc,
                                    num_workers=2, gpus_per_worker=1, poll_interval=0.1, launcher=launcher,
                                    run_policy={"backoff_limit": 0, "clean_pod_policy": "Running"})
        schema = SchemaGenOperator(task_id="schema", pipeline_name="p", statistics=sg, deferrable=True,
                                   poll_interval=0.1)
        ev = ExampleValidatorOperator(task_id="ev", pipeline_name="p", statistics=sg, schema=schema, deferrable=True,
                                      poll_interval=0.1, keep_reference_schema=False)
    return SimpleNamespace(dag=dag, eg=eg, sg=sg, tr=tr, schema=schema, ev=ev)


@pytest.fixture
def ops(k8s_env):
    return build_ops()


@pytest.fixture(autouse=True)
def every_request_is_allowed_by_the_role(fake_kube):
    """Whatever these tests make the operators do, the least-privilege Role allows."""
    yield
    assert_allowed(fake_kube)


def context(run_id: str = "manual__1") -> dict:
    return {"run_id": run_id, "ti": SimpleNamespace(try_number=1, map_index=-1)}


def mpijob_spec(trainer, ctx):
    """The MPIJob the trainer's step runner would submit for task context ``ctx``, and its labels."""
    params, _ = trainer.node_params(ctx)
    placement = trainer.placement()
    return trainer.hook.runner(placement).spec("tfx.run_node", params, trainer.step_context(ctx),
                                              trainer.step_timeout, placement)


def deferred_until_done(ops: SimpleNamespace, task_id: str, launcher: str = "mpijob"):
    """Run task ``task_id`` of ``ops`` until it defers, wait for its trigger's event, and return the
    resume: ``execute_complete`` on a freshly built operator (as Airflow resumes a task)."""
    with pytest.raises(TaskDeferred) as deferred:
        getattr(ops, task_id).execute(context())
    event = asyncio.run(_first_event(deferred.value.trigger))
    return lambda: getattr(build_ops(launcher), task_id).execute_complete(context(), event, **deferred.value.kwargs)


def launcher(lines, exit_code=0, interval=0.05) -> ScriptedKubelet:
    return ScriptedKubelet(pods={"*-launcher-*": PodRun(logs=list(lines), exit_code=exit_code, interval=interval)})


@needs_crds
def test_the_mpijob_is_valid_against_the_real_crd(ops):
    spec, labels = mpijob_spec(ops.tr, context())
    manifest = build_mpijob(spec)
    validate_mpijob(manifest, CRD_DIR)
    launcher_spec = manifest["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]
    worker_spec = manifest["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]
    container = launcher_spec["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert container["image"] == "registry.example/airflow-mlops-tfx-cuda:0.1.0"  # GPUs: the CUDA image
    assert container["command"][:3] == ["python", "-m", "airflow_mlops.runtime_side.entrypoint"]
    assert env["AIRFLOW_MLOPS_HOROVOD_NP"] == "2" and env["AIRFLOW_MLOPS_HOROVOD_HOSTFILE"] == "/etc/mpi/hostfile"
    request = StepRequest.from_dict(json.loads(env[REQUEST_ENV]))
    assert request.step == "tfx.run_node" and request.params["node_id"] == "tr"
    assert worker_spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert manifest["spec"]["slotsPerWorker"] == 1 and manifest["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"] == 2
    assert manifest["spec"]["sshAuthMountPath"] == "/home/mlops/.ssh"
    assert worker_spec["volumes"][0]["persistentVolumeClaim"]["claimName"] == "airflow-mlops-data"
    assert manifest["metadata"]["labels"].items() >= labels.items()
    assert manifest["metadata"]["namespace"] == "mlops" and launcher_spec["serviceAccountName"] == "airflow-mlops"


@needs_crds
def test_an_elastic_mpijob_is_valid_and_discovers_its_hosts(ops):
    ops.tr.min_workers, ops.tr.max_workers = 2, 4
    manifest = build_mpijob(mpijob_spec(ops.tr, context())[0])
    validate_mpijob(manifest, CRD_DIR)
    env = {e["name"]: e["value"]
           for e in manifest["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AIRFLOW_MLOPS_HOROVOD_DISCOVERY"] == "/etc/mpi/discover_hosts.sh"
    assert (env["AIRFLOW_MLOPS_HOROVOD_MIN_NP"], env["AIRFLOW_MLOPS_HOROVOD_MAX_NP"]) == ("2", "4")
    assert manifest["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"] == 4


@pytest.mark.parametrize(("change", "message"), [
    ({"run_policy": {"backofflimit": 1}}, r"unknown run_policy key\(s\) \['backofflimit'\]"),
    ({"min_workers": 3, "max_workers": 2}, "elastic mode needs 1 <= min_workers <= max_workers"),
    ({"run_policy": {"clean_pod_policy": "Some"}}, "clean_pod_policy: must be one of"),
])
def test_wrong_training_arguments_are_named_before_anything_is_created(ops, k8s_env, change, message):
    for key, value in change.items():
        setattr(ops.tr, key, value)
    with pytest.raises(InvalidArgumentError, match=message):
        ops.tr.execute(context())
    assert k8s_env.requests_of("POST", "/mpijobs") == []


def test_training_runs_as_an_mpijob_and_returns_the_launchers_result(ops, k8s_env, capsys):
    k8s_env.kubelet = launcher(["[0]<stdout>: step 100, loss 0.41", "[1]<stdout>: step 100, loss 0.41",
                                result_line(NODE_RESULT)])
    result = ops.tr.execute(context())
    assert result["execution_id"] == 12 and result["outputs"]["model"][0]["id"] == 40
    jobs = k8s_env.list_objects("mpijobs", "mlops")
    assert len(jobs) == 1 and jobs[0]["status"]["conditions"][-1]["type"] == "Succeeded"
    out = capsys.readouterr().out
    assert "[launcher] [1]<stdout>: step 100, loss 0.41" in out  # the launcher's log, followed
    assert "created MPIJob mlops/" in out


def test_a_failed_job_reports_the_condition_and_the_launchers_last_lines(ops, k8s_env):
    k8s_env.kubelet = launcher(["[0]<stderr>: Traceback (most recent call last):",
                                "[0]<stderr>: tensorflow.python.framework.errors_impl.ResourceExhaustedError: OOM",
                                result_line({}, status="failed")], exit_code=1)
    with pytest.raises(MlopsException, match=r"MPIJob mlops/hvd-tr-\w+ ended Failed \(\w+") as caught:
        ops.tr.execute(context())
    assert "the TFX node failed: RuntimeError: boom" in str(caught.value)  # the node's own error
    assert "ResourceExhaustedError: OOM" in str(caught.value)  # the launcher's last lines
    assert RESULT_MARKER not in str(caught.value)


BAD_MODULE = "HorovodTrainer: module file /srv/mlops/m.py has no run_fn: define run_fn(fn_args)"


def test_a_job_failed_on_bad_input_is_not_retried(ops, k8s_env):
    """The node's error kind decides, as locally: a module without run_fn fails the same way on a retry."""
    k8s_env.kubelet = launcher([result_line({}, status="failed", error_type="InvalidInput", message=BAD_MODULE)],
                               exit_code=1)
    with pytest.raises(RuntimeStepRejected, match="the TFX node failed: InvalidInput: HorovodTrainer: module file") \
            as caught:
        ops.tr.execute(context())
    assert isinstance(caught.value, AirflowFailException)  # Airflow fails the task without its retries


def test_a_job_failed_otherwise_is_retried(ops, k8s_env):
    k8s_env.kubelet = launcher([result_line({}, status="failed")], exit_code=1)
    with pytest.raises(RuntimeStepFailed) as caught:
        ops.tr.execute(context())
    assert not isinstance(caught.value, AirflowFailException)


def test_a_deferred_job_failed_on_bad_input_is_not_retried(ops, k8s_env):
    k8s_env.kubelet = launcher([result_line({}, status="failed", error_type="InvalidInput", message=BAD_MODULE)],
                               exit_code=1, interval=0.3)
    ops.tr.deferrable = True
    resume = deferred_until_done(ops, "tr")
    with pytest.raises(RuntimeStepRejected, match="has no run_fn"):
        resume()


def test_a_retry_reattaches_to_the_job_of_its_earlier_try(ops, k8s_env):
    k8s_env.kubelet = launcher(["working", result_line(NODE_RESULT)], interval=0.3)
    spec, _ = mpijob_spec(ops.tr, context())
    k8s_env.create(build_mpijob(spec))  # the earlier try's job, still running
    result = ops.tr.execute(context())
    assert result["execution_id"] == 12
    assert len(k8s_env.requests_of("POST", "/mpijobs")) == 1  # answered 409: adopted, not a second job
    assert len(k8s_env.list_objects("mpijobs")) == 1


def test_a_retry_after_a_failed_job_trains_again(ops, k8s_env):
    k8s_env.kubelet = launcher(["no"], exit_code=1)
    with pytest.raises(MlopsException):
        ops.tr.execute(context())
    first_uid = k8s_env.list_objects("mpijobs")[0]["metadata"]["uid"]
    k8s_env.kubelet = launcher([result_line(NODE_RESULT)])
    assert ops.tr.execute(context())["execution_id"] == 12
    assert k8s_env.list_objects("mpijobs")[0]["metadata"]["uid"] != first_uid


def test_on_kill_deletes_the_job_and_its_pods(ops, k8s_env):
    k8s_env.kubelet = launcher(["forever"], interval=0.0)
    k8s_env.kubelet.pods["*-launcher-*"].run_until_deleted = True
    ops.tr.deferrable = True
    with pytest.raises(TaskDeferred):
        ops.tr.execute(context())
    ops.tr.on_kill()
    assert k8s_env.list_objects("mpijobs") == []
    assert [p for p in k8s_env.list_objects("pods") if p["metadata"]["name"].startswith("hvd-tr-")] == []


def test_without_the_mpi_operator_the_task_says_what_to_install(ops, k8s_env, monkeypatch):
    k8s_env.unregister_crd("mpijobs")
    with pytest.raises(MlopsException, match="does not know the kubeflow.org API: the Kubeflow MPI Operator"):
        ops.tr.execute(context())


def test_deferred_training_resumes_with_the_result(ops, k8s_env, capsys):
    k8s_env.kubelet = launcher(["epoch 1", result_line(NODE_RESULT)], interval=0.2)
    ops.tr.deferrable = True
    with pytest.raises(TaskDeferred) as deferred:
        ops.tr.execute(context())
    trigger = deferred.value.trigger
    assert isinstance(trigger, MPIJobTrigger) and deferred.value.method_name == "execute_complete"
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_mlops.triggers.mpijob.MPIJobTrigger"  # where the triggerer imports it from
    event = asyncio.run(_first_event(MPIJobTrigger(**kwargs)))
    assert event["status"] == "success"
    posted = len(k8s_env.requests_of("POST", "/mpijobs"))
    result = build_ops().tr.execute_complete(context(), event, **deferred.value.kwargs)  # a fresh operator
    assert result["execution_id"] == 12
    assert "[launcher] epoch 1" in capsys.readouterr().out
    assert len(k8s_env.requests_of("POST", "/mpijobs")) == posted  # finished from the event: nothing submitted again


async def _first_event(trigger):
    async for event in trigger.run():
        return event.payload
    raise AssertionError("no event")


@pytest.mark.parametrize(("kubelet", "status", "message"), [
    (launcher(["x"], exit_code=2), "failed", "backoff limit"),
    (None, "error", "does not know the kubeflow.org API"),
])
def test_the_trigger_reports_failures(k8s_env, kube_conn, kubelet, status, message):
    if kubelet is None:
        k8s_env.unregister_crd("mpijobs")
    else:
        k8s_env.kubelet = kubelet
        k8s_env.create(_job("j1"))
    event = asyncio.run(_first_event(MPIJobTrigger("j1", "mlops", kube_conn, poll_interval=0.05)))
    assert event["status"] == status and message in event["message"]


def test_the_trigger_reports_a_deleted_job(k8s_env, kube_conn):
    event = asyncio.run(_first_event(MPIJobTrigger("gone", "mlops", kube_conn, poll_interval=0.05)))
    assert event == {"status": "error", "name": "gone", "namespace": "mlops",
                     "message": "MPIJob mlops/gone was deleted before it ended"}


def test_the_trigger_survives_api_faults(k8s_env, kube_conn):
    k8s_env.kubelet = launcher(["ok"])
    k8s_env.create(_job("j2"))
    k8s_env.fail_next("GET", 503, "unavailable", path_contains="/mpijobs/j2", times=2)
    event = asyncio.run(_first_event(MPIJobTrigger("j2", "mlops", kube_conn, poll_interval=0.05)))
    assert event["status"] == "success"


def _job(name: str) -> dict:
    from airflow_mlops.kubernetes.mpijob import MPIJobSpec

    return build_mpijob(MPIJobSpec(name=name, image="img", command=["python", "train.py"], namespace="mlops",
                                   num_workers=1))


def test_deferrable_step_pods_resume_with_the_nodes_result(ops, k8s_env):
    """A TFX component pod waited on by the cncf provider's KubernetesPodTrigger."""
    node = {**NODE_RESULT, "component": "StatisticsGen", "outputs": {}}
    k8s_env.kubelet = ScriptedKubelet(pods={"tfx-*": PodRun(logs=["stats", result_line(node)], interval=0.2)})
    with pytest.raises(TaskDeferred) as deferred:
        ops.sg.execute(context())
    trigger = deferred.value.trigger
    assert type(trigger).__name__ == "KubernetesPodTrigger"
    event = asyncio.run(_first_event(trigger))
    assert event["status"] == "success"
    pods_created = len(k8s_env.requests_of("POST", "/pods"))
    result = build_ops().sg.execute_complete(context(), event, **deferred.value.kwargs)  # a fresh operator
    assert result["component"] == "StatisticsGen"
    assert len(k8s_env.requests_of("POST", "/pods")) == pods_created  # nothing run again
    assert [p for p in k8s_env.list_objects("pods") if p["metadata"]["name"].startswith("tfx-")] == []


@pytest.mark.parametrize("deferrable", [False, True])
def test_a_step_pod_failed_on_bad_input_is_not_retried(ops, k8s_env, deferrable):
    message = "CsvExampleGen: span 7 does not exist under /data (spans there: 1, 2)"
    k8s_env.kubelet = ScriptedKubelet(pods={"tfx-*": PodRun(
        logs=[result_line({}, status="failed", error_type="InvalidInput", message=message)], exit_code=1,
        interval=0.2)})
    ops.sg.deferrable = deferrable
    with pytest.raises(RuntimeStepRejected, match="InvalidInput: CsvExampleGen: span 7 does not exist") as caught:
        if not deferrable:
            ops.sg.execute(context())
        else:
            deferred_until_done(ops, "sg")()
    assert isinstance(caught.value, AirflowFailException)


def test_a_deferred_schemagen_decides_its_schema_once_and_finishes_with_that_decision(ops, k8s_env, capsys):
    """What was decided before deferring (no reference yet: infer) travels with the deferral; the fresh
    operator that finishes neither decides nor says it again."""
    node = {**NODE_RESULT, "component": "SchemaGen", "outputs": {}}
    k8s_env.kubelet = ScriptedKubelet(pods={"tfx-*": PodRun(logs=[result_line(node)], interval=0.2)})
    with pytest.raises(TaskDeferred) as deferred:
        ops.schema.execute(context())
    assert deferred.value.kwargs["prepared"] == {"schema_source": "inferred", "reference_version": None}
    json.dumps(deferred.value.kwargs)  # what travels through the metadata database is plain JSON
    event = asyncio.run(_first_event(deferred.value.trigger))
    capsys.readouterr()
    result = build_ops().schema.execute_complete(context(), event, **deferred.value.kwargs)
    assert result["schema_source"] == "inferred" and result["component"] == "SchemaGen"
    assert "no reference schema yet" not in capsys.readouterr().out


def test_a_deferred_example_validator_finishes_on_the_anomalies_of_its_result(ops, k8s_env):
    anomaly = {"split": "eval", "feature": "fare", "kind": "FLOAT_TYPE_STRING", "severity": "ERROR",
               "description": "Expected a float, got a string"}
    node = {**NODE_RESULT, "component": "ExampleValidator", "outputs": {}, "anomalies": [anomaly]}
    k8s_env.kubelet = ScriptedKubelet(pods={"tfx-*": PodRun(logs=[result_line(node)], interval=0.2)})
    ops.ev.check_example_counts = lambda context: None  # no statistics upstream in this test
    resume = deferred_until_done(ops, "ev")
    with pytest.raises(DataValidationError, match="split eval, feature fare: FLOAT_TYPE_STRING"):
        resume()


def test_a_deferred_step_pod_that_never_starts_is_removed_and_reported(ops, k8s_env):
    k8s_env.kubelet = ScriptedKubelet(pods={"tfx-*": PodRun(pending_reason="InvalidImageName")})
    resume = deferred_until_done(ops, "sg")
    with pytest.raises(MlopsException, match="InvalidImageName"):
        resume()
    assert [p for p in k8s_env.list_objects("pods") if p["metadata"]["name"].startswith("tfx-")] == []


def test_unknown_kubernetes_settings_are_named(k8s_env):
    op = StatisticsGenOperator(task_id="s", pipeline_name="p", examples="eg", kubernetes={"nodeSelector": {}})
    with pytest.raises(InvalidArgumentError, match=r"unknown kubernetes setting\(s\) \['nodeSelector'\]"):
        _ = op.hook


# ----------------------------------------------------------------------------- launcher="trainjob": Trainer v2

RUNTIMES = REPO / "deploy" / "kubernetes" / "trainer" / "trainingruntime-horovod.yaml"
needs_trainer_crds = pytest.mark.skipif(not (CRD_DIR / "trainer.kubeflow.org_trainjobs.yaml").is_file(), reason=NO_CRDS)


@pytest.fixture
def trainer_env(k8s_env):
    """The fake with Kubeflow Trainer v2 and the provider's TrainingRuntimes in ``mlops``, their images set to
    the step's ([mlops] kubernetes_image), as deploy/kubernetes/README.md says to."""
    for plural in ("trainjobs", "trainingruntimes"):
        k8s_env.register_crd(plural)
    for runtime in yaml.safe_load_all(RUNTIMES.read_text()):
        image = "registry.example/airflow-mlops-{}:{}".format(
            "tfx-cuda" if runtime["metadata"]["name"] == CUDA_RUNTIME else "tfx", airflow_mlops.__version__)
        for job in runtime["spec"]["template"]["spec"]["replicatedJobs"]:
            for container in job["template"]["spec"]["template"]["spec"]["containers"]:
                container["image"] = image
        k8s_env.create(runtime)
    return k8s_env


@pytest.fixture
def tj_ops(trainer_env):
    return build_ops("trainjob")


def trainjob_launcher(lines, exit_code=0, interval=0.05) -> ScriptedKubelet:
    """The launcher pod of a TrainJob (JobSet's ``<job>-launcher-0-0-<hash>``) prints ``lines``; the nodes run sshd."""
    return launcher(lines, exit_code=exit_code, interval=interval)


def job_pods(fake) -> list[dict]:
    return [p for p in fake.list_objects("pods") if p["metadata"]["name"].startswith("hvd-tr-")]


@needs_trainer_crds
def test_the_trainjob_is_valid_against_the_real_crd_and_gives_the_gpus_to_the_cuda_runtime(tj_ops):
    spec, labels = mpijob_spec(tj_ops.tr, context())
    manifest = build_trainjob(spec)
    validate_trainjob(manifest, CRD_DIR)
    job = manifest["spec"]
    assert job["runtimeRef"]["name"] == CUDA_RUNTIME == "airflow-mlops-horovod-cuda"  # GPUs: the CUDA runtime
    assert job["trainer"]["image"] == f"registry.example/airflow-mlops-tfx-cuda:{airflow_mlops.__version__}"
    assert job["trainer"]["command"][:3] == ["python", "-m", "airflow_mlops.runtime_side.entrypoint"]
    assert job["trainer"]["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == 1
    assert (job["trainer"]["numNodes"], job["trainer"]["numProcPerNode"]) == (2, 1)
    env = {e["name"]: e["value"] for e in job["trainer"]["env"]}
    assert env["AIRFLOW_MLOPS_HOROVOD_NP"] == "2" and env["AIRFLOW_MLOPS_HOROVOD_HOSTFILE"] == "/etc/mpi/hostfile"
    request = StepRequest.from_dict(json.loads(env[REQUEST_ENV]))
    assert request.step == "tfx.run_node" and request.params["node_id"] == "tr"
    pod = job["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"][
        "template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "airflow-mlops-data"
    assert pod["serviceAccountName"] == "airflow-mlops"
    assert manifest["metadata"]["labels"].items() >= labels.items() and manifest["metadata"]["namespace"] == "mlops"


def test_training_runs_as_a_trainjob_and_returns_the_launchers_result(tj_ops, trainer_env, capsys):
    trainer_env.kubelet = trainjob_launcher(["[0]<stdout>: step 100, loss 0.41", "[1]<stdout>: step 100, loss 0.41",
                                             result_line(NODE_RESULT)])
    result = tj_ops.tr.execute(context())
    assert result["execution_id"] == 12 and result["outputs"]["model"][0]["id"] == 40
    (job,) = trainer_env.list_objects("trainjobs", "mlops")
    assert [c["type"] for c in job["status"]["conditions"] if c["status"] == "True"] == ["Complete"]
    assert job["spec"]["runtimeRef"]["name"] == CUDA_RUNTIME
    assert trainer_env.list_objects("mpijobs") == []
    out = capsys.readouterr().out
    assert "[launcher] [1]<stdout>: step 100, loss 0.41" in out  # the launcher's log, followed
    assert "created TrainJob mlops/hvd-tr-" in out


def test_deferred_trainjob_training_resumes_with_the_result_on_a_fresh_operator(tj_ops, trainer_env, capsys):
    trainer_env.kubelet = trainjob_launcher(["epoch 1", result_line(NODE_RESULT)], interval=0.2)
    tj_ops.tr.deferrable = True
    with pytest.raises(TaskDeferred) as deferred:
        tj_ops.tr.execute(context())
    trigger = deferred.value.trigger
    assert isinstance(trigger, TrainJobTrigger) and deferred.value.method_name == "execute_complete"
    assert deferred.value.kwargs["handle"]["launcher"] == "trainjob"
    json.dumps(deferred.value.kwargs)  # what travels through the metadata database is plain JSON
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_mlops.triggers.trainjob.TrainJobTrigger"  # where the triggerer imports it from
    event = asyncio.run(_first_event(TrainJobTrigger(**kwargs)))
    assert event["status"] == "success"
    posted = len(trainer_env.requests_of("POST", "/trainjobs"))
    result = build_ops("trainjob").tr.execute_complete(context(), event, **deferred.value.kwargs)  # a fresh operator
    assert result["execution_id"] == 12
    assert "[launcher] epoch 1" in capsys.readouterr().out
    assert len(trainer_env.requests_of("POST", "/trainjobs")) == posted  # finished from the event: nothing submitted


def test_a_retry_reattaches_to_the_trainjob_of_its_earlier_try(tj_ops, trainer_env):
    trainer_env.kubelet = trainjob_launcher(["working", result_line(NODE_RESULT)], interval=0.3)
    spec, _ = mpijob_spec(tj_ops.tr, context())
    trainer_env.create(build_trainjob(spec))  # the earlier try's job, still running
    assert tj_ops.tr.execute(context())["execution_id"] == 12
    assert len(trainer_env.requests_of("POST", "/trainjobs")) == 1  # answered 409: adopted, not a second job
    assert len(trainer_env.list_objects("trainjobs")) == 1


def test_a_retry_after_a_failed_trainjob_trains_again(tj_ops, trainer_env):
    trainer_env.kubelet = trainjob_launcher(["no"], exit_code=1)
    with pytest.raises(RuntimeStepFailed):
        tj_ops.tr.execute(context())
    first_uid = trainer_env.list_objects("trainjobs")[0]["metadata"]["uid"]
    trainer_env.kubelet = trainjob_launcher([result_line(NODE_RESULT)])
    assert tj_ops.tr.execute(context())["execution_id"] == 12
    assert trainer_env.list_objects("trainjobs")[0]["metadata"]["uid"] != first_uid


@pytest.mark.parametrize("deferrable", [False, True])
def test_a_failed_trainjob_reports_the_condition_and_the_launchers_last_lines(tj_ops, trainer_env, deferrable):
    trainer_env.kubelet = trainjob_launcher(
        ["[0]<stderr>: Traceback (most recent call last):",
         "[0]<stderr>: tensorflow.python.framework.errors_impl.ResourceExhaustedError: OOM",
         result_line({}, status="failed")], exit_code=1, interval=0.2)
    tj_ops.tr.deferrable = deferrable
    with pytest.raises(RuntimeStepFailed, match=r"TrainJob mlops/hvd-tr-\w+ ended Failed \(FailedJobs\)") as caught:
        if deferrable:
            deferred_until_done(tj_ops, "tr", "trainjob")()
        else:
            tj_ops.tr.execute(context())
    assert not isinstance(caught.value, AirflowFailException)  # retried: the retry trains again
    assert "the TFX node failed: RuntimeError: boom" in str(caught.value)  # the node's own error
    assert "ResourceExhaustedError: OOM" in str(caught.value)  # the launcher's last lines
    assert RESULT_MARKER not in str(caught.value)


def test_on_kill_deletes_the_trainjob_and_its_pods(tj_ops, trainer_env):
    trainer_env.kubelet = trainjob_launcher(["forever"], interval=0.0)
    trainer_env.kubelet.pods["*-launcher-*"].run_until_deleted = True
    tj_ops.tr.deferrable = True
    with pytest.raises(TaskDeferred):
        tj_ops.tr.execute(context())
    trainer_env.wait_until(lambda: job_pods(trainer_env), what="the TrainJob's pods")
    tj_ops.tr.on_kill()
    assert trainer_env.list_objects("trainjobs") == []
    assert job_pods(trainer_env) == []


@pytest.mark.parametrize(("change", "message"), [
    ({"min_workers": 2, "max_workers": 4},
     r'the TrainJob would be invalid: min_workers/max_workers: Kubeflow Trainer v2 has no elastic MPI training .* '
     r'use launcher="mpijob" for elastic Horovod'),
    ({"run_policy": {"backoff_limit": 2}}, r"backoff_limit: the TrainingRuntime sets it"),
    ({"launcher": "tfjob"}, r"tr: launcher must be one of \['mpijob', 'trainjob'\], got 'tfjob'"),
])
def test_what_a_trainjob_cannot_do_is_refused_before_anything_is_created(tj_ops, trainer_env, change, message):
    for key, value in change.items():
        setattr(tj_ops.tr, key, value)
    with pytest.raises(InvalidArgumentError, match=message) as caught:
        tj_ops.tr.execute(context())
    assert isinstance(caught.value, AirflowFailException)  # not retried
    with pytest.raises(InvalidArgumentError, match="eg: the run cannot succeed: tr: "):
        tj_ops.eg.check_pipeline_args(context())  # named by the pipeline's first task, before anything is ingested
    assert trainer_env.requests_of("POST", "/trainjobs") == [] and trainer_env.requests_of("POST", "/mpijobs") == []


def test_without_the_training_runtime_the_task_fails_at_once_saying_what_to_apply(tj_ops, trainer_env):
    trainer_env.delete("trainingruntimes", "mlops", CUDA_RUNTIME)
    with pytest.raises(InvalidArgumentError, match="TrainingRuntime mlops/airflow-mlops-horovod-cuda does not exist: "
                                                   "apply deploy/kubernetes/trainer") as caught:
        tj_ops.tr.execute(context())
    assert isinstance(caught.value, AirflowFailException)  # a retry cannot help
    assert trainer_env.requests_of("POST", "/trainjobs") == []


def test_without_trainer_v2_the_task_says_what_to_install(tj_ops, trainer_env):
    trainer_env.unregister_crd("trainjobs")
    trainer_env.unregister_crd("trainingruntimes")
    with pytest.raises(MlopsException, match='Kubeflow Trainer v2 .* or use launcher="mpijob"'):
        tj_ops.tr.execute(context())


def test_the_launcher_is_templated_and_not_used_locally(tmp_path, clean_mlops_env):
    clean_mlops_env.setenv("AIRFLOW__MLOPS__STATE_DIR", str(tmp_path / "state"))
    op = HorovodTrainerOperator(task_id="tr", pipeline_name="p", examples="tf", transform_graph="tf", schema="sc",
                                launcher="{{ params.launcher }}")
    assert "launcher" in op.template_fields
    op.launcher = "trainjob"
    op.validate_args()  # locally the node starts its ranks itself: the launcher is not used
    assert op.hook.runner(op.placement()).kind == "warm"
    op.launcher = "TrainJob"
    with pytest.raises(InvalidArgumentError, match=r"tr: launcher must be one of \['mpijob', 'trainjob'\]"):
        op.validate_args()
