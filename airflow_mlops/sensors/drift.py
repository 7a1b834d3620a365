"""Wait until the traffic a deployment serves has drifted from the training data of its model."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from airflow.configuration import conf
from airflow.sdk.bases.sensor import BaseSensorOperator, PokeReturnValue

from airflow_mlops.operators.drift import BaseDriftCheckOperator
from airflow_mlops.triggers.drift import PredictionLogTrigger, log_size


class DriftSensor(BaseDriftCheckOperator, BaseSensorOperator):
    """Succeed, with the drift report as its XCom, once a drift check finds drift.

    Each check is :class:`~airflow_mlops.operators.drift.DriftDetectionOperator`'s: reference
    through ML Metadata lineage, window from the prediction log, Alibi Detect in the ``drift``
    runtime, a JSON (and, on drift, PNG) report. ``insufficient_data`` and no drift mean: keep
    waiting. Deferrable: between checks the triggerer only watches the prediction log's size
    (:class:`~airflow_mlops.triggers.drift.PredictionLogTrigger`) and wakes the sensor when new
    traffic has arrived, at most every ``poke_interval`` seconds; the check runs in a worker.

    Takes every argument of ``DriftDetectionOperator`` (templated the same way), plus:

    :param deferrable: wait in the triggerer instead of a worker slot.
    """

    template_fields: Sequence[str] = BaseDriftCheckOperator.template_fields

    def __init__(self, *, deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deferrable = deferrable

    def poke(self, context: Any) -> PokeReturnValue:
        result = self.check_drift(context)
        return PokeReturnValue(is_done=bool(result.get("is_drift")), xcom_value=result)

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        return self._check_or_defer(context, deadline=time.time() + self.timeout)

    def _check_or_defer(self, context: Any, deadline: float) -> Any:
        dep = self.seldon.get_deployment(self.deployment_name)
        size = log_size(dep.prediction_log) if dep.prediction_log else 0
        result = self.check_drift(context)
        if result.get("is_drift"):
            return result
        if not dep.prediction_log:
            self.log.warning("deployment %s has no prediction log: no traffic will ever arrive to check", dep.name)
        self.log.info("no drift yet; deferring until new traffic arrives in %s (checked at most every %s s)",
                      dep.prediction_log, self.poke_interval)
        self.defer(trigger=PredictionLogTrigger(log_dir=dep.prediction_log or "", since_bytes=size,
                                                poll_interval=float(self.poke_interval), deadline=deadline),
                   method_name="execute_complete")

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException

        if event.get("status") == "timeout":
            message = f"no drift found in {self.deployment_name}'s traffic within {self.timeout:.0f} s"
            if self.soft_fail:
                raise AirflowSkipException(message)
            raise AirflowSensorTimeout(message)
        return self._check_or_defer(context, deadline=float(event.get("deadline") or time.time() + self.timeout))
