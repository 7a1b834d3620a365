"""Local deployments with the real seldon-core model server, real Airflow and a model trained here.

The tests of this module share one state directory and run in order: it starts as a copy of the
model trained and pushed once per run (version 1, ``trained_taxi_model``); copies become version 2 and a corrupt version 3; then deploy, re-deploy,
switch under load, a broken version, malformed requests, rollback and undeploy.
"""

from __future__ import annotations

import csv
import http.client
import json
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from airflow_mlops.hooks.runtime import RuntimeHook
from airflow_mlops.hooks.seldon import SeldonHook
from airflow_mlops.serving.backends import DeployRequest
from airflow_mlops.shared import typed_record
from airflow_mlops.utils.model_registry import ModelRegistry

from ..serving.slow_clients import SlowClients
from .conftest import TAXI_MODEL, copy_of_trained_taxi_model
from .test_ingest_dag import TEST_DAGS, dags_test

pytestmark = pytest.mark.integration
PIPELINE, NAME = TAXI_MODEL, "it-serve"


@pytest.fixture(scope="module")
def state(tmp_path_factory, airflow_home, taxi_csv, trained_taxi_model):
    root = tmp_path_factory.mktemp("serve")
    st = copy_of_trained_taxi_model(trained_taxi_model, root, airflow_home, taxi_csv)
    registry = ModelRegistry(st["state_dir"] / "models" / PIPELINE)
    v1 = registry.get(1)
    registry.publish(v1.path, model_uri=v1.model_uri + "#copy", run_id="copy")  # version 2: same weights
    broken = root / "broken"
    shutil.copytree(v1.path, broken)
    (broken / "saved_model.pb").write_bytes(b"\x08not a graph")
    registry.publish(broken, model_uri="corrupt", run_id="corrupt")  # version 3: does not load
    yield st
    for name in st["hook"].registry.names():  # the servers outlive tasks by design: stop them here
        st["hook"].deployments.undeploy(name)


def records(state, start=0, count=5) -> list[dict]:
    spec = json.loads((Path(ModelRegistry(state["state_dir"] / "models" / PIPELINE).get(1).path)
                       / "assets.extra" / "feature_spec.json").read_text())
    with open(state["csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))[start:start + count]
    return [{k: r.get(k) for k in spec} for r in map(lambda row: typed_record(row, spec), rows)]  # empty: None


def post(url: str, body, raw: bytes | None = None) -> tuple[int, dict]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", "/api/v1.0/predictions", body=raw if raw is not None else json.dumps(body),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def deploy(state, version, **extra):
    return dags_test(state, {"pipeline_name": PIPELINE, "deployment_name": NAME, "model_version": version, **extra},
                     dag_id="test_serve", dags_folder=TEST_DAGS)


class Load:
    """Steady 1-row requests from a thread; counts failures and the versions that answered."""

    def __init__(self, url: str, record: dict) -> None:
        self.url, self.record = url, record
        self.ok, self.failed, self.versions, self.errors = 0, 0, [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status, body = post(self.url, {"jsonData": {"instances": [self.record]}})
            except OSError as err:
                status, body = 0, {"error": str(err)}
            if status == 200:
                self.ok += 1
                version = body["meta"]["tags"]["model_version"]
                if not self.versions or self.versions[-1] != version:
                    self.versions.append(version)
            else:
                self.failed += 1
                self.errors.append((status, body))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)


def test_deploy_serves_the_pushed_model_like_the_savedmodel_itself(state):
    code, log, _ = deploy(state, 1)
    assert code == 0, log[-4000:]
    dep = state["hook"].get_deployment(NAME)
    assert dep.version == 1 and dep.host == "127.0.0.1" and dep.status == "available"
    rows = records(state)
    direct = RuntimeHook(runtime="serving", mlops_conn_id=None, state_dir=str(state["state_dir"])).run_step(
        "serving.direct_predict", {"model_path": dep.model_path, "records": rows})["outputs"]["probabilities"]
    status, body = post(dep.url, {"jsonData": {"instances": rows}})
    assert status == 200 and body["data"]["names"] == ["probabilities"]
    assert [r[0] for r in body["data"]["ndarray"]] == pytest.approx(direct, abs=1e-6)
    assert body["meta"]["tags"] == {"model_version": 1, "deployment": NAME}
    # the same through seldon-core's own client, in both request forms
    names = sorted(rows[0])
    serving = RuntimeHook(runtime="serving", mlops_conn_id=None, state_dir=str(state["state_dir"]))
    for form in ("ndarray", "json"):
        result = serving.run_step("serving.client_predict", {"endpoint": f"{dep.host}:{dep.port}", "records": rows,
                                                             "names": names, "form": form})
        assert result["success"], result
        assert [r[0] for r in result["response"]["data"]["ndarray"]] == pytest.approx(direct, abs=1e-6)
    # every request and its predictions are in the prediction log, with the version
    lines = [json.loads(line) for f in sorted(Path(dep.prediction_log).glob("*.jsonl")) for line in f.read_text().splitlines()]
    assert len(lines) >= 3 and all(entry["model_version"] == 1 and entry["deployment"] == NAME for entry in lines)
    assert lines[0]["instances"] == rows and len(lines[0]["predictions"]) == len(rows)
    with urllib.request.urlopen(f"{dep.url}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert f'mlops_predictions_total{{deployment_name="{NAME}"' in metrics


def test_deploying_the_served_version_again_changes_nothing(state):
    before = state["hook"].get_deployment(NAME)
    code, log, _ = deploy(state, 1)
    assert code == 0 and "already serves model version 1" in log
    after = state["hook"].get_deployment(NAME)
    assert after.pid == before.pid and after.history == before.history


def test_new_version_under_steady_load_without_a_failed_request(state):
    dep = state["hook"].get_deployment(NAME)
    with Load(dep.url, records(state, 10, 1)[0]) as load:
        time.sleep(1)
        code, log, _ = deploy(state, 2)
        time.sleep(1)
    assert code == 0, log[-4000:]
    assert load.failed == 0, load.errors[:3]
    assert load.ok > 20 and load.versions == [1, 2]
    assert state["hook"].get_deployment(NAME).pid == dep.pid  # swapped inside the server, no restart


def test_broken_version_fails_the_task_and_the_old_one_keeps_serving(state):
    dep = state["hook"].get_deployment(NAME)
    with Load(dep.url, records(state, 20, 1)[0]) as load:
        code, log, _ = deploy(state, 3)
        time.sleep(1)
    assert code != 0
    assert "model version 3 failed its health check" in log and "still serving 2" in log
    assert "last lines of" in log  # the server's log excerpt
    assert load.failed == 0 and load.versions == [2]
    after = state["hook"].get_deployment(NAME)
    assert after.version == 2 and after.history == dep.history  # the record is unchanged
    assert state["hook"].deployments.status(NAME)["serving"] == 2


def test_trigger_reports_served_and_failed_versions(state):
    """The deferrable sensor's trigger, against the real server (run after the broken-version test)."""
    import asyncio

    from airflow_mlops.triggers.seldon import SeldonDeploymentTrigger

    dep = state["hook"].get_deployment(NAME)

    async def first_event(trigger):
        async for event in trigger.run():
            return event.payload

    served = asyncio.run(first_event(SeldonDeploymentTrigger(dep.url, version=dep.version, poll_interval=0.2, timeout=30)))
    assert served == {"status": "success", "version": dep.version, "url": dep.url}
    failed = asyncio.run(first_event(SeldonDeploymentTrigger(dep.url, version=3, poll_interval=0.2, timeout=30)))
    assert failed["status"] == "failed" and "saved_model.pb" in failed["message"]
    timeout = asyncio.run(first_event(SeldonDeploymentTrigger(dep.url, version=99, poll_interval=0.2, timeout=1)))
    assert timeout["status"] == "timeout"
    classpath, kwargs = SeldonDeploymentTrigger(dep.url, version=2).serialize()
    assert classpath == "airflow_mlops.triggers.seldon.SeldonDeploymentTrigger"
    assert SeldonDeploymentTrigger(**kwargs).url == dep.url


def post_to(url: str, path: str, body) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def test_request_ids_feedback_and_outcome_files_give_the_quality_of_the_served_version(state, monkeypatch):
    """Predictions carry request ids (a client's is kept); truth through the feedback endpoint and an outcome
    file; the quality check's metric equals AUC computed independently on the same rows; nothing is lost."""
    from airflow_mlops.operators.quality import ModelQualityOperator

    dep = state["hook"].get_deployment(NAME)
    with open(state["csv"], newline="") as handle:
        trips = list(csv.DictReader(handle))[3000:3200]
    spec = json.loads((Path(dep.model_path) / "assets.extra" / "feature_spec.json").read_text())
    truth = [int(float(t["tips"]) > 0.2 * float(t["fare"])) for t in trips]
    sent = []
    for n in range(10):
        body = {"jsonData": {"instances": [typed_record(t, spec) for t in trips[n * 20:n * 20 + 20]]}}
        if n == 0:
            body["meta"] = {"puid": "client-chosen-0"}
        code, answer = post_to(dep.url, "/api/v1.0/predictions", body)
        assert code == 200, answer
        sent.append((answer["meta"]["puid"], [row[0] for row in answer["data"]["ndarray"]], truth[n * 20:n * 20 + 20]))
    assert sent[0][0] == "client-chosen-0" and len({rid for rid, _, _ in sent}) == 10
    for rid, _, labels in sent[:5]:  # half the truth through Seldon's feedback endpoint
        code, answer = post_to(dep.url, "/api/v1.0/feedback",
                               {"request": {"meta": {"puid": rid}}, "truth": {"data": {"ndarray": labels}}})
        assert code == 200 and answer["meta"]["tags"]["feedback"] == "recorded", answer
    code, answer = post_to(dep.url, "/api/v1.0/feedback", {"truth": {"data": {"ndarray": [1]}}})
    assert code == 400 and "names no prediction: send the prediction's meta.puid" in json.dumps(answer)
    code, _ = post_to(dep.url, "/api/v1.0/feedback", {"request": {"meta": {"puid": "never-served"}},
                                                      "truth": {"data": {"ndarray": [1]}}})
    assert code == 200  # recorded; the check counts it as an unknown request
    feedback_root = state["state_dir"] / "truth"
    feedback_root.mkdir(parents=True, exist_ok=True)
    lines = ["request_id,row,label"] + [f"{rid},{i},{y}" for rid, _, labels in sent[5:] for i, y in enumerate(labels)]
    lines += [f"{sent[5][0]},0,{1 - sent[5][2][0]}", "no-such-request,0,1", f"{sent[6][0]},x,1"]
    (feedback_root / "batch-1.csv").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("AIRFLOW__MLOPS__STATE_DIR", str(state["state_dir"]))
    result = ModelQualityOperator(task_id="quality", deployment_name=NAME, min_labels=50,
                                  feedback_root=str(feedback_root)).execute({"run_id": "it_quality"})
    mine = [(score, y) for _, scores, labels in sent for score, y in zip(scores, labels)]
    positives = [s for s, y in mine if y == 1]
    negatives = [s for s, y in mine if y == 0]
    expected = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives) / (
        len(positives) * len(negatives))
    served = result["versions"][str(dep.version)]  # earlier tests' rows of this version have no truth: left out
    assert served["samples"] == 200 and result["join"]["labelled_rows"] == 200
    assert served["value"] == pytest.approx(expected, abs=1e-9) and result["serving"] == dep.version
    assert result["join"]["unknown_ids"] == 2 and result["join"]["duplicates"] == 1
    assert result["join"]["malformed"] == 1 and "row 'x' is not a whole number" in result["join"]["malformed_places"][0]
    assert Path(result["report"]).is_file() and Path(result["plot"]).read_text().startswith("<svg")
    logged = {json.loads(line).get("request_id") for f in Path(dep.prediction_log).glob("*.jsonl")
              for line in f.read_text().splitlines()}
    assert {rid for rid, _, _ in sent} <= logged  # every request, with its id, in the prediction log


@pytest.mark.parametrize("raw, body, status, message", [
    (b"{not json", None, 400, ""),
    (None, {"jsonData": {"instances": [{"fare": 1.0}]}}, 400, "is missing"),
    (None, {"jsonData": {"instances": [{"fare": "cheap"}]}}, 400, "feature 'fare' must be float"),
    (None, {"jsonData": {"instances": []}}, 400, "empty batch"),
    (None, {"data": {"names": ["fare"], "ndarray": [[1.0]] * 20000}}, 413, "at most 10000"),
    (None, {"data": {"ndarray": [[1.0]]}}, 400, "data.names"),
])
def test_malformed_requests_get_4xx_and_the_server_stays_up(state, raw, body, status, message):
    dep = state["hook"].get_deployment(NAME)
    got, answer = post(dep.url, body, raw)
    assert got == status, answer
    assert message in json.dumps(answer)
    ok, _ = post(dep.url, {"jsonData": {"instances": records(state, 0, 1)}})
    assert ok == 200


def request_raw(url: str, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, str]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", errors="replace")
    finally:
        conn.close()


def prediction_log_lines(state, name: str = NAME) -> list[dict]:
    """Every line of deployment ``name``'s prediction log, each parsed as strict JSON (no NaN, no Infinity)."""
    def strict(token):
        raise ValueError(f"non-JSON token {token} in the prediction log")

    folder = Path(state["hook"].get_deployment(name).prediction_log)
    lines = [line for path in sorted(folder.glob("*.jsonl")) for line in path.read_text().splitlines() if line]
    assert lines, f"no prediction log in {folder}"
    return [json.loads(line, parse_constant=strict) for line in lines]


JSON = {"Content-Type": "application/json"}
PREDICT = "/api/v1.0/predictions"


def with_value(state, field: str, raw: str) -> bytes:
    """A valid request whose ``field`` holds the JSON text ``raw`` (NaN, 1e300, …: what clients send)."""
    record = {**records(state, 0, 1)[0], field: "__VALUE__"}
    return json.dumps({"jsonData": record}).replace('"__VALUE__"', raw).encode()


@pytest.mark.parametrize("method, path, body, headers, status, message", [
    ("POST", PREDICT, ("fare", "NaN"), JSON, 400, "feature 'fare': nan is not a finite number"),
    ("POST", PREDICT, ("fare", "Infinity"), JSON, 400, "feature 'fare': inf is not a finite number"),
    ("POST", PREDICT, ("fare", "1e300"), JSON, 400, "feature 'fare': 1e+300 is beyond the float32 range"),
    ("POST", PREDICT, ("trip_seconds", "99999999999999999999999"), JSON, 400, "beyond the int64 range"),
    ("POST", PREDICT, ("trip_seconds", "1e30"), JSON, 400, "feature 'trip_seconds': 1e+30 is beyond the int64 range"),
    ("POST", PREDICT, ("payment_type", '"\\ud800"'), JSON, 400, "feature 'payment_type': the string is not valid"),
    ("POST", PREDICT, b'{"jsonData": ' + b"[" * 100000 + b"]" * 100000 + b"}", JSON, 400, "nests too deeply"),
    ("GET", PREDICT, None, {}, 405, "send the request with POST"),
    ("POST", "/api/v1.0/nothing-here", b"{}", JSON, 405, "/api/v1.0/nothing-here"),
    ("GET", "/no/such/page", None, {}, 404, "/no/such/page"),
    ("POST", PREDICT, ("fare", "12.5"), {}, 415, "Content-Type: application/json"),
])
def test_client_mistakes_are_4xx_naming_the_problem_and_nothing_is_lost(state, method, path, body, headers, status,
                                                                         message):
    dep = state["hook"].get_deployment(NAME)
    if isinstance(body, tuple):
        body = with_value(state, *body)
    got, text = request_raw(dep.url, method, path, body, headers)
    assert got == status, text
    assert message in text and "NaN" not in text
    ok, answer = post(dep.url, {"jsonData": {"instances": records(state, 0, 1)}})
    assert ok == 200, answer
    assert all(isinstance(entry, dict) for entry in prediction_log_lines(state))  # every line still strict JSON
    with urllib.request.urlopen(f"{dep.url}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert "NOT_IMPLEMENTED" not in metrics
    assert f'deployment_name="{NAME}"' in metrics and 'status="500"' not in metrics
    assert re.search(r'mlops_requests_total\{[^}]*model_version="\d+"', metrics)


def test_fuzzed_request_bodies_never_get_a_5xx(state):
    """Random and mutated bodies (bounded: 300 requests, 60 s): every answer is 2xx or 4xx, the server stays up."""
    import random
    import time

    dep = state["hook"].get_deployment(NAME)
    rng = random.Random(20261205)
    good = json.dumps({"jsonData": {"instances": records(state, 0, 2)}}).encode()
    pieces = [b"{", b"}", b"[", b"]", b'"', b",", b":", b"NaN", b"-Infinity", b"1e999", b"null", b"true",
              b'"\\ud800"', b"\xff", b"\x00", b'"fare"', b'"jsonData"', b'"data"', b'"ndarray"', b"-0", b"1e-400"]
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + 60
    for i in range(300):
        if time.monotonic() > deadline:
            break
        body = bytearray(good)
        for _ in range(rng.randint(1, 6)):  # mutate: replace, insert or delete a slice
            at = rng.randrange(len(body) + 1)
            choice = rng.random()
            if choice < 0.4:
                body[at:at + rng.randint(0, 4)] = rng.choice(pieces)
            elif choice < 0.7:
                body[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 3)))
            else:
                del body[at:at + rng.randint(1, 8)]
        if i % 10 == 0:
            body = bytearray(rng.randbytes(rng.randint(0, 200)))
        status, text = request_raw(dep.url, "POST", PREDICT, bytes(body), JSON)
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500, f"{status} for {bytes(body)[:300]!r}: {text[:300]}"
    assert sum(statuses.values()) >= 100 and any(code >= 400 for code in statuses), statuses
    ok, _ = post(dep.url, {"jsonData": {"instances": records(state, 0, 1)}})
    assert ok == 200
    assert all(isinstance(entry, dict) for entry in prediction_log_lines(state))


def test_slow_clients_do_not_starve_the_server(state):
    """50 connections that never finish their request: pings and predictions are still answered (without the
    asyncio front four such clients took every gunicorn thread until they left)."""
    dep = state["hook"].get_deployment(NAME)
    host, port = dep.url.removeprefix("http://").split(":")
    with SlowClients(host, int(port), 50):
        for _ in range(5):
            with urllib.request.urlopen(f"{dep.url}/health/ping", timeout=10) as response:
                assert response.status == 200
            status, body = post(dep.url, {"jsonData": {"instances": records(state, 0, 2)}})
            assert status == 200 and len(body["data"]["ndarray"]) == 2


def test_a_request_that_stops_half_way_is_closed_with_a_408(state):
    import socket

    dep = state["hook"].get_deployment(NAME)
    host, port = dep.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=90) as sock:  # the front waits 30 s for a body
        sock.sendall(b"POST /api/v1.0/predictions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"jsonD")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within" in answer


def test_rollback_then_undeploy_with_the_template_dag(state):
    code, log, _ = dags_test(state, {"deployment_name": NAME, "model_version": "previous", "undeploy": False},
                             dag_id="mlops_rollback")
    assert code == 0, log[-4000:]
    dep = state["hook"].get_deployment(NAME)
    assert dep.version == 1 and dep.history[-1]["action"] == "rollback"
    status, body = post(dep.url, {"jsonData": {"instances": records(state, 0, 1)}})
    assert status == 200 and body["meta"]["tags"]["model_version"] == 1
    code, log, _ = dags_test(state, {"deployment_name": NAME, "undeploy": True}, dag_id="mlops_rollback")
    assert code == 0, log[-4000:]
    assert state["hook"].deployments.status(NAME)["running"] is False
    with pytest.raises(OSError):
        post(dep.url, {"jsonData": {"instances": records(state, 0, 1)}})



def test_container_entrypoint_serves_model_uri_from_the_environment(state):
    """What docker/serving/Dockerfile runs: the model named by MODEL_URI / MODEL_VERSION, no deployment dir."""
    import os
    import signal
    import subprocess

    from airflow_mlops.runtimes.local import runtime_command
    from airflow_mlops.serving.local import free_port, server_status

    hook = RuntimeHook(runtime="serving", mlops_conn_id=None, state_dir=str(state["state_dir"]))
    model = ModelRegistry(state["state_dir"] / "models" / PIPELINE).get(1)
    port = free_port()
    package_parent = str(Path(__file__).resolve().parents[2])
    argv, env = runtime_command(hook.get_runtime(), ["python", "-m", "airflow_mlops.runtime_side.model_server.server", "--port", str(port)],
                                env={"PYTHONPATH": package_parent, "MODEL_URI": model.path, "MODEL_VERSION": "7"})
    proc = subprocess.Popen(argv, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            status = server_status(url)
            if status and status.get("version") == 7:
                break
            assert proc.poll() is None, "the model server exited"
            time.sleep(0.25)
        else:
            pytest.fail("the container entrypoint never served MODEL_URI")
        code, body = post(url, {"jsonData": {"instances": records(state, 0, 2)}})
        assert code == 200 and body["meta"]["tags"]["model_version"] == 7 and len(body["data"]["ndarray"]) == 2
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def test_prediction_log_on_an_fsspec_location(state, tmp_path, monkeypatch):
    """prediction_log as a URL: each server process writes objects (no appends), flushed on exit too."""
    monkeypatch.setenv("AIRFLOW__MLOPS__PREDICTION_LOG", f"file://{tmp_path}/plog")
    hook = SeldonHook(mlops_conn_id=None, state_dir=str(state["state_dir"]))
    root = str(state["state_dir"] / "models" / PIPELINE)
    dep = hook.deployments.deploy(DeployRequest("it-remote-log", root, 1))
    try:
        assert dep.prediction_log == f"file://{tmp_path}/plog/it-remote-log"
        for start in range(3):
            code, _ = post(dep.url, {"jsonData": {"instances": records(state, start, 1)}})
            assert code == 200
    finally:
        hook.deployments.undeploy("it-remote-log")  # SIGTERM: the server writes what it still buffers
    objects = sorted((tmp_path / "plog" / "it-remote-log").glob("*/*.jsonl"))
    lines = [json.loads(line) for f in objects for line in f.read_text().splitlines()]
    assert len(lines) == 3 and {entry["model_version"] for entry in lines} == {1}
    assert objects[0].parent.name == time.strftime("%Y-%m-%d", time.gmtime())
