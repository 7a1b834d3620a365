"""Unit tests of SeldonDeploymentSensor's decisions (the real server: tests/integration/test_serving.py)."""

from __future__ import annotations

import pytest

from airflow_mlops.exceptions import MlopsException
from airflow_mlops.serving.backends import LocalServerBackend
from airflow_mlops.sensors.seldon import SeldonDeploymentSensor


@pytest.fixture
def state_dir(tmp_path, clean_mlops_env):
    clean_mlops_env.setenv("AIRFLOW__MLOPS__STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.mark.parametrize("status, expected, done", [
    ({"running": True, "serving": 2}, 2, True),
    ({"running": True, "serving": 1}, 2, False),
    ({"running": False, "serving": None}, None, False),
    ({"running": True, "serving": 5}, None, True),
])
def test_sensor_poke(state_dir, monkeypatch, status, expected, done):
    monkeypatch.setattr(LocalServerBackend, "status", lambda self, name: status)
    sensor = SeldonDeploymentSensor(task_id="s", deployment_name="taxi", model_version=expected)
    assert sensor.poke({}) is done


def test_sensor_fails_at_once_when_the_version_failed_to_load(state_dir, monkeypatch):
    monkeypatch.setattr(LocalServerBackend, "status", lambda self, name: {
        "running": True, "serving": 1, "server": {"error": {"version": 2, "message": "OSError: bad pb"}}})
    with pytest.raises(MlopsException, match="version 2 failed to load: OSError: bad pb"):
        SeldonDeploymentSensor(task_id="s", deployment_name="taxi", model_version="2").poke({})


def test_sensor_event_handling(state_dir):
    sensor = SeldonDeploymentSensor(task_id="s", deployment_name="taxi", deferrable=True)
    sensor.execute_complete({}, {"status": "success", "version": 2, "url": "http://127.0.0.1:1"})
    with pytest.raises(MlopsException, match="timeout: no answer"):
        sensor.execute_complete({}, {"status": "timeout", "message": "no answer"})
