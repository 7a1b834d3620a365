"""Wait until a deployment serves (a given version of) its model."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.configuration import conf
from airflow.sdk.bases.sensor import BaseSensorOperator

from airflow_mlops.exceptions import MlopsException
from airflow_mlops.hooks.seldon import SeldonHook
from airflow_mlops.triggers.seldon import SeldonDeploymentKubernetesTrigger, SeldonDeploymentTrigger


class SeldonDeploymentSensor(BaseSensorOperator):
    """Succeed once deployment ``deployment_name`` answers and serves ``model_version`` (any when None).

    Locally: the model server's ``/health/status``. On Kubernetes: the ``SeldonDeployment`` is
    ``Available`` with its latest spec observed (``model_version`` is not checked there).

    :param deployment_name: the deployment (templated).
    :param model_version: the version to wait for (templated); None: any version.
    :param deferrable: wait in the triggerer instead of a worker slot.
    :param mlops_conn_id: connection with provider settings.
    """

    template_fields: Sequence[str] = ("deployment_name", "model_version")
    ui_color = "#d7ecfb"

    def __init__(self, *, deployment_name: str, model_version: int | str | None = None,
                 mlops_conn_id: str = SeldonHook.default_conn_name,
                 deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deployment_name = deployment_name
        self.model_version = model_version
        self.mlops_conn_id = mlops_conn_id
        self.deferrable = deferrable

    @cached_property
    def hook(self) -> SeldonHook:
        return SeldonHook(mlops_conn_id=self.mlops_conn_id)

    def _expected(self) -> int | None:
        if self.model_version in (None, "", "None"):
            return None
        try:
            return int(self.model_version)
        except (TypeError, ValueError):
            raise MlopsException(f"{self.task_id}: model_version must be a number or empty, "
                                 f"got {self.model_version!r}") from None

    def poke(self, context: Any) -> bool:
        if self.hook.on_kubernetes:
            return self._poke_kubernetes()
        status = self.hook.status(self.deployment_name)
        expected = self._expected()
        serving = status.get("serving")
        self.log.info("deployment %s: running=%s, serving version %s (waiting for %s)", self.deployment_name,
                      status.get("running"), serving, expected if expected is not None else "any")
        error = ((status.get("server") or {}).get("error") or {})
        if expected is not None and error.get("version") == expected:
            raise MlopsException(f"deployment {self.deployment_name}: version {expected} failed to load: "
                                 f"{error.get('message')}")
        return bool(status.get("running")) and serving is not None and expected in (None, serving)

    def _poke_kubernetes(self) -> bool:
        from airflow_mlops.serving.manifest import deployment_state, is_ready

        obj = self.hook.kube.get(self.deployment_name, self.hook.namespace)
        if obj is None:
            raise MlopsException(f"SeldonDeployment {self.hook.namespace}/{self.deployment_name} does not exist")
        state, description = deployment_state(obj)
        self.log.info("SeldonDeployment %s/%s: %s %s", self.hook.namespace, self.deployment_name, state, description)
        if state == "Failed":
            raise MlopsException(f"SeldonDeployment {self.hook.namespace}/{self.deployment_name} failed: {description}")
        return is_ready(obj)

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):
            return None
        if self.hook.on_kubernetes:
            self.defer(
                trigger=SeldonDeploymentKubernetesTrigger(
                    name=self.deployment_name, namespace=self.hook.namespace,
                    kubernetes_conn_id=self.hook.runtime_hook.setting("kubernetes_conn_id"),
                    poll_interval=self.poke_interval, timeout=self.timeout),
                method_name="execute_complete",
                timeout=timedelta(seconds=self.timeout),
            )
        dep = self.hook.get_deployment(self.deployment_name)
        self.defer(
            trigger=SeldonDeploymentTrigger(url=dep.url, version=self._expected(), poll_interval=self.poke_interval,
                                            timeout=self.timeout),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> None:
        if event.get("status") != "success":
            raise MlopsException(f"deployment {self.deployment_name}: {event.get('status')}: {event.get('message')}")
        if "url" in event:
            self.log.info("deployment %s serves model version %s at %s", self.deployment_name, event["version"],
                          event["url"])
        else:
            self.log.info("SeldonDeployment %s is %s", self.deployment_name, event.get("state"))
