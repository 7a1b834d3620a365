"""The TrainJob trigger against the FAKE API server's scripted Kubeflow Trainer v2, through the cncf provider's
AsyncKubernetesHook and the real kubernetes_asyncio client."""

from __future__ import annotations

import asyncio

import pytest
import yaml

from airflow_mlops.kubernetes.trainjob import TrainJobSpec, build_trainjob
from airflow_mlops.triggers.mpijob import MPIJobTrigger
from airflow_mlops.triggers.trainjob import TrainJobTrigger
from tests.conftest import REPO
from tests.kubernetes.fake_api import PodRun, ScriptedKubelet

NS = "mlops"


@pytest.fixture
def trainer(fake_kube):
    for plural in ("trainjobs", "trainingruntimes"):
        fake_kube.register_crd(plural)
    for doc in yaml.safe_load_all((REPO / "deploy" / "kubernetes" / "trainer" / "trainingruntime-horovod.yaml").read_text()):
        fake_kube.create(doc)
    return fake_kube


def _job(name: str) -> dict:
    return build_trainjob(TrainJobSpec(name=name, image="airflow-mlops-tfx:0.1.0", command=["python", "train.py"],
                                       namespace=NS, num_workers=2))


async def _first_event(trigger):
    async for event in trigger.run():
        return event.payload
    raise AssertionError("no event")


def test_it_serializes_under_its_own_class_path():
    classpath, kwargs = TrainJobTrigger("j", NS, "kubernetes_default", poll_interval=2.0, timeout=60).serialize()
    assert classpath == "airflow_mlops.triggers.trainjob.TrainJobTrigger"  # where the triggerer imports it from
    assert kwargs == {"name": "j", "namespace": NS, "kubernetes_conn_id": "kubernetes_default", "poll_interval": 2.0,
                      "timeout": 60}
    assert TrainJobTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert MPIJobTrigger(**kwargs).serialize()[0] == "airflow_mlops.triggers.mpijob.MPIJobTrigger"


@pytest.mark.parametrize(("launcher", "expected"), [
    (PodRun(logs=["done"]), {"status": "success", "state": "Succeeded", "reason": "AllJobsCompleted",
                             "message": "jobset completed successfully"}),
    (PodRun(logs=["boom"], exit_code=2), {"status": "failed", "state": "Failed", "reason": "FailedJobs",
                                          "message": "jobset failed due to one or more job failures"}),
], ids=["success", "failed"])
def test_the_trigger_reports_how_the_job_ended(trainer, kube_conn, launcher, expected):
    trainer.kubelet = ScriptedKubelet(pods={"*-launcher-*": launcher})
    trainer.create(_job("j1"))
    event = asyncio.run(_first_event(TrainJobTrigger("j1", NS, kube_conn, poll_interval=0.05)))
    assert event == {"name": "j1", "namespace": NS, **expected}


def test_the_trigger_reports_a_deleted_job(trainer, kube_conn):
    event = asyncio.run(_first_event(TrainJobTrigger("gone", NS, kube_conn, poll_interval=0.05)))
    assert event == {"status": "error", "name": "gone", "namespace": NS,
                     "message": "TrainJob mlops/gone was deleted before it ended"}


def test_the_trigger_says_when_trainer_v2_is_not_installed(fake_kube, kube_conn):
    event = asyncio.run(_first_event(TrainJobTrigger("j", NS, kube_conn, poll_interval=0.05)))
    assert event["status"] == "error"
    assert "does not know the trainer.kubeflow.org API: Kubeflow Trainer v2" in event["message"]


def test_the_trigger_times_out(trainer, kube_conn):
    trainer.kubelet = ScriptedKubelet(pods={"*-launcher-*": PodRun(run_until_deleted=True)})
    trainer.create(_job("j3"))
    event = asyncio.run(_first_event(TrainJobTrigger("j3", NS, kube_conn, poll_interval=0.05, timeout=0.3)))
    assert event["status"] == "timeout" and event["message"].startswith("TrainJob mlops/j3 still ")


def test_the_trigger_survives_api_faults(trainer, kube_conn):
    trainer.kubelet = ScriptedKubelet(pods={"*-launcher-*": PodRun(logs=["ok"])})
    trainer.create(_job("j2"))
    trainer.fail_next("GET", 503, "unavailable", path_contains="/trainjobs/j2", times=2)
    event = asyncio.run(_first_event(TrainJobTrigger("j2", NS, kube_conn, poll_interval=0.05)))
    assert event["status"] == "success"
