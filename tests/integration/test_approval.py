"""The approval gate under a real Airflow: a run waits for a human, who answers through the REST API
(what the UI's Required Actions page calls) or in the UI itself (playwright and Debian's chromium, as
in test_browser.py); the decision reaches the model registry.

The test DAG is ``tests/integration/dags/approval.py`` (a fake pushed version, the approval, a stand-in deploy).
"""

from __future__ import annotations

import json
import time
import urllib.parse
from pathlib import Path

import pytest

from .conftest import call
from . import test_browser
from .test_browser import sign_in

page = test_browser.page  # the fixture: a headless page of Debian's chromium

pytestmark = pytest.mark.integration

DAG_ID = "test_approval"
TEST_DAGS = Path(__file__).parent / "dags"
#: Airflow parses the test DAGs (a DAG bundle of that folder) instead of the repository's; the fixture
#: formats env values with str.format, hence the doubled braces
BUNDLES = json.dumps([{"name": "integration-test-dags", "kwargs": {"path": str(TEST_DAGS)},
                       "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle"}])
STANDALONE = {"runtimes": (), "env": {
    "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": BUNDLES.replace("{", "{{").replace("}", "}}")}}


def dag_url(base: str) -> str:
    return f"{base}/api/v2/dags/{DAG_ID}"


def run_url(base: str, run_id: str, dag_id: str = DAG_ID) -> str:
    return f"{base}/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}"


def trigger(base: str, token: str) -> str:
    """Unpause the DAG (once it is parsed) and start a run; its id."""
    deadline = time.monotonic() + 180
    while call(dag_url(base), token)[0] != 200:
        assert time.monotonic() < deadline, f"{DAG_ID} never appeared"
        time.sleep(3)
    assert call(dag_url(base), token, {"is_paused": False}, method="PATCH")[0] == 200
    status, run = call(f"{dag_url(base)}/dagRuns", token, {"logical_date": None})
    assert status == 200, run
    return run["dag_run_id"]


def task_states(base: str, token: str, run_id: str, dag_id: str = DAG_ID) -> dict[str, str]:
    status, listing = call(f"{run_url(base, run_id, dag_id)}/taskInstances", token)
    assert status == 200, listing
    return {t["task_id"]: t["state"] for t in listing["task_instances"]}


def wait_for(base: str, token: str, run_id: str, done, what: str, timeout: float = 300,
             dag_id: str = DAG_ID) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        states = task_states(base, token, run_id, dag_id)
        if done(states):
            return states
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout} s: {states}"
        time.sleep(2)


def waiting_for_a_human(standalone, run_id: str, dag_id: str = DAG_ID, timeout: float = 300) -> dict:
    """Wait until the approval task waits for input; its Human-in-the-loop request."""
    base, token = standalone.base, standalone.token
    states = wait_for(base, token, run_id, lambda s: s.get("approve") in ("awaiting_input", "failed", "success",
                                                                          "upstream_failed"),
                      "the approval task waiting for input", timeout, dag_id)
    assert states["approve"] == "awaiting_input", states
    assert states["deploy"] is None, states
    # Airflow 3.3.2's scheduler fails the task ("state changed externally") when an answer resumes it before the
    # scheduler has taken the executor's report of the parking exit (1 to 6 s later here); a human is never that
    # fast, the test waits for that report in the scheduler's log
    parked = (f"Received executor event with state success for task instance TaskInstanceKey(dag_id='{dag_id}', "
              f"task_id='approve', run_id='{run_id}'")
    deadline = time.monotonic() + 60
    while parked not in standalone.log.read_text():
        assert time.monotonic() < deadline, "the scheduler never took the report of the parked task"
        time.sleep(0.5)
    status, detail = call(f"{run_url(base, run_id, dag_id)}/taskInstances/approve/-1/hitlDetails", token)
    assert status == 200, detail
    return detail


def finished(base: str, token: str, run_id: str) -> tuple[str, dict[str, str]]:
    states = wait_for(base, token, run_id, lambda s: s.get("deploy") in ("success", "skipped", "failed",
                                                                         "upstream_failed"), "the run's end")
    deadline = time.monotonic() + 60
    while (run := call(run_url(base, run_id), token)[1])["state"] not in ("success", "failed"):
        assert time.monotonic() < deadline, run
        time.sleep(2)
    return run["state"], states


def approval_of(state_dir: Path, version: int) -> dict | None:
    from airflow_mlops.utils.model_registry import ModelRegistry

    return ModelRegistry(state_dir / "models" / "it_approval").get(version).approval


@pytest.mark.parametrize("standalone", [STANDALONE], indirect=True, ids=["approval"])
def test_approve_then_reject_through_the_rest_api(standalone):
    base, token = standalone.base, standalone.token

    # run 1: approved, deploy runs
    first = trigger(base, token)
    detail = waiting_for_a_human(standalone, first)
    assert detail["subject"] == "Deploy it_approval model version 1 as it-approval?"
    assert "| auc | 0.8000 |" in detail["body"] and "nothing is served yet" in detail["body"]
    assert detail["options"] == ["Approve", "Reject"] and not detail["multiple"]
    assert list(detail["params"]) == ["reason"]  # the form asks for a reason only, not the DAG's params
    assert approval_of(standalone.state_dir, 1) is None  # nobody has decided yet
    answer = f"{run_url(base, first)}/taskInstances/approve/-1/hitlDetails"
    status, body = call(answer, token, {"chosen_options": ["Approve"], "params_input": {"reason": "looks good"}},
                        method="PATCH")
    assert status == 200, body
    assert body["responded_by"]["name"] == "admin"
    state, states = finished(base, token, first)
    assert (state, states) == ("success", {"Evaluator": "success", "Pusher": "success", "approve": "success",
                                           "deploy": "success"})
    approval = approval_of(standalone.state_dir, 1)
    assert approval is not None and {k: approval[k] for k in ("approved", "by", "reason")} == {
        "approved": True, "by": "admin", "reason": "looks good"}
    assert abs(approval["at"] - time.time()) < 600
    # answering twice is refused
    status, body = call(answer, token, {"chosen_options": ["Reject"]}, method="PATCH")
    assert status == 409, body

    # run 2: rejected with a reason, deploy is skipped; the run itself succeeds
    second = trigger(base, token)
    detail = waiting_for_a_human(standalone, second)
    assert detail["subject"] == "Deploy it_approval model version 2 as it-approval?"
    status, body = call(f"{run_url(base, second)}/taskInstances/approve/-1/hitlDetails", token,
                        {"chosen_options": ["Reject"], "params_input": {"reason": "AUC is worse on nights"}},
                        method="PATCH")
    assert status == 200, body
    state, states = finished(base, token, second)
    assert (state, states["approve"], states["deploy"]) == ("success", "success", "skipped"), states
    approval = approval_of(standalone.state_dir, 2)
    assert approval is not None and {k: approval[k] for k in ("approved", "by", "reason")} == {
        "approved": False, "by": "admin", "reason": "AUC is worse on nights"}
    assert approval_of(standalone.state_dir, 1)["approved"] is True  # the first decision is kept


@pytest.mark.parametrize("standalone", [STANDALONE], indirect=True, ids=["approval"])
def test_approve_in_the_ui(standalone, page):
    """A reviewer opens the task's Required Actions tab, sees the metrics, gives a reason and clicks Approve."""
    from playwright.sync_api import expect

    base, token = standalone.base, standalone.token
    run_id = trigger(base, token)
    waiting_for_a_human(standalone, run_id)

    sign_in(page, base, standalone.password, f"/dags/{DAG_ID}")
    # the page HITLOperator.generate_link_to_ui links to (a notifier's link): the task's Required Actions tab
    page.goto(f"{base}/dags/{DAG_ID}/runs/{urllib.parse.quote(run_id, safe='')}/tasks/approve/required_actions")
    # the task page's tabs are links; this one counts the pending requests
    expect(page.get_by_role("link", name="Required Action (1)")).to_be_visible()
    expect(page.get_by_text("Deploy it_approval model version 1 as it-approval?").first).to_be_visible()
    expect(page.get_by_text("nothing is served yet").first).to_be_visible()
    reason = page.locator('[name="element_reason"]')
    reason.fill("approved in the browser")
    reason.blur()
    approve = page.get_by_test_id("hitl-option-Approve")
    expect(approve).to_have_text("Approve")
    expect(page.get_by_test_id("hitl-option-Reject")).to_have_text("Reject")
    with page.expect_response(lambda r: r.request.method == "PATCH" and r.url.endswith("/hitlDetails")) as answered:
        approve.click()
    assert answered.value.status == 200, answered.value.text()

    state, states = finished(base, token, run_id)
    assert (state, states["approve"], states["deploy"]) == ("success", "success", "success"), states
    approval = approval_of(standalone.state_dir, 1)
    assert approval is not None and {k: approval[k] for k in ("approved", "by", "reason")} == {
        "approved": True, "by": "admin", "reason": "approved in the browser"}
