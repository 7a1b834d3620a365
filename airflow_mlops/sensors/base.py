"""A sensor that runs a check until it finds something, deferring between checks on a size trigger."""

from __future__ import annotations

import time
from typing import Any

from airflow.configuration import conf
from airflow.sdk.bases.sensor import BaseSensorOperator, PokeReturnValue
from airflow.triggers.base import BaseTrigger


class CheckUntilFoundSensor(BaseSensorOperator):
    """Run :meth:`check` until :meth:`found`; the check's result is the XCom.

    Deferrable: the size of what the check reads is taken before each check; when it finds
    nothing, the sensor defers on :meth:`trigger` (which fires once that size has grown, or at the
    deadline) and checks again when woken, at most every ``poke_interval`` seconds; ``timeout``
    and ``soft_fail`` work as for any sensor. Subclasses give the check, what counts as found, the
    size and trigger, and the words of their log lines.

    :param deferrable: wait in the triggerer instead of a worker slot.
    """

    #: The timeout message, formatted with the sensor (``{sensor.deployment_name}``) and its timeout.
    not_found_message = "nothing found within {timeout:.0f} s"

    def __init__(self, *, deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deferrable = deferrable

    def check(self, context: Any) -> dict[str, Any]:
        raise NotImplementedError

    def found(self, result: dict[str, Any]) -> bool:
        raise NotImplementedError

    def watched_size(self) -> int:
        """The size of what the check reads, now (before the check)."""
        raise NotImplementedError

    def trigger(self, since_bytes: int, deadline: float) -> BaseTrigger:
        """A trigger that fires once :meth:`watched_size` has grown past ``since_bytes``, or at ``deadline``."""
        raise NotImplementedError

    def waiting(self, result: dict[str, Any]) -> None:
        """Log why the sensor waits on (called before it defers)."""

    def poke(self, context: Any) -> PokeReturnValue:
        result = self.check(context)
        return PokeReturnValue(is_done=self.found(result), xcom_value=result)

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        return self._check_or_defer(context, deadline=time.time() + self.timeout)

    def _check_or_defer(self, context: Any, deadline: float) -> Any:
        size = self.watched_size()
        result = self.check(context)
        if self.found(result):
            return result
        self.waiting(result)
        self.defer(trigger=self.trigger(size, deadline), method_name="execute_complete")

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException

        if event.get("status") == "timeout":
            message = self.not_found_message.format(sensor=self, timeout=self.timeout)
            if self.soft_fail:
                raise AirflowSkipException(message)
            raise AirflowSensorTimeout(message)
        return self._check_or_defer(context, deadline=float(event.get("deadline") or time.time() + self.timeout))
