"""The main job, run locally: `make demo`.

For now (serving and monitoring arrive with later releases) it runs the template DAG
``mlops_train_deploy`` twice under `airflow dags test`, with a real Airflow, the real TFX
runtime and real Horovod workers:

1. the Chicago taxi sample shipped with TFX, with no arguments: ingested, validated (on the
   first run its schema is kept as the pipeline's reference schema), transformed, trained
   by 2 Horovod workers, evaluated with TFMA against the latest blessed model, pushed as the
   next model version when blessed, and served by the seldon-core model server as
   deployment ``chicago-taxi`` on 127.0.0.1 (which keeps running after the demo);
2. a broken span (a column dropped, text in a number column, an unknown payment type):
   rejected by ExampleValidator, every anomaly listed; nothing after it runs.

It prints progress as it goes, then a summary: ML Metadata executions and artifacts with
their lineage, the reference schema, the model versions, where the logs are.
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


DAG_ID = "mlops_train_deploy"
ECHO = ("reference schema", "split train:", "split eval:", "  - split", "metrics:", "BLESSED", "NOT blessed",
        "serves model version", "nothing to do",
        "model version", "not pushing", "baseline:", "eval binary accuracy")


def run_dag(label: str, conf: dict) -> tuple[int, str, str]:
    """Run the DAG under `airflow dags test`, echoing task progress; return (code, run id, log path)."""
    LOGS.mkdir(parents=True, exist_ok=True)
    log_path = LOGS / f"{label}.log"
    say(f"{label}: airflow dags test {DAG_ID} -c '{json.dumps(conf)}'  (full log: {log_path})")
    run_id = ""
    echoed: set[str] = set()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(BIN / "airflow"), "dags", "test", DAG_ID, "-c", json.dumps(conf)],
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


def broken_span(dest: Path) -> Path:
    """A copy of 3,000 taxi rows with a dropped column, a bad number and an unknown category."""
    from airflow_mlops.hooks.runtime import RuntimeHook

    sample = dest / "sample.csv"
    dest.mkdir(parents=True, exist_ok=True)
    RuntimeHook(mlops_conn_id=None).run_step("tfx.sample_data", {"dest": str(sample), "rows": 3000}, binds=[str(dest)])
    with open(sample, newline="") as handle:
        rows = list(csv.reader(handle))
    sample.unlink()
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


def summary(run_id: str) -> None:
    from airflow_mlops.hooks.runtime import RuntimeHook
    from airflow_mlops.utils.model_registry import ModelRegistry
    from airflow_mlops.utils.schema_store import ReferenceSchemaStore

    hook = RuntimeHook(mlops_conn_id=None)
    lineage = hook.run_step("mlmd.lineage", {"metadata": hook.metadata, "pipeline_name": "chicago_taxi", "run_id": run_id})
    print(f"\nML Metadata ({hook.metadata}), pipeline run {run_id}:")
    print(f"  {'NODE':<30} {'EXEC':>4} {'STATE':<9} INPUTS -> OUTPUTS")
    for e in lineage["executions"]:
        ins = ", ".join(f"{k}#{a['id']}" for k, arts in e["inputs"].items() for a in arts) or "-"
        outs = ", ".join(f"{k}#{a['id']}" + (f" (span {a['span']})" if "span" in a else "") for k, arts in e["outputs"].items() for a in arts)
        print(f"  {e['node']:<30} {e['id']:>4} {e['state']:<9} {ins} -> {outs}")
    for e in lineage["executions"]:
        for arts in e["outputs"].values():
            for a in arts:
                print(f"    {a['type']:<17} #{a['id']:<4} {a['uri']}")
    ref = ReferenceSchemaStore(hook.schema_store_dir).current("chicago_taxi")
    if ref:
        print(f"\nreference schema: v{ref.version} at {ref.schema_file} (from run {ref.meta.get('run_id')})")
    versions = ModelRegistry(hook.model_root("chicago_taxi")).versions()
    print(f"\nmodel versions in {hook.model_root('chicago_taxi')}:")
    for v in versions:
        metrics = ", ".join(f"{k}={val:.4f}" for k, val in sorted(v.metrics.items()) if k != "example_count")
        print(f"  {v.version:>3}  {metrics}  run {v.run_id}")
    if not versions:
        print("  none (no model was blessed yet)")
    deployment(hook)


def deployment(hook) -> None:
    """Where the model is served, and two predictions from it."""
    import urllib.request

    from airflow_mlops.hooks.seldon import SeldonHook

    seldon = SeldonHook(mlops_conn_id=None)
    dep = seldon.registry.get("chicago-taxi")
    if dep is None or not seldon.status("chicago-taxi")["running"]:
        print("\nno running deployment")
        return
    spec = json.loads((Path(dep.model_path) / "assets.extra" / "feature_spec.json").read_text())
    sample = HOME / "demo-data" / "sample.csv"
    hook.run_step("tfx.sample_data", {"dest": str(sample), "rows": 2}, binds=[str(sample.parent)])
    with open(sample, newline="") as handle:
        rows = list(csv.DictReader(handle))
    cast = {"float": float, "int": lambda v: int(float(v)), "string": str}
    instances = [{k: cast[spec[k]["dtype"]](v) for k, v in row.items() if k in spec and v != ""} for row in rows]
    body = json.dumps({"jsonData": {"instances": instances}}).encode()
    request = urllib.request.Request(f"{dep.url}/api/v1.0/predictions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    print(f"\ndeployment chicago-taxi: model version {dep.version} served at {dep.url} (pid {dep.pid}, "
          f"log {seldon.registry.log_file('chicago-taxi')})")
    print(f"  POST {dep.url}/api/v1.0/predictions with 2 taxi trips -> {answer['data']['names']} "
          f"{[round(r[0], 4) for r in answer['data']['ndarray']]} (model version {answer['meta']['tags']['model_version']})")
    print(f"  prediction log: {dep.prediction_log}")
    print("  it keeps serving after the demo; stop it with: airflow dags test mlops_rollback "
          "-c '{\"deployment_name\": \"chicago-taxi\", \"undeploy\": true}'")


def main() -> int:
    started = time.monotonic()
    HOME.mkdir(parents=True, exist_ok=True)
    say(f"AIRFLOW_HOME={HOME}; migrating the Airflow database (SQLite)")
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env(), check=True, capture_output=True)
    os.environ.update(env())
    import logging

    logging.getLogger("airflow.task.hooks").setLevel(logging.WARNING)  # the demo's own runtime calls: quiet

    code, good_run, good_log = run_dag("1-taxi-sample", {})
    if code != 0:
        say(f"FAILED: the taxi sample run did not succeed; see {good_log}")
        return 1
    say("taxi sample ingested, validated, trained, evaluated (and pushed when blessed)")

    data = broken_span(HOME / "demo-data" / "broken")
    code, bad_run, bad_log = run_dag("2-broken-span", {"data_root": str(data)})
    if code == 0:
        say(f"FAILED: the broken span was accepted; see {bad_log}")
        return 1
    text = Path(bad_log).read_text()
    if "DataValidationError" not in text:
        say(f"FAILED: the broken span failed, but not at validation; see {bad_log}")
        return 1
    say("broken span rejected by ExampleValidator, as it should be")

    summary(good_run)
    print(f"\nrejected run {bad_run}: anomalies in {bad_log}")
    print(f"done in {time.monotonic() - started:.0f} s. Logs: {LOGS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
