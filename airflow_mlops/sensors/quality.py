"""Wait until the served model's quality on the ground truth that arrived has decayed."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow_mlops.operators.quality import BaseModelQualityOperator
from airflow_mlops.sensors.base import CheckUntilFoundSensor
from airflow_mlops.triggers.quality import GroundTruthTrigger, truth_size


class ModelQualitySensor(BaseModelQualityOperator, CheckUntilFoundSensor):
    """Succeed, with the quality report as its XCom, once a quality check finds a version ``decayed``.

    Each check is :class:`~airflow_mlops.operators.quality.ModelQualityOperator`'s (same
    arguments, templated the same way); ``ok`` and ``insufficient_labels`` mean: keep waiting.
    Deferrable: between checks the triggerer only watches the sizes of the prediction log and of
    the outcome files (:class:`~airflow_mlops.triggers.quality.GroundTruthTrigger`) and wakes the
    sensor when new truth or traffic has arrived, at most every ``poke_interval`` seconds.

    :param deferrable: wait in the triggerer instead of a worker slot.
    """

    template_fields: Sequence[str] = BaseModelQualityOperator.template_fields
    not_found_message = "no quality decay found in {sensor.deployment_name}'s predictions within {timeout:.0f} s"

    def check(self, context: Any) -> dict[str, Any]:
        return self.check_quality(context)

    def found(self, result: dict[str, Any]) -> bool:
        return result["status"] == "decayed"

    @cached_property
    def _watched(self) -> tuple[str, str]:
        """The prediction log and the feedback root the check reads (read once: they do not move)."""
        log_dir = self.seldon.get_deployment(self.deployment_name).prediction_log or ""
        return log_dir, self.feedback_root or self.seldon.feedback_root

    def watched_size(self) -> int:
        return truth_size(*self._watched)

    def trigger(self, since_bytes: int, deadline: float) -> GroundTruthTrigger:
        log_dir, root = self._watched
        return GroundTruthTrigger(log_dir=log_dir, feedback_root=root, since_bytes=since_bytes,
                                  poll_interval=float(self.poke_interval), deadline=deadline)

    def waiting(self, result: dict[str, Any]) -> None:
        self.log.info("quality %s; deferring until new ground truth or traffic arrives (checked at most every %s s)",
                      result["status"], self.poke_interval)
