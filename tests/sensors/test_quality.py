"""ModelQualitySensor: done on decay; deferred between checks, resumed on a fresh sensor."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowSensorTimeout, TaskDeferred

from airflow_mlops.sensors.quality import ModelQualitySensor
from airflow_mlops.triggers.quality import GroundTruthTrigger
from tests.operators.test_quality import deployment  # noqa: F401 - the fixture


def test_poke_is_done_on_decay_only(deployment):  # noqa: F811
    assert ModelQualitySensor(task_id="s", deployment_name="taxi", min_labels=20).poke({"run_id": "r"}).is_done
    assert not ModelQualitySensor(task_id="s", deployment_name="taxi", min_labels=500).poke({"run_id": "r"}).is_done


def test_deferred_until_new_truth_then_resumed_on_a_fresh_sensor(deployment):  # noqa: F811
    def build():
        return ModelQualitySensor(task_id="s", deployment_name="taxi", min_labels=60, deferrable=True, timeout=600,
                                  poke_interval=5)

    with pytest.raises(TaskDeferred) as deferred:
        build().execute({"run_id": "r"})
    trigger = deferred.value.trigger
    assert isinstance(trigger, GroundTruthTrigger) and trigger.since_bytes > 0
    assert trigger.feedback_root == str(deployment["feedback"]) and trigger.log_dir == str(deployment["log"])
    (deployment["feedback"] / "more.csv").write_text("request_id,label\n" + "".join(f"r{i},1\n" for i in range(10)))
    # 60 labels now, but ten of them repeat earlier ones: still too few, so it defers again
    with pytest.raises(TaskDeferred):
        build().execute_complete({"run_id": "r"}, {"status": "new_truth", "deadline": trigger.deadline})
    with pytest.raises(AirflowSensorTimeout, match="no quality decay found in taxi's predictions"):
        build().execute_complete({"run_id": "r"}, {"status": "timeout"})
    result = ModelQualitySensor(task_id="s", deployment_name="taxi", min_labels=20, deferrable=True).execute_complete(
        {"run_id": "r"}, {"status": "new_truth", "deadline": trigger.deadline})
    assert result["status"] == "decayed"
