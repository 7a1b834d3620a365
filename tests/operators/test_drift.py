"""Argument errors of the monitoring operators are named before anything runs."""

from __future__ import annotations

import pytest

from airflow_mlops.exceptions import InvalidArgumentError
from airflow_mlops.operators.drift import DriftDetectionOperator
from airflow_mlops.operators.seldon import SeldonHealthCheckOperator
from airflow_mlops.sensors.drift import DriftSensor


@pytest.mark.parametrize("cls", [DriftDetectionOperator, DriftSensor])
def test_unknown_detector_is_named(cls):
    task = cls(task_id="drift", deployment_name="d", detector="Magic")
    with pytest.raises(InvalidArgumentError, match=r"drift: detector must be one of .*TabularDrift.*got 'Magic'"):
        task.check_drift({})


def test_templated_fields_are_stored_unchanged():
    task = DriftSensor(task_id="s", deployment_name="{{ params.d }}", window_size="{{ params.n }}", p_val="{{ x }}")
    assert (task.deployment_name, task.window_size, task.p_val) == ("{{ params.d }}", "{{ params.n }}", "{{ x }}")
    assert "window_size" in task.template_fields and isinstance(task.template_fields, tuple)


@pytest.mark.parametrize("kwargs, message", [
    ({"on_breach": "page"}, "on_breach must be 'fail' or 'warn'"),
    ({"max_error_rate": "lots"}, "max_error_rate must be a number, got 'lots'"),
    ({"max_error_rate": 2}, r"max_error_rate must be in \[0, 1\]"),
    ({"max_p99_ms": -1}, r"max_p99_ms must be in \[0, inf\]"),
    ({"window_minutes": 0}, "window_minutes must be in"),
])
def test_health_check_arguments(kwargs, message):
    with pytest.raises(InvalidArgumentError, match=message):
        SeldonHealthCheckOperator(task_id="health", deployment_name="d", **kwargs).execute({})
