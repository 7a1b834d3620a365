"""How the Horovod trainer starts its ranks, locally and from an MPIJob's launcher."""

from __future__ import annotations

import pytest

from airflow_mlops.kubernetes.mpijob import MPIJobSpec, horovod_env
from airflow_mlops.runtime_side.steps.horovod_launch import ENV_SSH_PORT, LaunchLog, horovodrun_args, on_mpijob


def spec(**kwargs) -> MPIJobSpec:
    return MPIJobSpec(name="hvd", image="img", command=["python", "x.py"], horovodrun=False, **kwargs)


@pytest.mark.parametrize(("env", "expected"), [
    ({}, ["-np", "3", "--gloo", "-H", "localhost:3"]),
    (horovod_env(spec(num_workers=2, gpus_per_worker=4)),
     ["-np", "8", "--gloo", "--hostfile", "/etc/mpi/hostfile"]),
    ({**horovod_env(spec(min_workers=1, max_workers=3, gpus_per_worker=2)), "OMPI_MCA_orte_set_default_slots": "2"},
     ["-np", "2", "--gloo", "--min-np", "2", "--max-np", "6", "--host-discovery-script", "/etc/mpi/discover_hosts.sh",
      "--slots-per-host", "2"]),
    ({**horovod_env(spec(num_workers=2)), ENV_SSH_PORT: "2222"},
     ["-np", "2", "--gloo", "--hostfile", "/etc/mpi/hostfile", "--ssh-port", "2222"]),
], ids=["local", "mpijob", "elastic", "ssh-port"])
def test_ranks_start_where_the_job_says(env, expected):
    assert horovodrun_args(3, env) == expected
    assert on_mpijob(env) == bool(env)


HOROVODRUN_FAILED = """\
[1]<stdout>:rank 1: step 400/2000 loss 0.5
[0]<stderr>:Traceback (most recent call last):
[0]<stderr>:  File "run.py", line 3, in run_fn
[0]<stderr>:OSError: Unable to synchronously open file (truncated file)
[1]<stderr>:Connection closed by peer
Traceback (most recent call last):
  File "launch.py", line 284, in launch_gloo
RuntimeError: Horovod detected that one or more processes exited with non-zero status, thus causing the job to be terminated. The first process to do so was:
Process name: 0
Exit code: 1
"""


def test_a_failed_training_names_the_rank_horovodrun_saw_fail_first_with_its_own_lines():
    log = LaunchLog()
    for line in HOROVODRUN_FAILED.splitlines():
        log.add(line)
    message = log.failure(2, 1)
    assert message.startswith("Horovod training with 2 worker(s) failed (exit code 1); rank 0 exited first")
    assert "OSError: Unable to synchronously open file (truncated file)" in message  # the reason, not only horovodrun's
    assert "Connection closed by peer" not in message  # rank 1 only followed
    assert message.endswith("horovodrun's last lines:\n  RuntimeError: Horovod detected that one or more processes "
                            "exited with non-zero status, thus causing the job to be terminated. The first process "
                            "to do so was:\n  Process name: 0\n  Exit code: 1")


@pytest.mark.parametrize(("lines", "expected_rank"), [
    (["[1]<stderr>:Traceback (most recent call last):", "[1]<stderr>:ValueError: bad", "[0]<stdout>:ok"], "rank 1"),
    (["[0]<stdout>:step 1", "horovodrun: killed"], None),
])
def test_without_horovodrun_naming_a_rank_the_rank_with_an_error_is_shown(lines, expected_rank):
    log = LaunchLog(rank_lines=5)
    for line in lines:
        log.add(line)
    message = log.failure(2, 137)
    if expected_rank:
        assert f"; {expected_rank} exited first" in message and "ValueError: bad" in message
    else:
        assert "exited first" not in message and message.endswith("horovodrun's last lines:\n  horovodrun: killed")
