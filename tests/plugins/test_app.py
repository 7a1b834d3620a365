"""The MLOps pages and their API served by a real ``airflow api-server`` (the plugin loaded from the package's
entry point), with Airflow's SimpleAuthManager: who may see what, what the pages show, and that nothing from a
report file is executed. The data is a generated state directory (:mod:`tests.plugins.sample_state`).
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from markupsafe import escape

from tests.conftest import BIN, airflow_env
from tests.integration.conftest import free_port
from tests.plugins.sample_state import DEPLOYMENT, EVIL, PIPELINE, write_state


@dataclass
class Server:
    base: str
    tokens: dict[str, str]
    expected: dict
    state: Path


def request(url: str, token: str | None = None, *, cookie: str | None = None, method: str = "GET",
            body: dict | None = None) -> tuple[int, dict[str, str], str]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if cookie:
        headers["Cookie"] = f"_token={cookie}"

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    data = json.dumps(body).encode() if body is not None else None
    try:
        with opener.open(urllib.request.Request(url, data=data, headers=headers, method=method), timeout=30) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read().decode()


@pytest.fixture(scope="module")
def server(airflow_home, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlops-pages")
    state = tmp / "state"
    expected = write_state(state, versions=4, drift_reports=6)
    port = free_port()
    passwords = tmp / "passwords.json"
    passwords.write_text(json.dumps({"admin": "admin-pw", "viewer": "viewer-pw"}))
    env = airflow_env(airflow_home, state, AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin,viewer:viewer",
                      AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
                      AIRFLOW__API__WORKERS="1")
    log_path = tmp / "api-server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(BIN / "airflow"), "api-server", "--port", str(port), "--host", "127.0.0.1"],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            with contextlib.suppress(OSError):
                if request(f"{base}/api/v2/monitor/health")[0] == 200:
                    break
            assert time.monotonic() < deadline, "the API server did not answer in 180 s:\n" + log_path.read_text()[-3000:]
            time.sleep(1)
        tokens = {}
        for user in ("admin", "viewer"):
            status, _, body = request(f"{base}/auth/token", method="POST",
                                      body={"username": user, "password": f"{user}-pw"})
            assert status in (200, 201), body
            tokens[user] = json.loads(body)["access_token"]
        yield Server(base, tokens, expected, state)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


PAGES = ["/mlops/models", f"/mlops/models/{PIPELINE}/2", "/mlops/deployments", f"/mlops/deployments/{DEPLOYMENT}",
         f"/mlops/drift/{DEPLOYMENT}", "/mlops/data"]
APIS = ["/mlops/api/models", "/mlops/api/deployments", f"/mlops/api/deployments/{DEPLOYMENT}",
        f"/mlops/api/drift/{DEPLOYMENT}", "/mlops/api/data"]


def test_anonymous_gets_401_from_the_api_and_the_login_page_for_a_page(server):
    for path in APIS:
        status, _, body = request(server.base + path)
        assert status == 401, (path, body)
    for path in PAGES:
        status, headers, _ = request(server.base + path)
        assert status == 303 and "/auth/login" in headers["location"] and "next=" in headers["location"], path
    assert request(server.base + "/mlops/api/models", "not-a-jwt")[0] in (401, 403)


def test_signed_in_users_see_every_page_through_the_ui_cookie(server):
    for path in PAGES:
        status, headers, body = request(server.base + path, cookie=server.tokens["viewer"])
        assert status == 200, (path, body[-500:])
        assert "script-src 'self'" in headers["content-security-policy"] and "<script>alert" not in body
        assert "signed in as viewer" in body


def text_of(body: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


def test_pages_show_the_numbers_of_the_files(server):
    token = server.tokens["admin"]
    _, _, body = request(f"{server.base}/mlops/models", token)
    for version, facts in server.expected["versions"].items():
        row = re.search(rf'<tr data-version="{version}">(.*?)</tr>', body, re.S).group(1)
        value = re.search(r'data-field="gate-value">([^<]*)<', row).group(1)
        assert float(value) == pytest.approx(facts["auc"], rel=1e-3) and facts["run_id"] in html.unescape(row)
    _, _, body = request(f"{server.base}/mlops/models/{PIPELINE}/2", token)
    auc = re.search(r'data-metric="auc">([^<]*)<', body).group(1)
    assert float(auc) == pytest.approx(server.expected["versions"][2]["auc"], rel=1e-5)
    _, _, body = request(f"{server.base}/mlops/deployments/{DEPLOYMENT}", token)
    assert re.search(r'data-field="version">.*?v4', body, re.S)
    assert f"{server.expected['requests']} requests" in text_of(body) and "<svg" in body
    _, _, body = request(f"{server.base}/mlops/drift/{DEPLOYMENT}/{server.expected['newest_report']}", token)
    report = server.expected["drift"][server.expected["newest_report"]]
    for name, feature in report["features"].items():
        row = re.search(rf'<tr class="(drift)?" data-feature="{re.escape(str(escape(name)))}">(.*?)</tr>', body, re.S)
        assert row is not None, name
        assert float(re.search(r'data-field="p_val">([^<]*)<', row.group(2)).group(1)) == pytest.approx(
            feature["p_val"], rel=1e-3)
        assert bool(row.group(1)) == feature["drift"]
    _, _, body = request(f"{server.base}/mlops/data", token)
    text = text_of(body)
    assert "rejected : 1 anomalies" in re.sub(r"\s+", " ", text) and EVIL in text and "ENUM_TYPE_UNEXPECTED_STRING_VALUES" in text


def test_the_api_returns_the_same_data(server):
    token = server.tokens["viewer"]
    _, _, body = request(f"{server.base}/mlops/api/models", token)
    listing = json.loads(body)
    assert listing["total"] == 4 and [v["version"] for v in listing["versions"]] == [4, 3, 2, 1]
    assert listing["versions"][0]["served_by"] == [DEPLOYMENT]
    _, _, body = request(f"{server.base}/mlops/api/drift/{DEPLOYMENT}?offset=2", token)
    page = json.loads(body)
    assert page["total"] == 6 and len(page["reports"]) == 4 and page["offset"] == 2
    assert request(f"{server.base}/mlops/api/drift/{DEPLOYMENT}?offset=x", token)[0] == 400
    assert request(f"{server.base}/mlops/api/drift/nothing", token)[0] == 404
    assert request(f"{server.base}/mlops/api/models?pipeline=nothing", token)[0] == 404
    assert request(f"{server.base}/mlops/drift/{DEPLOYMENT}/..%2F..%2Fsecret.png", token)[0] == 404
    _, _, body = request(f"{server.base}/mlops/api/deployments/{DEPLOYMENT}", token)
    health = json.loads(body)["health"]
    assert health["requests"] == server.expected["requests"]


def test_only_users_who_may_trigger_dags_get_the_actions(server):
    _, _, admin = request(f"{server.base}/mlops/deployments/{DEPLOYMENT}", server.tokens["admin"])
    _, _, viewer = request(f"{server.base}/mlops/deployments/{DEPLOYMENT}", server.tokens["viewer"])
    buttons = re.compile(r"<button class=\"action[^>]*>")
    assert buttons.findall(admin) and all("disabled" not in b for b in buttons.findall(admin))
    assert buttons.findall(viewer) and all("disabled" in b for b in buttons.findall(viewer))
    assert "you may not trigger mlops_rollback" in viewer
    # the buttons call Airflow's own API; it refuses a viewer whatever the page shows
    status, _, body = request(f"{server.base}/api/v2/dags/mlops_rollback/dagRuns", server.tokens["viewer"],
                              method="POST", body={"logical_date": None, "conf": {"deployment_name": DEPLOYMENT}})
    assert status == 403, body
