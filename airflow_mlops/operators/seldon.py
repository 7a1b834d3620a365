"""Deploy, roll back and undeploy pushed model versions with the seldon-core model server.

Locally (the embedded default) a deployment is a long-lived model server on
127.0.0.1 that outlives the task; a new version is swapped in without a restart and
without a failed request, and a version that fails its health check is never served.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator

from airflow_mlops.exceptions import InvalidArgumentError
from airflow_mlops.hooks.seldon import SeldonHook


def _version(task_id: str, value: Any, *, allow: tuple[str, ...]) -> int | str:
    if isinstance(value, str) and value.strip() in allow:
        return value.strip()
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(
            f"{task_id}: model_version must be a version number or one of {allow}, got {value!r}"
        ) from None
    if number < 1:
        raise InvalidArgumentError(f"{task_id}: model_version must be >= 1, got {number}")
    return number


class _SeldonOperator(BaseOperator):
    template_fields: Sequence[str] = ("deployment_name",)
    ui_color = "#d7ecfb"

    def __init__(self, *, deployment_name: str, mlops_conn_id: str = SeldonHook.default_conn_name,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deployment_name = deployment_name
        self.mlops_conn_id = mlops_conn_id

    @cached_property
    def hook(self) -> SeldonHook:
        return SeldonHook(mlops_conn_id=self.mlops_conn_id)

    def _result(self, dep, changed: bool) -> dict[str, Any]:
        return {"name": dep.name, "version": dep.version, "url": dep.url, "changed": changed,
                "model_path": dep.model_path, "prediction_log": dep.prediction_log}


class SeldonDeployOperator(_SeldonOperator):
    """Serve a pushed model version as deployment ``deployment_name``.

    Deploying the version already served is a no-op; another version replaces it without a
    restart; a version that fails to load or run fails the task with the server's log while
    the old version keeps serving.

    :param deployment_name: the deployment (templated; lower-case letters, digits, ``-``).
    :param pipeline_name: whose pushed models to deploy (templated); or give ``model_root``.
    :param model_root: the directory of numbered versions (templated; default from the pipeline).
    :param model_version: a version number or ``latest`` (templated).
    :param replicas: model server replicas (Kubernetes; one server locally).
    :param resources: container resources (Kubernetes only).
    :param host: address a local server listens on (127.0.0.1; ``0.0.0.0`` exposes it).
    :param port: port of a new local server (default: a free one, kept for the deployment).
    """

    template_fields: Sequence[str] = ("deployment_name", "pipeline_name", "model_root", "model_version")

    def __init__(self, *, pipeline_name: str | None = None, model_root: str | None = None,
                 model_version: int | str = "latest", replicas: int = 1, resources: dict[str, Any] | None = None,
                 host: str = "127.0.0.1", port: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipeline_name = pipeline_name
        self.model_root = model_root
        self.model_version = model_version
        self.replicas = replicas
        self.resources = resources
        self.host = host
        self.port = port

    def execute(self, context: Any) -> dict[str, Any]:
        if not self.model_root and not self.pipeline_name:
            raise InvalidArgumentError(f"{self.task_id}: give pipeline_name or model_root")
        version = _version(self.task_id, self.model_version, allow=("latest",))
        if self.replicas != 1 or self.resources:
            self.log.warning("replicas and resources apply on Kubernetes; locally one model server serves")
        root = self.hook.model_root(self.pipeline_name or "", self.model_root)
        dep, changed = self.hook.deploy(self.deployment_name, root, version, host=self.host, port=self.port)
        if changed:
            self.log.info("deployment %s serves model version %s at %s/api/v1.0/predictions", dep.name, dep.version,
                          dep.url)
        return self._result(dep, changed)


class SeldonRollbackOperator(_SeldonOperator):
    """Serve an earlier version again (the one served before the current one, or ``model_version``).

    :param deployment_name: the deployment (templated).
    :param model_version: the version to serve, or ``previous`` (templated).
    """

    template_fields: Sequence[str] = ("deployment_name", "model_version")

    def __init__(self, *, model_version: int | str = "previous", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_version = model_version

    def execute(self, context: Any) -> dict[str, Any]:
        version = _version(self.task_id, self.model_version, allow=("previous",))
        dep, changed = self.hook.rollback(self.deployment_name, None if version == "previous" else version)
        self.log.info("deployment %s rolled back to model version %s", dep.name, dep.version)
        return self._result(dep, changed)


class SeldonUndeployOperator(_SeldonOperator):
    """Stop deployment ``deployment_name`` (its record and prediction log are kept).

    :param deployment_name: the deployment (templated).
    """

    def execute(self, context: Any) -> dict[str, Any]:
        was_running = self.hook.undeploy(self.deployment_name)
        self.log.info("deployment %s %s", self.deployment_name, "stopped" if was_running else "was not running")
        return {"name": self.deployment_name, "stopped": was_running}
