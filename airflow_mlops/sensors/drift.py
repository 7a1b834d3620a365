"""Wait until the traffic a deployment serves has drifted from the training data of its model."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow_mlops.operators.drift import BaseDriftCheckOperator
from airflow_mlops.sensors.base import CheckUntilFoundSensor
from airflow_mlops.triggers.drift import PredictionLogTrigger, log_size


class DriftSensor(BaseDriftCheckOperator, CheckUntilFoundSensor):
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
    not_found_message = "no drift found in {sensor.deployment_name}'s traffic within {timeout:.0f} s"

    def check(self, context: Any) -> dict[str, Any]:
        return self.check_drift(context)

    def found(self, result: dict[str, Any]) -> bool:
        return bool(result.get("is_drift"))

    @cached_property
    def _log_dir(self) -> str:
        """The deployment's prediction log (read once: it does not move while the sensor waits)."""
        return self.seldon.get_deployment(self.deployment_name).prediction_log or ""

    def watched_size(self) -> int:
        return log_size(self._log_dir) if self._log_dir else 0

    def trigger(self, since_bytes: int, deadline: float) -> PredictionLogTrigger:
        return PredictionLogTrigger(log_dir=self._log_dir, since_bytes=since_bytes,
                                    poll_interval=float(self.poke_interval), deadline=deadline)

    def waiting(self, result: dict[str, Any]) -> None:
        if not self._log_dir:
            self.log.warning("deployment %s has no prediction log: no traffic will ever arrive to check",
                             self.deployment_name)
        self.log.info("no drift yet; deferring until new traffic arrives in %s (checked at most every %s s)",
                      self._log_dir, self.poke_interval)
