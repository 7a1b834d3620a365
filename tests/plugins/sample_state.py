"""A provider state directory as the operators write it, generated (for the page tests and ``bench/bench_ui.py``).

Shapes follow the writers: ``ModelRegistry`` records, ``RunRecords`` sections, ``deployment.json``,
the model server's prediction log, drift reports as ``BaseDriftCheckOperator`` writes them, and a
reference schema in the ``ReferenceSchemaStore``. Feature names, anomaly texts and run ids carry
HTML (``EVIL``) so the pages' escaping is tested on every page.
"""

from __future__ import annotations

import json
import os
import random
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow_mlops.utils.run_records import RunRecords, safe_name

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'
PIPELINE = "taxi"
DEPLOYMENT = "taxi-prod"
FEATURES = ["fare", "trip_miles", "payment_type", EVIL]
SCHEMA = """
feature {
  name: "fare"
  type: FLOAT
  presence { min_fraction: 1.0 }
  float_domain { min: 0.0 max: 500.0 }
}
feature {
  name: "payment_type"
  type: BYTES
  domain: "payment_type"
  presence { min_fraction: 1.0 }
}
feature {
  name: "%s"
  type: INT
}
string_domain {
  name: "payment_type"
  value: "Cash"
  value: "Credit Card"
  value: "%s"
}
""" % (EVIL.replace('"', '\\"'), EVIL.replace('"', '\\"'))


def run_id(i: int) -> str:
    return f"manual__2026-12-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000000+00:00"


def write_state(state: Path, *, versions: int = 3, drift_reports: int = 4, requests: int = 200,
                pipeline: str = PIPELINE, deployment: str = DEPLOYMENT, seed: int = 0) -> dict:
    """Write a state directory; return what a test checks the pages against."""
    rng = random.Random(seed)
    root = state / "models" / pipeline
    (root / ".registry").mkdir(parents=True, exist_ok=True)
    runs = RunRecords(state, pipeline)
    expected: dict = {"versions": {}, "drift": {}}
    now = time.time()
    for v in range(1, versions + 1):
        rid = run_id(v)
        (root / str(v)).mkdir(exist_ok=True)
        (root / str(v) / "saved_model.pb").write_bytes(b"")
        auc = round(0.80 + 0.1 * rng.random(), 6)
        baseline = round(auc - 0.01, 6) if v > 1 else None
        record = {"version": v, "path": str(root / str(v)), "model_uri": f"/pipelines/{pipeline}/Trainer/model/{v}",
                  "pipeline_name": pipeline, "run_id": rid, "model_artifact_id": 10 + v, "blessing_artifact_id": 20 + v,
                  "metrics": {"auc": auc}, "pushed_at": now - (versions - v) * 60, "status": "ready"}
        (root / ".registry" / f"{v}.json").write_text(json.dumps(record))
        runs.add("mlops_train_deploy", rid, "ExampleValidator",
                 {"component": "ExampleValidator", "at": now, "accepted": True, "anomalies": [], "spans": [v]})
        runs.add("mlops_train_deploy", rid, "Trainer",
                 {"component": "HorovodTrainer", "at": now, "module_file": "/dags/taxi_module.py",
                  "module_sha256": f"{v:064x}", "num_workers": 2, "train_steps": 100})
        runs.add("mlops_train_deploy", rid, "Transform",
                 {"component": "Transform", "at": now, "training_spans": [v], "module_file": "/dags/taxi_module.py"})
        runs.add("mlops_train_deploy", rid, "Evaluator",
                 {"component": "Evaluator", "at": now, "blessed": True, "spans": [v],
                  "gate": {"model_type": "binary", "metric": "AUC", "key": "auc", "higher_is_better": True,
                           "threshold": 0.7, "max_regression": 0.01, "reasons": [], "eval_config": None},
                  "metrics": {"candidate": {"auc": auc, "binary_accuracy": 0.7},
                              **({"baseline": {"auc": baseline}} if baseline is not None else {})},
                  "baseline_model": None, "served_baseline": None})
        runs.add("mlops_train_deploy", rid, "Pusher", {"component": "Pusher", "at": now, "model_version": v})
        expected["versions"][v] = {"auc": auc, "run_id": rid}
    # a rejected ingest run
    bad = run_id(versions + 1)
    runs.add("mlops_ingest", bad, "ExampleValidator", {
        "component": "ExampleValidator", "at": now, "accepted": False, "spans": [versions + 1],
        "anomalies": [{"split": "train", "feature": EVIL, "kind": "ENUM_TYPE_UNEXPECTED_STRING_VALUES",
                       "severity": "ERROR", "description": f"Examples contain values missing from the schema: {EVIL}"}]})
    expected["rejected_run"] = bad
    # the deployment, served by the newest version, with a history
    dep_dir = state / "deployments" / deployment
    dep_dir.mkdir(parents=True, exist_ok=True)
    history = [{"version": v, "at": now - (versions - v) * 60, "action": "deploy",
                "by": {"dag_id": "mlops_train_deploy", "run_id": run_id(v), "task_id": "deploy"}}
               for v in range(1, versions + 1)]
    log_dir = state / "predictions" / deployment
    log_dir.mkdir(parents=True, exist_ok=True)
    (dep_dir / "deployment.json").write_text(json.dumps({
        "name": deployment, "host": "127.0.0.1", "port": 1, "metrics_port": 0, "pid": None, "version": versions,
        "model_path": str(root / str(versions)), "model_root": str(root), "status": "stopped",
        "prediction_log": str(log_dir), "history": history}))
    start = datetime.now(timezone.utc) - timedelta(minutes=30)
    errors = 0
    with open(log_dir / "part-0.jsonl", "w") as log:
        for i in range(requests):
            at = (start + timedelta(seconds=9 * i)).isoformat()
            if i % 20 == 0:
                errors += 1
                log.write(json.dumps({"ts": at, "deployment": deployment, "status": 400, "error": "bad request"}) + "\n")
            else:
                log.write(json.dumps({"ts": at, "deployment": deployment, "model_version": versions,
                                      "request_id": f"r{i}", "ms": 5 + rng.random() * 20,
                                      "instances": [{"fare": 1.0}], "outputs": [[0.5]]}) + "\n")
        log.write(json.dumps({"ts": start.isoformat(), "kind": "feedback", "request_id": "r1", "labels": [1]}) + "\n")
    expected["requests"], expected["errors"] = requests, errors
    # drift reports, oldest first (modification times in order)
    reports = state / "drift" / deployment / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    for i in range(drift_reports):
        rid = f"scheduled__2026-12-02T00:00:{i:02d}.{i:06d}+00:00" if i < 60 else f"scheduled__r{i}"
        drifted = i % 2 == 1
        features = {name: {"kind": "numeric", "p_val": round(0.0001 if drifted and name == "fare" else
                                                             0.2 + 0.5 * rng.random(), 6),
                           "distance": round(rng.random(), 4), "drift": drifted and name == "fare"}
                    for name in FEATURES}
        report = {"deployment": deployment, "detector": "TabularDrift", "p_val": 0.05, "correction": "bonferroni",
                  "threshold": 0.0125, "is_drift": drifted, "drifted_features": ["fare"] if drifted else [],
                  "features": features, "model_version": versions, "status": "ok", "window_size": 600,
                  "window_requests": 30, "window_first": "2026-12-02T00:00:00+00:00",
                  "window_last": f"2026-12-02T00:10:{i % 60:02d}+00:00", "reference_size": 5000,
                  "dag_id": "mlops_monitor", "run_id": rid, "task_id": "check_drift", "skipped_features": {},
                  "data_issues": {}}
        name = safe_name(rid)
        path = reports / f"{name}.json"
        path.write_text(json.dumps(report))
        os.utime(path, (now - drift_reports + i, now - drift_reports + i))
        expected["drift"][name] = report
    expected["newest_report"] = safe_name(rid) if drift_reports else None
    # the reference schema
    schema_dir = state / "schemas" / pipeline / "v1"
    schema_dir.mkdir(parents=True, exist_ok=True)
    (schema_dir / "schema.pbtxt").write_text(SCHEMA)
    (schema_dir / "reference.json").write_text(json.dumps({"version": 1, "source": "/state/inferred/schema.pbtxt",
                                                           "created_at": "2026-12-01T00:00:00Z", "run_id": run_id(1)}))
    (state / "schemas" / pipeline / "CURRENT").write_text("1")
    return expected
