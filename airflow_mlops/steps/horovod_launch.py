"""How the Horovod trainer starts its ranks: locally, or from an MPIJob's launcher (standard library only).

Locally the ranks are ``num_workers`` processes on this machine (``-H localhost:N``). In an
MPIJob's launcher (Kubernetes backend) the MPI Operator lists the worker pods in a hostfile
(or a host-discovery script, elastic), and :func:`airflow_mlops.kubernetes.mpijob.horovod_env`
tells the launcher how many ranks to start, through the ``AIRFLOW_MLOPS_HOROVOD_*`` variables.
"""

from __future__ import annotations

from collections.abc import Mapping

ENV_NP, ENV_HOSTFILE = "AIRFLOW_MLOPS_HOROVOD_NP", "AIRFLOW_MLOPS_HOROVOD_HOSTFILE"
ENV_MIN_NP, ENV_MAX_NP, ENV_DISCOVERY = ("AIRFLOW_MLOPS_HOROVOD_MIN_NP", "AIRFLOW_MLOPS_HOROVOD_MAX_NP",
                                         "AIRFLOW_MLOPS_HOROVOD_DISCOVERY")
#: sshd port of the workers (docker/README.md), when not 22.
ENV_SSH_PORT = "AIRFLOW_MLOPS_HOROVOD_SSH_PORT"


def on_mpijob(env: Mapping[str, str]) -> bool:
    """Whether this process is an MPIJob's launcher (the ranks run in other pods)."""
    return bool(env.get(ENV_NP))


def horovodrun_args(workers: int, env: Mapping[str, str]) -> list[str]:
    """The ``horovod.runner.launch`` arguments that start the ranks (before the rank's command).

    :param workers: the operator's ``num_workers`` (local ranks when not on an MPIJob).
    """
    if not on_mpijob(env):
        return ["-np", str(workers), "--gloo", "-H", f"localhost:{workers}"]
    args = ["-np", env[ENV_NP], "--gloo"]
    if env.get(ENV_DISCOVERY):
        args += ["--min-np", env.get(ENV_MIN_NP) or env[ENV_NP], "--max-np", env.get(ENV_MAX_NP) or env[ENV_NP],
                 "--host-discovery-script", env[ENV_DISCOVERY]]
    else:
        args += ["--hostfile", env.get(ENV_HOSTFILE) or "/etc/mpi/hostfile"]
    if env.get(ENV_SSH_PORT):
        args += ["--ssh-port", env[ENV_SSH_PORT]]
    return args
