"""The main job, run locally: `make demo`. The whole loop, with a real Airflow (`airflow dags test`
of the template DAGs), the real TFX runtime, 2 Horovod workers, a seldon-core model server and
Alibi Detect:

1. **train and deploy v1**: ``mlops_train_deploy`` on span 1 of the Chicago taxi sample:
   ingested, validated (its schema becomes the pipeline's reference schema), transformed,
   trained by 2 Horovod workers, evaluated with TFMA, pushed as model version 1 and served
   as deployment ``chicago-taxi`` on 127.0.0.1;
2. **a broken span** (a dropped column, text in a number column, an unknown payment type) is
   rejected by ExampleValidator, every anomaly listed; nothing after it runs;
3. **normal traffic**: 1,000 held-out trips are sent to the deployment; ``mlops_monitor``
   finds it healthy and finds no drift (so no retraining is requested);
4. **drifted traffic, then its ground truth**: a new span lands (synthetic: a new fare schedule,
   longer trips and swapped payment codes, see ``airflow_mlops/utils/taxi_spans.py``) and its
   trips are sent to the deployment; later their truth (who tipped) arrives as an outcome file
   keyed by the request ids the server returned; ``mlops_monitor`` finds drift and finds v1's
   quality decayed (AUC far below the value v1 was blessed with), and updates the Asset
   ``mlops://chicago_taxi/retrain`` with both reports;
5. **retraining**: ``mlops_train_deploy`` runs with the event's ``data_root`` (under a
   scheduler the Asset event starts that run by itself: ``tests/integration/test_closed_loop.py``),
   trains on the newest span, is evaluated against the blessed v1 on the new data, and v2 is
   deployed without a restart;
6. **after the change**: the same traffic checked against v2's training data: no drift; its
   truth, sent back through the server's feedback endpoint, finds v2's quality ok.

Progress is printed as it goes (stage, DAG run, task, where the full logs are), then a
summary: model versions and their metrics and lineage, the drift checks with p-values and
report files, ML Metadata executions. The deployment keeps serving after the demo.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOME = Path(os.environ.get("MLOPS_DEMO_HOME", REPO / ".airflow"))
LOGS = HOME / "demo-logs"


def env() -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")},
        "AIRFLOW_HOME": str(HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


TRAIN, MONITOR = "mlops_train_deploy", "mlops_monitor"
DEPLOYMENT, PIPELINE = "chicago-taxi", "chicago_taxi"
ECHO = ("reference schema", "split train:", "split eval:", "  - split", "metrics:", "BLESSED", "NOT blessed",
        "serves model version", "nothing to do", "model version", "not pushing", "baseline:",
        "eval binary accuracy", "DRIFT in", "no drift in", "is healthy", "is unhealthy", "reference:",
        "window:", "no drift (", "not enough traffic", "joined ", ": DECAYED", ": OK (", ": OK", "INSUFFICIENT_LABELS",
        "this run trains because of")


def run_dag(label: str, dag_id: str, conf: dict) -> tuple[int, str, str]:
    """Run a DAG under `airflow dags test`, echoing task progress; return (code, run id, log path)."""
    LOGS.mkdir(parents=True, exist_ok=True)
    log_path = LOGS / f"{label}.log"
    say(f"{label}: airflow dags test {dag_id} -c '{json.dumps(conf)}'  (full log: {log_path})")
    run_id = ""
    echoed: set[str] = set()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(BIN / "airflow"), "dags", "test", dag_id, "-c", json.dumps(conf)],
                                env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if m := re.search(r"\[DAG TEST\] starting task_id=(\S+)", line):
                say(f"  task {m.group(1)} started")
            elif m := re.search(r"\[DAG TEST\] end task task_id=(\S+)", line):
                say(f"  task {m.group(1)} finished")
            elif m := re.search(r"run_id=(manual__[^,\s]+)", line):
                run_id = run_id or m.group(1)
            elif any(key in line for key in ECHO):
                text = re.sub(r"^\S+ \[\w+\s*\] ", "", line.strip()).split(" [airflow.")[0]
                text = re.sub(r"^\[tfx\] (\[\d\]<stdout>:)?", "", text)
                if text not in echoed:
                    echoed.add(text)
                    say("    " + text)
        code = proc.wait()
    return code, run_id, str(log_path)


def taxi_sample(dest: Path) -> Path:
    """A copy of the whole Chicago taxi sample that ships inside the TFX wheel (15,002 trips)."""
    from airflow_mlops.hooks.runtime import RuntimeHook

    dest.mkdir(parents=True, exist_ok=True)
    sample = dest / "sample.csv"
    RuntimeHook(mlops_conn_id=None).run_step("tfx.sample_data", {"dest": str(sample), "rows": 100_000},
                                             binds=[str(dest)])
    return sample


def broken_span(dest: Path, sample: Path) -> Path:
    """3,000 taxi rows with a dropped column, a bad number and an unknown category, as span 2 of ``dest``."""
    with open(sample, newline="") as handle:
        rows = list(csv.reader(handle))[:3001]
    header, body = rows[0], rows[1:]
    drop, pay, miles = header.index("trip_start_hour"), header.index("payment_type"), header.index("trip_miles")
    out = [[c for i, c in enumerate(header) if i != drop]]
    for n, row in enumerate(body):
        row[pay] = "Bitcoin" if n % 8 == 0 else row[pay]
        row[miles] = "n/a" if n == 7 else row[miles]
        out.append([c for i, c in enumerate(row) if i != drop])
    path = dest / "span-2" / "data.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(out)
    return dest


def send_traffic(rows: list[dict[str, str]], count: int, seed: int) -> list[tuple[str, list[dict[str, str]]]]:
    """POST ``count`` of ``rows`` (typed as the served model expects) to the deployment, 20 per request;
    ``(request id the server answered with, the rows)`` of each request."""
    import random
    import urllib.request

    from airflow_mlops.hooks.seldon import SeldonHook
    from airflow_mlops.shared import typed_record

    dep = SeldonHook(mlops_conn_id=None).get_deployment(DEPLOYMENT)
    spec = json.loads((Path(dep.model_path) / "assets.extra" / "feature_spec.json").read_text())
    chosen = random.Random(seed).sample(rows, min(count, len(rows)))
    records = [typed_record(row, spec) for row in chosen]
    sent = []
    for start in range(0, len(records), 20):
        body = json.dumps({"jsonData": {"instances": records[start:start + 20]}}).encode()
        request = urllib.request.Request(f"{dep.url}/api/v1.0/predictions", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            sent.append((json.loads(response.read())["meta"]["puid"], chosen[start:start + 20]))
    say(f"  sent {len(records)} trips in {len(sent)} requests to {dep.url} (model version {dep.version})")
    return sent


def big_tipper(row: dict[str, str]) -> int | None:
    """The truth the taxi module learns: the tip was more than 20 % of the fare (None when unknown)."""
    try:
        return int(float(row["tips"]) > 0.2 * float(row["fare"]))
    except (KeyError, ValueError):
        return None


def truth_as_outcome_file(sent: list[tuple[str, list[dict[str, str]]]], name: str) -> int:
    """The truth of the sent trips, as a labelling system delivers it: a CSV under the feedback root."""
    from airflow_mlops.hooks.seldon import SeldonHook

    path = Path(SeldonHook(mlops_conn_id=None).feedback_root) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [(rid, row, label) for rid, rows in sent for row, trip in enumerate(rows)
             if (label := big_tipper(trip)) is not None]
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([("request_id", "row", "label"), *lines])
    say(f"  the truth of {len(lines)} trips arrived: {path}")
    return len(lines)


def truth_through_feedback(sent: list[tuple[str, list[dict[str, str]]]]) -> int:
    """The truth of the sent trips, through the model server's feedback endpoint (one call per request)."""
    import urllib.request

    from airflow_mlops.hooks.seldon import SeldonHook

    dep = SeldonHook(mlops_conn_id=None).get_deployment(DEPLOYMENT)
    count = 0
    for rid, rows in sent:
        labels = [big_tipper(trip) for trip in rows]
        if None in labels:
            continue
        body = json.dumps({"request": {"meta": {"puid": rid}}, "truth": {"data": {"ndarray": labels}}}).encode()
        request = urllib.request.Request(f"{dep.url}/api/v1.0/feedback", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
        count += len(labels)
    say(f"  the truth of {count} trips sent to {dep.url}/api/v1.0/feedback")
    return count


def quality_report(run_id: str) -> dict:
    from airflow_mlops.hooks.runtime import RuntimeHook

    name = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)
    path = RuntimeHook(mlops_conn_id=None).state_dir / "quality" / DEPLOYMENT / f"quality-{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def drift_report(run_id: str) -> dict:
    from airflow_mlops.hooks.runtime import RuntimeHook

    name = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)
    path = RuntimeHook(mlops_conn_id=None).state_dir / "drift" / DEPLOYMENT / "reports" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def retrain_event(run_id: str) -> dict | None:
    """The retrain Asset event the monitoring run emitted, from Airflow's database."""
    from sqlalchemy import select

    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        event = session.scalars(select(AssetEvent).where(AssetEvent.source_dag_id == MONITOR,
                                                         AssetEvent.source_run_id == run_id)).first()
        return {"id": event.id, "uri": event.asset.uri, "extra": dict(event.extra)} if event else None


def must(ok: bool, message: str) -> None:
    if not ok:
        say(f"FAILED: {message}")
        raise SystemExit(1)


def summary(runs: dict[str, str], checks: list[tuple[str, dict]], qualities: list[tuple[str, dict]],
            event: dict | None) -> None:
    from airflow_mlops.hooks.runtime import RuntimeHook
    from airflow_mlops.hooks.seldon import SeldonHook
    from airflow_mlops.utils.model_registry import ModelRegistry
    from airflow_mlops.utils.schema_store import ReferenceSchemaStore

    hook = RuntimeHook(mlops_conn_id=None)
    root = hook.model_root(PIPELINE)
    print(f"\n{'=' * 100}\nSUMMARY\n\nmodel versions ({root}):")
    print(f"  {'VERSION':<8} {'AUC':>7} {'ACCURACY':>9} {'MODEL ART.':>10} {'BLESSING':>8}  TRAINING RUN")
    for v in ModelRegistry(root).versions():
        print(f"  {v.version:<8} {v.metrics.get('auc', float('nan')):>7.4f} "
              f"{v.metrics.get('binary_accuracy', float('nan')):>9.4f} {'#' + str(v.model_artifact_id):>10} "
              f"{'#' + str(v.blessing_artifact_id):>8}  {v.run_id}")
    print("\ndrift checks (TabularDrift, p-value per feature; * = drifted):")
    for label, r in checks:
        if r.get("status") != "ok":
            print(f"  {label:<26} {r.get('status')}: {r.get('message')}")
            continue
        p = ", ".join(f"{n}{'*' if f.get('drift') else ''}={f['p_val']:.2g}" for n, f in sorted(
            r["features"].items(), key=lambda kv: kv[1].get("p_val", 1))[:5])
        print(f"  {label:<26} model v{r['model_version']}, {r['window_size']} served vs {r['reference_size']} training "
              f"records: {'DRIFT' if r['is_drift'] else 'no drift'}; lowest p: {p}")
        print(f"  {'':<26} report {r['report']}" + (f"\n  {'':<26} plot   {r['report_png']}" if r.get("report_png") else ""))
    print("\nquality checks (served predictions joined with the truth that arrived):")
    for label, q in qualities:
        for name, v in sorted((q.get("versions") or {}).items()):
            value = "n/a" if v["value"] is None else f"{v['value']:.4f}"
            blessed = "n/a" if v["blessed_value"] is None else f"{v['blessed_value']:.4f}"
            drop = "" if v.get("drop") is None else f", drop {v['drop']:+.4f}"
            print(f"  {label:<26} model v{name}: {v['metric']} {value} on {v['samples']} labelled rows (blessed "
                  f"{blessed}{drop}): {v['status'].upper()}")
        if q.get("report"):
            print(f"  {'':<26} report {q['report']}\n  {'':<26} plot   {q['plot']}")
    if event:
        extra = event["extra"]
        print(f"\nAsset event #{event['id']} {event['uri']}: retraining requested because of {extra.get('reason')} "
              f"(drifted {extra.get('drifted_features')}; decayed versions {sorted(extra.get('decayed_versions') or [])}), "
              f"data_root {extra.get('data_root')}")
    ref = ReferenceSchemaStore(hook.schema_store_dir).current(PIPELINE)
    if ref:
        print(f"reference schema: v{ref.version} at {ref.schema_file} (from run {ref.meta.get('run_id')})")
    lineage = hook.run_step("mlmd.lineage", {"metadata": hook.metadata, "pipeline_name": PIPELINE,
                                             "run_id": runs["retrain"]})
    print(f"\nML Metadata ({hook.metadata}), retraining run {runs['retrain']}:")
    for e in lineage["executions"]:
        ins = ", ".join(f"{k}#{a['id']}" for k, arts in e["inputs"].items() for a in arts) or "-"
        outs = ", ".join(f"{k}#{a['id']}" + (f" (span {a['span']})" if "span" in a else "")
                         for k, arts in e["outputs"].items() for a in arts)
        print(f"  {e['node']:<30} exec #{e['id']:<4} {e['state']:<9} {ins} -> {outs}")
    seldon = SeldonHook(mlops_conn_id=None)
    dep = seldon.get_deployment(DEPLOYMENT)
    print(f"\ndeployment {DEPLOYMENT}: model version {dep.version} at {dep.url}/api/v1.0/predictions "
          f"(pid {dep.pid}; server log {seldon.registry.log_file(DEPLOYMENT)}; prediction log {dep.prediction_log})")
    print("  it keeps serving; stop it with: airflow dags test mlops_rollback "
          f"-c '{{\"deployment_name\": \"{DEPLOYMENT}\", \"undeploy\": true}}'")
    print(f"DAG runs: {json.dumps(runs)}\nlogs: {LOGS}")


def fresh_state() -> None:
    """Stop the deployment of an earlier demo and remove its state, so versions start at 1."""
    import shutil

    from airflow_mlops.hooks.runtime import RuntimeHook
    from airflow_mlops.hooks.seldon import SeldonHook

    seldon = SeldonHook(mlops_conn_id=None)
    if seldon.registry.get(DEPLOYMENT) is not None:
        seldon.deployments.undeploy(DEPLOYMENT)
    shutil.rmtree(RuntimeHook(mlops_conn_id=None).state_dir, ignore_errors=True)
    shutil.rmtree(HOME / "demo-data", ignore_errors=True)


def main() -> int:
    from airflow_mlops.utils.taxi_spans import shifted, taxi_rows, write_span

    started = time.monotonic()
    HOME.mkdir(parents=True, exist_ok=True)
    say(f"AIRFLOW_HOME={HOME}; migrating the Airflow database (SQLite)")
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env(), check=True, capture_output=True)
    os.environ.update(env())
    import logging

    logging.getLogger("airflow.task.hooks").setLevel(logging.WARNING)  # the demo's own runtime calls: quiet
    fresh_state()
    data = HOME / "demo-data"
    header, rows = taxi_rows(taxi_sample(data))  # shuffled: the sample's file order is not random
    must(len(rows) > 12000, f"the taxi sample has {len(rows)} usable trips; the demo needs more than 12,000")
    spans = data / "taxi"
    write_span(spans, 1, header, rows[:9000])
    normal_traffic, new_span = rows[9000:10500], shifted(rows[10500:])
    runs: dict[str, str] = {}
    checks: list[tuple[str, dict]] = []
    qualities: list[tuple[str, dict]] = []

    say(f"[1/6] train and deploy v1: span 1 of the taxi sample (9,000 trips) in {spans}")
    code, runs["train"], log = run_dag("1-train-v1", TRAIN, {"data_root": str(spans)})
    must(code == 0, f"the first training run failed; see {log}")

    say("[2/6] a broken span must be rejected by validation")
    code, runs["broken"], log = run_dag("2-broken-span", TRAIN, {"data_root": str(broken_span(data / "broken",
                                                                                              data / "sample.csv"))})
    must(code != 0 and "DataValidationError" in Path(log).read_text(), f"the broken span was not rejected; see {log}")
    say("  rejected by ExampleValidator, as it should be; v1 still serves")

    say("[3/6] normal traffic, then monitoring")
    send_traffic(normal_traffic, 1000, seed=1)
    code, runs["monitor_normal"], log = run_dag("3-monitor-normal", MONITOR, {"data_root": str(spans)})
    must(code == 0, f"monitoring failed; see {log}")
    checks.append(("normal traffic", drift_report(runs["monitor_normal"])))
    qualities.append(("normal traffic", quality_report(runs["monitor_normal"])))
    must(checks[-1][1].get("is_drift") is False, f"drift reported on normal traffic; see {log}")
    must(qualities[-1][1].get("status") == "insufficient_labels", "quality judged without any truth")
    must(retrain_event(runs["monitor_normal"]) is None, "a retraining was requested without drift")

    say(f"[4/6] a new span lands ({len(new_span)} trips: fares +40 %, trips +50 %, payment codes swapped) "
        "and its trips are served")
    write_span(spans, 2, header, new_span)
    sent = send_traffic(new_span, 1000, seed=2)
    truth_as_outcome_file(sent, "span-2-truth.csv")
    code, runs["monitor_drift"], log = run_dag("4-monitor-drift", MONITOR, {"data_root": str(spans)})
    must(code == 0, f"monitoring failed; see {log}")
    checks.append(("new span's traffic", drift_report(runs["monitor_drift"])))
    qualities.append(("new span's traffic", quality_report(runs["monitor_drift"])))
    event = retrain_event(runs["monitor_drift"])
    must(bool(checks[-1][1].get("is_drift")) and event is not None, f"drift not found or no retrain event; see {log}")
    v1 = (qualities[-1][1].get("versions") or {}).get("1") or {}
    must(v1.get("status") == "decayed", f"v1's decay on the new span was not found ({v1.get('status')}); see {log}")
    say(f"  v1 decayed: {v1['metric']} {v1['value']:.4f} vs {v1['blessed_value']:.4f} when blessed "
        f"(drop {v1['drop']:.4f}, {v1['samples']} labelled trips)")
    say(f"  Asset event {event['uri']} (#{event['id']}): retrain because of {event['extra']['reason']}, "
        f"on {event['extra']['data_root']}")

    say("[5/6] retraining on the newest span, evaluated against v1, deployed when better")
    code, runs["retrain"], log = run_dag("5-retrain", TRAIN, {"data_root": event["extra"]["data_root"]})
    must(code == 0, f"the retraining run failed; see {log}")

    say("[6/6] the same kind of traffic, checked against v2's training data")
    truth_through_feedback(send_traffic(new_span, 1000, seed=3))
    code, runs["monitor_after"], log = run_dag("6-monitor-v2", MONITOR, {"data_root": str(spans)})
    must(code == 0, f"monitoring failed; see {log}")
    checks.append(("after retraining", drift_report(runs["monitor_after"])))
    qualities.append(("after retraining", quality_report(runs["monitor_after"])))

    summary(runs, checks, qualities, event)
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
