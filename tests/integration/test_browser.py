"""Airflow's UI in a real browser: sign in, trigger ``mlops_train_deploy`` through its trigger form with
changed params, and watch the run succeed under the real scheduler, up to the model being served.

Needs Debian's chromium (``scripts/browser-tools.sh`` installs it) and the ``playwright`` package,
which drives that chromium and never downloads a browser of its own.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from pathlib import Path

import pytest

from .conftest import REPORTS, call

pytestmark = pytest.mark.integration

DAG_ID = "mlops_train_deploy"
#: what the test changes in the form; every other param keeps its default
CHANGED = {"num_workers": 1, "train_steps": 100, "pipeline_name": "browser_taxi", "deployment_name": "browser-test"}
TASKS = ["CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform", "Trainer", "Evaluator",
         "Pusher", "deploy", "wait_for_serving", "why_this_run"]
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
# without the background-networking flags chromium's own connections are refused on a closed network
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RUN_TIMEOUT = 900  # seconds; a generous bound for 2 cores, not a speed assertion


@pytest.fixture
def page(request, tmp_path):
    """A headless chromium page; a screenshot of it goes to ``tmp_path/failure.png`` when the test fails."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # imported here: collecting the unit tests must not need playwright
        pytest.fail("the browser test needs playwright: pip install 'playwright==1.65.2' (the test extra)")
    if not CHROMIUM.is_file():
        pytest.fail(f"the browser test needs chromium at {CHROMIUM}: run scripts/browser-tools.sh")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.set_default_timeout(30_000)
            page = context.new_page()
            yield page
            report = request.node.stash.get(REPORTS, {}).get("call")
            if report is None or report.failed:
                shot = tmp_path / "failure.png"
                page.screenshot(path=str(shot), full_page=True)
                print(f"screenshot of the page at {page.url}: {shot}")
        finally:
            browser.close()


def sign_in(page, base: str, password: str, path: str) -> None:
    """Open ``path``, which sends us to the login page of the SimpleAuthManager, and sign in as admin."""
    page.goto(f"{base}{path}")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{path}")


def wait_for_dag(base: str, token: str, timeout: float = 180) -> dict:
    """The DAG's details (params included) once the DAG processor has parsed the file."""
    deadline = time.monotonic() + timeout
    while True:
        status, details = call(f"{base}/api/v2/dags/{DAG_ID}/details", token)
        if status == 200:
            return details
        assert time.monotonic() < deadline, f"{DAG_ID} never appeared: {status} {details}"
        time.sleep(3)


def blocking_params(params: dict) -> list[str]:
    """Params that Airflow's trigger form treats as missing: a type without null and an empty value."""
    out = []
    for name, param in params.items():
        types = param["schema"].get("type")
        types = types if isinstance(types, list) else [types]
        if types != [None] and "null" not in types and param["value"] in (None, "") and name not in CHANGED:
            out.append(f"{name} (type {param['schema'].get('type')}, default {param['value']!r})")
    return out


def wait_for_run_in_ui(page, timeout: float = RUN_TIMEOUT) -> str:
    """Read the run's state badge on its page (the UI refreshes it) until the run is finished."""
    badge = page.get_by_test_id("header-card").get_by_test_id("state-badge")
    deadline = time.monotonic() + timeout
    polls = 0
    while True:
        state = badge.inner_text().strip().lower()
        if state in ("success", "failed"):
            return state
        assert time.monotonic() < deadline, f"the run did not finish in {timeout} s (state in the UI: {state!r})"
        polls += 1
        if polls % 12 == 0:  # about once a minute, in case the UI stopped refreshing
            page.reload()
        page.wait_for_timeout(5_000)


def task_log_tail(base: str, token: str, run_id: str, task: dict, lines: int = 30) -> str:
    url = (f"{base}/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/"
           f"{task['task_id']}/logs/{task['try_number']}")
    status, body = call(url, token)
    if status != 200:
        return f"(no log: {status})"
    return "\n".join(str(e.get("event", "")) for e in body.get("content", [])[-lines:])


@pytest.mark.parametrize("standalone", [("serving",)], indirect=True, ids=["serving"])
def test_trigger_form_with_changed_params_runs_and_deploys(standalone, page):
    from playwright.sync_api import expect

    base, token = standalone.base, standalone.token
    params = wait_for_dag(base, token)["params"]
    expected_conf = {name: param["value"] for name, param in params.items()} | CHANGED

    # the trigger form of the DAG's page
    sign_in(page, base, standalone.password, f"/dags/{DAG_ID}")
    page.get_by_test_id("trigger-dag-button").click()
    form = page.get_by_role("dialog")
    form.locator('input[name="element_pipeline_name"]').wait_for()
    unpause = form.get_by_role("checkbox", name=f"Unpause {DAG_ID} on trigger")
    if not unpause.is_checked():  # the DAG starts paused: the form unpauses it with the run
        unpause.check()
    for name, value in CHANGED.items():
        field = form.locator(f'input[name="element_{name}"]')
        field.fill(str(value))
        field.blur()
    submit = form.get_by_test_id("trigger-dag-submit")
    expect(submit, "the trigger form keeps its Trigger button disabled; params it takes as missing (a type "
           f"without null and an empty value): {blocking_params(params) or 'none found, see the screenshot'}"
           ).to_be_enabled(timeout=10_000)
    with page.expect_response(lambda r: r.request.method == "POST"
                              and r.url.endswith(f"/api/v2/dags/{DAG_ID}/dagRuns")) as posted:
        submit.click()
    response = posted.value
    assert response.status == 200, response.text()
    run_id = response.json()["dag_run_id"]

    # the UI opens the run's page; its state badge follows the run
    page.wait_for_url(f"**/dags/{DAG_ID}/runs/**")
    assert urllib.parse.unquote(page.url).endswith(f"/runs/{run_id}"), page.url
    ui_state = wait_for_run_in_ui(page)

    run_url = f"{base}/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}"
    status, run = call(run_url, token)
    assert status == 200, run
    status, listing = call(f"{run_url}/taskInstances", token)
    assert status == 200, listing
    tasks = {t["task_id"]: t for t in listing["task_instances"]}
    states = {name: t["state"] for name, t in tasks.items()}
    logs = {name: task_log_tail(base, token, run_id, t) for name, t in tasks.items() if t["state"] != "success"}
    assert (ui_state, run["state"]) == ("success", "success"), f"{states}\n" + "\n\n".join(
        f"--- {name} ---\n{log}" for name, log in logs.items())
    assert states == dict.fromkeys(TASKS, "success")
    assert run["triggered_by"] == "ui" and run["run_type"] == "manual"
    assert run["conf"] == expected_conf

    # the params reached the tasks: the model of pipeline browser_taxi is served as deployment browser-test
    from airflow_mlops.hooks.seldon import SeldonHook

    hook = SeldonHook(mlops_conn_id=None, state_dir=str(standalone.state_dir))
    assert hook.registry.names() == ["browser-test"]
    dep = hook.get_deployment("browser-test")
    assert dep.version == 1 and Path(dep.model_root) == standalone.state_dir / "models" / "browser_taxi"
    live = hook.deployments.status("browser-test")
    assert live["running"] and live["serving"] == 1, json.dumps(live, default=str)
