from __future__ import annotations

from airflow_mlops.hooks.seldon import SeldonHook
from airflow_mlops.serving.registry import LocalDeployment


def test_local_backend_lists_and_describes_deployments_with_who_changed_them(clean_mlops_env, tmp_path):
    clean_mlops_env.setenv("AIRFLOW__MLOPS__STATE_DIR", str(tmp_path))
    hook = SeldonHook(mlops_conn_id=None)
    by = {"dag_id": "mlops_train_deploy", "run_id": "manual__1", "task_id": "deploy"}
    hook.registry.save(LocalDeployment(name="b", port=1234, version=2, model_path="/m/2", status="stopped",
                                       history=[{"version": 2, "at": 1.0, "action": "deploy", "by": by}]))
    hook.registry.save(LocalDeployment(name="a"))
    backend = hook.deployments
    assert backend.names() == ["a", "b"]
    described = backend.describe("b")
    assert (described.version, described.status, described.url) == (2, "stopped", "http://127.0.0.1:1234")
    assert described.predictors == [{"name": "local", "version": 2, "traffic": 100, "shadow": False}]
    assert described.history[0]["by"] == by
    assert backend.describe("a").predictors == []
    # an undeploy says who asked, beside what it did
    assert backend.undeploy("b", by={**by, "dag_id": "mlops_rollback"}).stopped is False
    assert hook.registry.get("b").history[-1] == {"version": 2, "at": hook.registry.get("b").history[-1]["at"],
                                                  "action": "undeploy", "by": {**by, "dag_id": "mlops_rollback"}}
