"""Fixtures of the integration tests: runtimes, and Airflow with a real scheduler (``airflow standalone``)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..conftest import BIN, airflow_env, once_per_run

#: the reports of a test's phases ("setup", "call", "teardown"), for fixtures that act on a failure
REPORTS = pytest.StashKey[dict]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item):
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    return report


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, token: str | None = None, body: dict | None = None, method: str | None = None):
    """A JSON request; returns (status, decoded body), also for HTTP errors."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        text = err.read() or b"{}"
        try:
            return err.code, json.loads(text)
        except ValueError:  # a 500 of Airflow's API server is plain text ("Internal Server Error")
            return err.code, {"detail": text.decode(errors="replace")}


#: Scripts that tests run inside a runtime (tests/integration/scripts/).
SCRIPTS = Path(__file__).parent / "scripts"


def run_script(install, name: str, *args: str, binds: tuple[str, ...] = (), timeout: float = 300) -> str:
    """Run ``SCRIPTS/name`` with ``args`` in the runtime ``install``, this package importable and ``binds`` (the
    paths its arguments name) visible; its output. Fails the test when it exits non-zero."""
    from airflow_mlops.runtimes.local import runtime_command

    repo = str(Path(__file__).resolve().parents[2])
    command, env = runtime_command(install, ["python", str(SCRIPTS / name), *args],
                                   env={"PYTHONPATH": repo, "TF_CPP_MIN_LOG_LEVEL": "2"},
                                   binds=[repo, str(SCRIPTS), *binds])
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    return log


def _ensure_runtime(name: str):
    from airflow_mlops.runtimes.builder import default_cache_dir, ensure_runtime
    from airflow_mlops.runtimes.specs import get_runtime_spec

    cache = Path(os.environ.get("AIRFLOW__MLOPS__RUNTIME_CACHE_DIR") or default_cache_dir())
    return ensure_runtime(get_runtime_spec(name), cache, log=lambda line: None)


@pytest.fixture(scope="session")
def serving_runtime():
    """The real serving runtime (seldon-core model server), built on first use and cached across runs."""
    return _ensure_runtime("serving")


#: The pipeline of the taxi model that the serving and monitoring tests share.
TAXI_MODEL = "it_taxi_model"


@pytest.fixture(scope="session")
def trained_taxi_model(tmp_path_factory, airflow_home, taxi_csv) -> Path:
    """Version 1 of ``TAXI_MODEL``: trained on the first 1,000 taxi trips and pushed by the test DAG (real TFX,
    Horovod, TFMA), once per test run for every xdist worker; a directory with ``data/`` and ``state/``.

    Tests that only need *a* pushed model start from a copy of its state (:func:`copy_of_trained_taxi_model`).
    """
    from .test_ingest_dag import TEST_DAGS, dags_test, write_slice

    def build(root: Path) -> None:
        write_slice(taxi_csv, root / "data" / "span-1" / "data.csv", 0, 1000)
        code, log, _ = dags_test({"home": airflow_home, "state_dir": root / "state"},
                                 {"pipeline_name": TAXI_MODEL, "data_root": str(root / "data"), "eval_threshold": 0.5},
                                 dag_id="test_train_push", dags_folder=TEST_DAGS)
        (root / "train_push.log").write_text(log)
        assert code == 0, log[-4000:]

    return once_per_run(tmp_path_factory, "taxi-model", build)


def copy_of_trained_taxi_model(trained: Path, root: Path, airflow_home: Path, taxi_csv: Path) -> dict:
    """A test state of its own holding :func:`trained_taxi_model`'s state: its ML Metadata, registry and records.

    The copied records keep naming the shared run's files (the artifacts, version 1's SavedModel), which no test
    changes; what a test adds (versions, deployments, logs) goes into its own copy.
    """
    from airflow_mlops.hooks.seldon import SeldonHook

    shutil.copytree(trained / "state", root / "state", symlinks=True)
    return {"home": airflow_home, "state_dir": root / "state", "data": trained / "data", "csv": taxi_csv,
            "hook": SeldonHook(mlops_conn_id=None, state_dir=str(root / "state"))}


@dataclass
class Standalone:
    """A running ``airflow standalone``: API base URL, a REST token and the admin's password."""

    base: str
    token: str
    password: str
    home: Path
    state_dir: Path
    tmp_path: Path
    log: Path


def stop_deployments(state_dir: Path) -> list[str]:
    """Stop the model servers recorded under ``state_dir`` (they outlive tasks by design); return their names.

    Fails when a server is still alive afterwards.
    """
    if not (state_dir / "deployments").is_dir():
        return []
    from airflow_mlops.hooks.seldon import SeldonHook
    from airflow_mlops.serving.local import alive

    hook = SeldonHook(mlops_conn_id=None, state_dir=str(state_dir))
    names = hook.registry.names()
    pids = {name: hook.get_deployment(name).pid for name in names}
    for name in names:
        hook.deployments.undeploy(name)  # SIGTERM to the server's process group, SIGKILL after a grace period
    left = {name: pid for name, pid in pids.items() if alive(pid)}
    assert not left, f"model servers still running after undeploy: {left}"
    return names


@pytest.fixture
def standalone(request, tmp_path, tfx_runtime):
    """``airflow standalone`` on a free port with the repository's DAGs, healthy, with a REST token.

    Parametrize it indirectly with the names of further runtimes its runs need, built before
    Airflow starts: ``@pytest.mark.parametrize("standalone", [("serving",)], indirect=True)``, or
    with ``{"runtimes": (...), "env": {...}}`` for Airflow settings too (``{tmp_path}`` in a value is
    the test's directory). On teardown Airflow is stopped, then every model server its runs deployed.
    """
    param = getattr(request, "param", ())
    runtimes, extra = (param.get("runtimes", ()), param.get("env", {})) if isinstance(param, dict) else (param, {})
    for name in runtimes:
        request.getfixturevalue(f"{name}_runtime")
    port = free_port()
    home, state_dir = tmp_path / "home", tmp_path / "state"
    # free ports for the log servers too (8793, 8794 by default): other Airflows on this machine (another xdist
    # worker's, a developer's) keep theirs
    env = airflow_env(home, state_dir, AIRFLOW__API__PORT=str(port), AIRFLOW__API__HOST="127.0.0.1",
                      AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
                      AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
                      AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
                      AIRFLOW__CORE__PARALLELISM="2", AIRFLOW__API__WORKERS="1",
                      AIRFLOW__SCHEDULER__PARSING_PROCESSES="1", AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
                      **{k: v.format(tmp_path=tmp_path) for k, v in extra.items()})
    log_path = tmp_path / "standalone.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(BIN / "airflow"), "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        password = None
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()[-3000:]
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
        yield Standalone(base=base, token=token["access_token"], password=password, home=home,
                         state_dir=state_dir, tmp_path=tmp_path, log=log_path)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        stop_deployments(state_dir)  # after Airflow: no task can start another server
