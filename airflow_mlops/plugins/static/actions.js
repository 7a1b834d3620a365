// The action buttons of the MLOps pages: each triggers the rollback DAG through Airflow's own REST API,
// as the signed-in user (the UI's session cookie); Airflow checks the permission. Nothing from the page is
// evaluated: the run's settings come from the button's data-conf (JSON) and every message is set as text.
"use strict";
function mlopsStatus(text, link) {
  const status = document.querySelector(".status");
  if (!status) return;
  status.textContent = text;
  if (link) {
    const a = document.createElement("a");
    a.href = link; a.target = "_top"; a.textContent = " open the run";
    status.appendChild(a);
  }
}
async function mlopsTrigger(button) {
  const airflow = document.body.dataset.airflow || "";
  const dag = document.body.dataset.actionDag;
  const conf = JSON.parse(button.dataset.conf);
  if (!window.confirm(`${button.dataset.label}? This triggers the DAG ${dag}.`)) return;
  const json = { "Content-Type": "application/json" };
  button.disabled = true;
  try {
    const api = `${airflow}/api/v2/dags/${encodeURIComponent(dag)}`;
    const details = await fetch(api, { credentials: "same-origin" });
    if (!details.ok) throw new Error(`reading ${dag}: ${details.status} ${await details.text()}`);
    if ((await details.json()).is_paused) {  // a paused DAG would queue the run and never start it
      const unpaused = await fetch(api, { method: "PATCH", credentials: "same-origin", headers: json,
                                          body: JSON.stringify({ is_paused: false }) });
      if (!unpaused.ok) throw new Error(`${dag} is paused and cannot be unpaused: ${unpaused.status}`);
    }
    const posted = await fetch(`${api}/dagRuns`, { method: "POST", credentials: "same-origin", headers: json,
                                                  body: JSON.stringify({ logical_date: null, conf }) });
    const body = await posted.json().catch(() => ({}));
    if (!posted.ok) throw new Error(`Airflow refused the run: ${posted.status} ${JSON.stringify(body.detail || body)}`);
    mlopsStatus(`${dag} run ${body.dag_run_id} triggered (${button.dataset.label}).`,
                `${airflow}/dags/${encodeURIComponent(dag)}/runs/${encodeURIComponent(body.dag_run_id)}`);
    document.body.dataset.lastRun = body.dag_run_id;
  } catch (err) {
    mlopsStatus(String(err.message || err));
    button.disabled = false;
  }
}
document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button.action")) {
    button.addEventListener("click", () => mlopsTrigger(button));
  }
});
