"""How the Horovod trainer starts its ranks, locally and from an MPIJob's launcher."""

from __future__ import annotations

import pytest

from airflow_mlops.kubernetes.mpijob import MPIJobSpec, horovod_env
from airflow_mlops.steps.horovod_launch import ENV_SSH_PORT, horovodrun_args, on_mpijob


def spec(**kwargs) -> MPIJobSpec:
    return MPIJobSpec(name="hvd", image="img", command=["python", "x.py"], horovodrun=False, **kwargs)


@pytest.mark.parametrize(("env", "expected"), [
    ({}, ["-np", "3", "--gloo", "-H", "localhost:3"]),
    (horovod_env(spec(num_workers=2, gpus_per_worker=4)),
     ["-np", "8", "--gloo", "--hostfile", "/etc/mpi/hostfile"]),
    (horovod_env(spec(min_workers=1, max_workers=3, gpus_per_worker=2)),
     ["-np", "2", "--gloo", "--min-np", "2", "--max-np", "6", "--host-discovery-script", "/etc/mpi/discover_hosts.sh"]),
    ({**horovod_env(spec(num_workers=2)), ENV_SSH_PORT: "2222"},
     ["-np", "2", "--gloo", "--hostfile", "/etc/mpi/hostfile", "--ssh-port", "2222"]),
], ids=["local", "mpijob", "elastic", "ssh-port"])
def test_ranks_start_where_the_job_says(env, expected):
    assert horovodrun_args(3, env) == expected
    assert on_mpijob(env) == bool(env)
