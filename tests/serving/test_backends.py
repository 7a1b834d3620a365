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


def test_the_version_a_deployment_serves_or_why_not(clean_mlops_env, tmp_path):
    from airflow_mlops.utils.model_registry import ModelRegistry, ModelVersion

    clean_mlops_env.setenv("AIRFLOW__MLOPS__STATE_DIR", str(tmp_path))
    hook = SeldonHook(mlops_conn_id=None)
    root = tmp_path / "models" / "p"
    (root / "2").mkdir(parents=True)
    ModelRegistry(root)._write(ModelVersion(version=2, path=str(root / "2"), model_uri="m", status="ready"))
    assert hook.served_version("none") == (None, "nothing is served yet")
    hook.registry.save(LocalDeployment(name="a", version=2, model_root=str(root)))
    assert hook.served_version("a")[0].version == 2
    hook.registry.save(LocalDeployment(name="b", version=3, model_root=str(root)))
    record, why = hook.served_version("b")
    assert record is None and why.startswith("version 3 is served, but its record cannot be read")
    hook.registry.save(LocalDeployment(name="c", version=3, model_root="gs://models/p"))
    assert hook.served_version("c") == (None, "version 3 is served from gs://models/p, which Airflow does not read")
