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
        return self.hook.deployments.ready(self.deployment_name, self._expected())

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):
            return None
        self.defer(
            trigger=self.hook.deployments.readiness_trigger(self.deployment_name, self._expected(),
                                                            poll_interval=self.poke_interval, timeout=self.timeout),
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
