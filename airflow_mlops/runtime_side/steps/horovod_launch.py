"""How the Horovod trainer starts its ranks: locally, or from an MPIJob's launcher (standard library only).

Locally the ranks are ``num_workers`` processes on this machine (``-H localhost:N``). In an
MPIJob's launcher (Kubernetes backend) the MPI Operator lists the worker pods in a hostfile
(or a host-discovery script, elastic), and :func:`airflow_mlops.kubernetes.mpijob.horovod_env`
tells the launcher how many ranks to start, through the ``AIRFLOW_MLOPS_HOROVOD_*`` variables.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping

# the launcher's environment (set by the MPIJob, airflow_mlops/kubernetes/mpijob.py); ENV_SSH_PORT:
# sshd port of the workers (docker/README.md), when not 22
from airflow_mlops.shared import ENV_DISCOVERY, ENV_HOSTFILE, ENV_MAX_NP, ENV_MIN_NP, ENV_NP, ENV_SSH_PORT  # noqa: F401

#: what the MPI Operator sets on an OpenMPI launcher: the job's slotsPerWorker
ENV_OPERATOR_SLOTS = "OMPI_MCA_orte_set_default_slots"


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
        # the operator's discover_hosts.sh prints host names without slots, and Horovod counts a host with no
        # slots as None (TypeError before the first rank starts): its slots are the job's slotsPerWorker,
        # which the MPI Operator gives an OpenMPI launcher (the implementation build_mpijob asks for)
        args += ["--min-np", env.get(ENV_MIN_NP) or env[ENV_NP], "--max-np", env.get(ENV_MAX_NP) or env[ENV_NP],
                 "--host-discovery-script", env[ENV_DISCOVERY], "--slots-per-host", env.get(ENV_OPERATOR_SLOTS) or "1"]
    else:
        args += ["--hostfile", env.get(ENV_HOSTFILE) or "/etc/mpi/hostfile"]
    if env.get(ENV_SSH_PORT):
        args += ["--ssh-port", env[ENV_SSH_PORT]]
    return args


#: horovodrun's prefix on each rank's output, and how it names the first rank that failed.
_RANK_LINE = re.compile(r"^\[(\d+)\]<(?:stdout|stderr)>:(.*)$")
_FIRST_FAILED = re.compile(r"^Process name: (\d+)\s*$")
#: what horovodrun itself says went wrong before its last lines: the errors its elastic driver logs and the
#: exceptions it prints (e.g. ``TimeoutException: Timed out waiting for ... at least 2 Horovod processes``)
_LAUNCHER_ERROR = re.compile(r"^(?:ERROR:[\w.]+:|[A-Za-z_][\w.]*(?:Error|Exception): )")


class LaunchLog:
    """The last lines of each rank and of horovodrun itself, to say why a training failed.

    horovodrun's own error only says which rank exited first; the reason is in that rank's output, or (elastic)
    in what its driver logged before: why it stopped (fewer slots than ``--min-np`` for ``--elastic-timeout``...).
    """

    def __init__(self, rank_lines: int = 30, launcher_lines: int = 3, error_lines: int = 4):
        self._rank_lines = rank_lines
        self.ranks: dict[int, deque[str]] = {}
        self.launcher: deque[str] = deque(maxlen=launcher_lines)
        self.errors: deque[str] = deque(maxlen=error_lines)
        self.first_failed: int | None = None

    def add(self, line: str) -> None:
        if match := _RANK_LINE.match(line):
            self.ranks.setdefault(int(match.group(1)), deque(maxlen=self._rank_lines)).append(match.group(2))
            return
        if (match := _FIRST_FAILED.match(line)) and self.first_failed is None:
            self.first_failed = int(match.group(1))
        if _LAUNCHER_ERROR.match(line):
            self.errors.append(line)
        if line.strip():
            self.launcher.append(line)

    def failure(self, workers: int, exit_code: int) -> str:
        """The error of a failed training: the failed rank's last lines, then horovodrun's."""
        message = f"Horovod training with {workers} worker(s) failed (exit code {exit_code})"
        rank = self.first_failed if self.first_failed in self.ranks else None
        if rank is None:  # horovodrun did not say (it died itself, or a rank hung): the ranks that printed an error
            failed = [r for r, lines in sorted(self.ranks.items()) if any("Traceback" in x or "Error" in x for x in lines)]
            rank = failed[0] if failed else None
        if rank is not None:
            message += f"; rank {rank} exited first, its last lines:\n  " + "\n  ".join(self.ranks[rank])
        if errors := [line for line in self.errors if line not in self.launcher]:
            message += "\nhorovodrun's errors:\n  " + "\n  ".join(errors)
        if self.launcher:
            message += "\nhorovodrun's last lines:\n  " + "\n  ".join(self.launcher)
        return message
