"""Airflow's UI in a real browser: sign in, trigger ``mlops_train_deploy`` through its trigger form with
changed params (approval required), approve the pushed version on the run's Required Actions page, and watch
the run succeed under the real scheduler, up to the model being served. :func:`check_mlops_pages` is the
closed-loop test's look at the MLOps pages.

Needs Debian's chromium (``scripts/browser-tools.sh`` installs it) and the ``playwright`` package,
which drives that chromium and never downloads a browser of its own.
"""

from __future__ import annotations

import json
import os
import re
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
         "Pusher", "approve", "deploy", "wait_for_serving", "why_this_run"]
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
    expected_conf = {name: param["value"] for name, param in params.items()} | CHANGED | {"require_approval": True}

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
    approval = form.locator('input[name="element_require_approval"]')  # a switch: its input is hidden,
    form.locator('[id="switch:element_require_approval:control"]').click()  # a person clicks its control
    assert approval.is_checked()
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

    # the run waits for a human at the approve task; the reviewer approves on its Required Actions page
    from .test_approval import waiting_for_a_human

    waiting_for_a_human(standalone, run_id, DAG_ID, timeout=RUN_TIMEOUT)
    run_page = page.url
    page.goto(f"{base}/dags/{DAG_ID}/runs/{urllib.parse.quote(run_id, safe='')}/tasks/approve/required_actions")
    expect(page.get_by_text("Deploy browser_taxi model version 1 as browser-test?").first).to_be_visible()
    expect(page.get_by_text("nothing is served yet").first).to_be_visible()
    with page.expect_response(lambda r: r.request.method == "PATCH" and r.url.endswith("/hitlDetails")) as answered:
        page.get_by_test_id("hitl-option-Approve").click()
    assert answered.value.status == 200, answered.value.text()
    page.goto(run_page)
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
    from airflow_mlops.utils.model_registry import ModelRegistry

    approval = ModelRegistry(standalone.state_dir / "models" / "browser_taxi").get(1).approval
    assert approval is not None and (approval["approved"], approval["by"]) == (True, "admin"), approval
    live = hook.deployments.status("browser-test")
    assert live["running"] and live["serving"] == 1, json.dumps(live, default=str)


def shot(page, tmp_path: Path, name: str) -> None:
    """A full-page screenshot kept with the test's files (``tmp_path/pages/<name>.png``)."""
    path = tmp_path / "pages" / f"{name}.png"
    path.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def check_mlops_pages(page, s, *, pipeline: str, deployment: str, train_run: str, retrain_run: str,
                      monitor_run: str) -> None:
    """The MLOps pages after a closed loop (v1 trained, drift, v2 retrained and served), in the browser: the numbers
    shown equal the registry, run records and report files; "roll back to v1" runs mlops_rollback and v1 serves."""
    from playwright.sync_api import expect

    from airflow_mlops.hooks.seldon import SeldonHook
    from airflow_mlops.utils.model_registry import ModelRegistry
    from airflow_mlops.utils.run_records import safe_name

    base = s.base
    registry = {v.version: v for v in ModelRegistry(s.state_dir / "models" / pipeline).versions()}
    assert sorted(registry) == [1, 2]

    # the nav entry of Airflow's UI shows the pages inside the UI
    sign_in(page, base, s.password, "/plugin/mlops")
    frame = page.frame_locator("iframe")
    expect(frame.get_by_role("heading", name=f"Model versions of {pipeline}")).to_be_visible(timeout=30_000)
    shot(page, s.tmp_path, "nav-mlops")

    # model versions: the gating value of each version is its registry record's
    page.goto(f"{base}/mlops/models?pipeline={pipeline}")
    for version, record in registry.items():
        row = page.locator(f'tr[data-version="{version}"]')
        assert float(row.locator('[data-field="gate-value"]').inner_text()) == pytest.approx(
            record.metrics["auc"], rel=1e-3), version
        expect(row).to_contain_text(record.run_id)
    expect(page.locator('tr[data-version="2"]')).to_contain_text(deployment)  # served by
    shot(page, s.tmp_path, "models")
    page.locator('tr[data-version="2"] a').first.click()
    metrics = page.get_by_test_id("metrics")
    for key, value in registry[2].metrics.items():
        assert float(metrics.locator(f'[data-metric="{key}"]').inner_text()) == pytest.approx(value, rel=1e-5), key
    expect(page.locator("table.facts")).to_contain_text("v1, served by")  # the baseline: the served model
    expect(page.locator("table.facts")).to_contain_text(f"model artifact {registry[2].model_artifact_id}")
    shot(page, s.tmp_path, "version")

    # drift: the monitor run's report, p-values as in its file, and the retraining it caused
    report_name = safe_name(monitor_run)
    report = json.loads((s.state_dir / "drift" / deployment / "reports" / f"{report_name}.json").read_text())
    page.goto(f"{base}/mlops/drift/{deployment}")
    assert page.locator(f'tr[data-report="{report_name}"]').get_attribute("class") == "drift"  # highlighted
    page.locator(f'tr[data-report="{report_name}"] a').click()
    for name, feature in report["features"].items():
        row = page.locator(f'tr[data-feature="{name}"]')
        assert float(row.locator('[data-field="p_val"]').inner_text()) == pytest.approx(feature["p_val"], rel=1e-3)
        assert ("drift" in (row.get_attribute("class") or "")) == feature["drift"], name
    expect(page.locator("table.facts")).to_contain_text(retrain_run)
    expect(page.locator("img.plot")).to_be_visible()
    shot(page, s.tmp_path, "drift")

    # data validation: both training runs' spans accepted, the reference schema's features
    page.goto(f"{base}/mlops/data?pipeline={pipeline}")
    for run_id in (train_run, retrain_run):
        expect(page.locator(f'tr[data-run="{run_id}"]')).to_contain_text("accepted")
    expect(page.get_by_test_id("schema").locator("tbody tr")).to_have_count(
        len(re.findall(r"^feature \{", (s.state_dir / "schemas" / pipeline / "v1" / "schema.pbtxt").read_text(),
                       re.M)))
    shot(page, s.tmp_path, "data")

    # deployments: v2 serves; its history says which runs deployed what; roll back to v1 from the page
    page.goto(f"{base}/mlops/deployments/{deployment}")
    expect(page.locator('[data-field="version"]')).to_contain_text("v2")
    expect(page.locator("table.history")).to_contain_text(retrain_run)
    expect(page.locator("table.history")).to_contain_text(train_run)
    shot(page, s.tmp_path, "deployment")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Roll back to v1").click()
    expect(page.locator(".status")).to_contain_text("triggered", timeout=30_000)
    run_id = page.evaluate("document.body.dataset.lastRun")
    deadline = time.monotonic() + 300
    while True:
        status, run = call(f"{base}/api/v2/dags/mlops_rollback/dagRuns/{urllib.parse.quote(run_id, safe='')}",
                           s.token)
        if status == 200 and run["state"] in ("success", "failed"):
            break
        assert time.monotonic() < deadline, f"the rollback run {run_id} did not finish: {run}"
        time.sleep(3)
    assert run["state"] == "success" and run["conf"]["model_version"] == 1, run
    assert run["triggered_by"] in ("rest_api", "ui") and run["triggering_user_name"] == "admin", run
    page.reload()
    expect(page.locator('[data-field="version"]')).to_contain_text("v1")
    expect(page.locator("table.history")).to_contain_text(run_id)
    seldon = SeldonHook(mlops_conn_id=None, state_dir=str(s.state_dir))
    assert seldon.get_deployment(deployment).version == 1 and seldon.deployments.status(deployment)["serving"] == 1
    shot(page, s.tmp_path, "deployment-rolled-back")

    # the Pusher's task instance links to its version's page (an operator extra link)
    status, links = call(f"{base}/api/v2/dags/mlops_train_deploy/dagRuns/{urllib.parse.quote(retrain_run, safe='')}"
                         "/taskInstances/Pusher/links", s.token)
    assert status == 200 and (links["extra_links"].get("MLOps model version") or "").endswith(
        f"/mlops/models/{pipeline}/2"), links
