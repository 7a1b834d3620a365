"""Wait until the served model's quality on the ground truth that arrived has decayed."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from airflow.configuration import conf
from airflow.sdk.bases.sensor import BaseSensorOperator, PokeReturnValue

from airflow_mlops.operators.quality import BaseModelQualityOperator
from airflow_mlops.triggers.quality import GroundTruthTrigger, truth_size


class ModelQualitySensor(BaseModelQualityOperator, BaseSensorOperator):
    """Succeed, with the quality report as its XCom, once a quality check finds a version ``decayed``.

    Each check is :class:`~airflow_mlops.operators.quality.ModelQualityOperator`'s (same
    arguments, templated the same way); ``ok`` and ``insufficient_labels`` mean: keep waiting.
    Deferrable: between checks the triggerer only watches the sizes of the prediction log and of
    the outcome files (:class:`~airflow_mlops.triggers.quality.GroundTruthTrigger`) and wakes the
    sensor when new truth or traffic has arrived, at most every ``poke_interval`` seconds.

    :param deferrable: wait in the triggerer instead of a worker slot.
    """

    template_fields: Sequence[str] = BaseModelQualityOperator.template_fields

    def __init__(self, *, deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deferrable = deferrable

    def poke(self, context: Any) -> PokeReturnValue:
        result = self.check_quality(context)
        return PokeReturnValue(is_done=result["status"] == "decayed", xcom_value=result)

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        return self._check_or_defer(context, deadline=time.time() + self.timeout)

    def _check_or_defer(self, context: Any, deadline: float) -> Any:
        dep = self.seldon.get_deployment(self.deployment_name)
        root = self.feedback_root or self.seldon.feedback_root
        size = truth_size(dep.prediction_log or "", root)
        result = self.check_quality(context)
        if result["status"] == "decayed":
            return result
        self.log.info("quality %s; deferring until new ground truth or traffic arrives (checked at most every %s s)",
                      result["status"], self.poke_interval)
        self.defer(trigger=GroundTruthTrigger(log_dir=dep.prediction_log or "", feedback_root=root, since_bytes=size,
                                              poll_interval=float(self.poke_interval), deadline=deadline),
                   method_name="execute_complete")

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException

        if event.get("status") == "timeout":
            message = f"no quality decay found in {self.deployment_name}'s predictions within {self.timeout:.0f} s"
            if self.soft_fail:
                raise AirflowSkipException(message)
            raise AirflowSensorTimeout(message)
        return self._check_or_defer(context, deadline=float(event.get("deadline") or time.time() + self.timeout))
