"""Local deployments: what is deployed where, kept under ``{state_dir}/deployments`` (standard library only).

One directory per deployment name::

    deployments/<name>/deployment.json   # name, host, ports, pid, status, version, history
    deployments/<name>/current.json      # the version the server must serve (it watches this file)
    deployments/<name>/server.log        # the model server's output
    deployments/<name>/.lock             # held while the deployment is changed

The model server (:mod:`airflow_mlops.runtime_side.model_server.model`) reads ``current.json``; the deploy,
rollback and undeploy operators change it through :class:`DeploymentRegistry`.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from airflow_mlops.runtimes.contract import directory_lock, write_json_atomic

NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
AVAILABLE, STARTING, STOPPED, FAILED = "available", "starting", "stopped", "failed"


class DeploymentError(Exception):
    """A deployment does not exist, or its record is unusable."""


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise DeploymentError(
            f"deployment name {name!r} is not valid: use lower-case letters, digits and '-' "
            "(at most 63, starting and ending with a letter or digit), as Kubernetes names do"
        )
    return name


@dataclass
class LocalDeployment:
    """The record of one local deployment.

    :param name: the deployment's name.
    :param host: the address the model server listens on.
    :param port: its HTTP port (Seldon protocol: ``/api/v1.0/predictions``).
    :param metrics_port: its Prometheus metrics port.
    :param pid: the server's process id while it runs.
    :param version: the model version being served.
    :param model_path: that version's SavedModel directory.
    :param model_root: where the pipeline's versions are (see :class:`~airflow_mlops.utils.model_registry.ModelRegistry`).
    :param status: ``available``, ``starting``, ``stopped`` or ``failed``.
    :param history: every version change: ``{"version", "at", "action"}``.
    """

    name: str
    host: str = "127.0.0.1"
    port: int = 0
    metrics_port: int = 0
    pid: int | None = None
    version: int | None = None
    model_path: str | None = None
    model_root: str | None = None
    status: str = STOPPED
    prediction_log: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocalDeployment:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class DeploymentRegistry:
    """The local deployments under ``root`` (``{state_dir}/deployments``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def dir(self, name: str) -> Path:
        return self.root / check_name(name)

    def record_file(self, name: str) -> Path:
        return self.dir(name) / "deployment.json"

    def pointer_file(self, name: str) -> Path:
        return self.dir(name) / "current.json"

    def log_file(self, name: str) -> Path:
        return self.dir(name) / "server.log"

    @contextmanager
    def locked(self, name: str) -> Iterator[None]:
        """Serialise changes of deployment ``name`` (two deploy tasks of one name wait for each other)."""
        with directory_lock(self.dir(name)):
            yield

    def get(self, name: str) -> LocalDeployment | None:
        path = self.record_file(name)
        if not path.exists():
            return None
        try:
            return LocalDeployment.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as err:
            raise DeploymentError(f"unreadable deployment record {path}: {err}") from err

    def save(self, deployment: LocalDeployment) -> None:
        write_json_atomic(self.record_file(deployment.name), json.dumps(asdict(deployment), indent=2, sort_keys=True))

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "deployment.json").exists())

    def point_to(self, name: str, version: int, model_path: str) -> None:
        """Tell the running server (which watches the file) to serve ``version`` from ``model_path``."""
        pointer = {"version": version, "path": model_path, "at": time.time()}
        write_json_atomic(self.pointer_file(name), json.dumps(pointer, indent=2, sort_keys=True))

    def pointer(self, name: str) -> dict[str, Any] | None:
        path = self.pointer_file(name)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise DeploymentError(f"unreadable deployment pointer {path}: {err}") from err
