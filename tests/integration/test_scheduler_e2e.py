"""End to end with a real scheduler: `airflow standalone`, a run triggered through the REST API
(what the UI's trigger form calls), executed by the scheduler's executor."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from ..conftest import BIN, airflow_env

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, token: str | None = None, body: dict | None = None, method: str | None = None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@pytest.fixture
def standalone(tmp_path, tfx_runtime):
    port = free_port()
    home = tmp_path / "home"
    env = airflow_env(home, tmp_path / "state", AIRFLOW__API__PORT=str(port), AIRFLOW__API__HOST="127.0.0.1",
                      AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
                      AIRFLOW__CORE__PARALLELISM="2", AIRFLOW__API__WORKERS="1",
                      AIRFLOW__SCHEDULER__PARSING_PROCESSES="1", AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5")
    log = open(tmp_path / "standalone.log", "w")
    proc = subprocess.Popen([str(BIN / "airflow"), "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        password = None
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "standalone.log").read_text()[-3000:]
            secrets = home / "simple_auth_manager_passwords.json.generated"
            if secrets.exists() and password is None:
                password = json.loads(secrets.read_text()).get("admin")
            try:
                status, health = call(f"{base}/api/v2/monitor/health")
                if status == 200 and health.get("scheduler", {}).get("status") == "healthy" and password:
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(2)
        else:
            pytest.fail("airflow standalone did not become healthy in 240 s")
        status, token = call(f"{base}/auth/token", body={"username": "admin", "password": password})
        assert status in (200, 201), token
        yield base, token["access_token"], tmp_path
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_trigger_with_params_runs_under_the_scheduler(standalone):
    base, token, tmp_path = standalone
    dag = f"{base}/api/v2/dags/mlops_ingest"
    deadline = time.monotonic() + 120
    while call(dag, token)[0] != 200:  # the DAG processor has not parsed the file yet
        assert time.monotonic() < deadline, "mlops_ingest never appeared"
        time.sleep(3)
    assert call(dag, token, {"is_paused": False}, method="PATCH")[0] == 200

    status, error = call(f"{dag}/dagRuns", token, {"logical_date": None, "conf": {"pipeline_name": "bad name!"}})
    assert status == 400 and "param pipeline_name" in error["detail"]

    status, run = call(f"{dag}/dagRuns", token, {"logical_date": None, "conf": {"pipeline_name": "e2e_taxi"}})
    assert status == 200, run
    run_id = run["dag_run_id"]
    deadline = time.monotonic() + 600
    while True:
        state = call(f"{dag}/dagRuns/{run_id}", token)[1]["state"]
        if state in ("success", "failed"):
            break
        assert time.monotonic() < deadline, "the run did not finish in 600 s"
        time.sleep(5)
    tasks = {t["task_id"]: (t["state"], t["operator"])
             for t in call(f"{dag}/dagRuns/{run_id}/taskInstances", token)[1]["task_instances"]}
    assert state == "success", tasks
    assert tasks == {
        "CsvExampleGen": ("success", "CsvExampleGenOperator"),
        "StatisticsGen": ("success", "StatisticsGenOperator"),
        "SchemaGen": ("success", "SchemaGenOperator"),
        "ExampleValidator": ("success", "ExampleValidatorOperator"),
    }
    assert (tmp_path / "state" / "schemas" / "e2e_taxi" / "v1" / "schema.pbtxt").is_file()
