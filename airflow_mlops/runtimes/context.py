"""What a step runner gets to work with: :class:`RunnerContext`, small and explicit.

A runner (:mod:`airflow_mlops.runtimes.runners`) receives this context, never the hook that made
it: the hook resolves the connection and settings into a context once, and the runner uses only
what is here (the settings, the state directory, the built runtime, Kubernetes clients).
Runs on the Airflow side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from airflow_mlops.runtimes.local import RuntimeInstall
from airflow_mlops.settings import MlopsSettings


class KubernetesClients(Protocol):
    """The clients of one Kubernetes connection that runners use (the cncf provider's
    ``KubernetesHook`` has them)."""

    @property
    def core_v1_client(self) -> Any: ...

    @property
    def api_client(self) -> Any: ...

    def get_namespace(self) -> str | None: ...


def no_kubernetes() -> KubernetesClients:
    """The client factory of a context that has no Kubernetes connection."""
    raise RuntimeError("this runner context has no Kubernetes clients")


@dataclass(frozen=True)
class RunnerContext:
    """What step runners use: made once by the hook, the same for each of its runners.

    :param runtime: the runtime's name (``tfx``, ...).
    :param settings: the resolved settings.
    :param state_dir: the provider's local state directory (absolute).
    :param log: where runners log (the task log): a logger with ``info`` and ``warning``.
    :param get_runtime: gives the built runtime (building it first where allowed).
    :param kubernetes: gives the Kubernetes clients, made on first use (a pod, an MPIJob).
    """

    runtime: str
    settings: MlopsSettings
    state_dir: Path
    log: Any
    get_runtime: Callable[[], RuntimeInstall]
    kubernetes: Callable[[], KubernetesClients] = no_kubernetes

    @property
    def kubernetes_conn_id(self) -> str:
        """The Airflow connection of the Kubernetes clients (triggers reconnect with it)."""
        return self.settings.kubernetes_conn_id
