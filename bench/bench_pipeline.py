"""Benchmark: the full training pipeline as Airflow tasks vs TFX's own LocalDagRunner.

    .venv/bin/python bench/bench_pipeline.py [--dataset taxi|penguins] [--repeats N] [--write docs/benchmarks.md]

Same data (the 15,002-row taxi sample, or with ``--dataset penguins`` the 333 complete Palmer
penguins with TFX's own multi-class module), same components and arguments as the template DAG
``mlops_train_deploy`` with its defaults: CsvExampleGen → StatisticsGen → SchemaGen →
ExampleValidator → Transform → Trainer (Horovod, 2 Gloo workers, 1,000 steps) → Evaluator
(with the latest-blessed-model resolver) → Pusher.

(a) ``airflow dags test mlops_train_deploy``, twice on the same state: the first run starts
    the warm runtime and infers the schema; the second finds the runtime up, validates
    against the kept reference schema and evaluates against the blessed baseline;
(b) one runtime process running the same nodes with ``LocalDagRunner``, also twice on
    the same state (the second run also has a baseline to compare against).
Wall times include process start-up and imports; (a) also includes Airflow's own start-up.
The DAG also deploys a blessed model (tasks ``deploy`` and ``wait_for_serving``: a model server
started and probed), which LocalDagRunner does not do: the ratio on the same nodes leaves those
tasks' time out of (a); the ratio of the whole DAG keeps it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import airflow_run, append_table, migrate  # noqa: E402

TRAIN_STEPS, WORKERS, EVAL_STEPS = 1000, 2, 50  # the template DAG's defaults
#: tasks of the template DAG that are not TFX nodes (LocalDagRunner has nothing like them)
NOT_NODES = ("approve", "deploy", "wait_for_serving", "why_this_run")
DATASETS = {"taxi": "taxi sample, the shipped module",
            "penguins": "Palmer penguins, TFX's penguin_utils_keras.py unchanged, multi-class; its run_fn does not "
                        "use Horovod, so both sides train it on one worker"}


def dataset(name: str, work: Path) -> dict:
    """Input, module file, Evaluator arguments and trigger-form params of a benchmarked pipeline."""
    from airflow_mlops.operators.tfx import DEFAULT_TAXI_MODULE, SAMPLE_TAXI

    if name == "taxi":
        return {"input_base": SAMPLE_TAXI, "module_file": DEFAULT_TAXI_MODULE, "conf": None,
                "evaluator": {"model_type": "binary", "metric": "AUC", "threshold": 0.6, "label_key": "big_tipper",
                              "prediction_key": "probabilities"}}
    from airflow_mlops.hooks.runtime import RuntimeHook
    from airflow_mlops.utils.public_datasets import write_penguins

    data = write_penguins(work / "penguins" / "span-1" / "data.csv").parent.parent
    site = RuntimeHook(mlops_conn_id=None).get_runtime().site_root
    module = str(sorted(site.glob("lib/python3*/site-packages/tfx/examples/penguin/penguin_utils_keras.py"))[0])
    evaluator = {"model_type": "multiclass", "metric": "SparseCategoricalAccuracy", "threshold": 0.6,
                 "label_key": "species_xf", "prediction_key": ""}
    return {"input_base": str(data), "module_file": module, "evaluator": evaluator,
            "conf": {"pipeline_name": "penguins", "data_root": str(data), "module_file": module,
                     "model_type": "multiclass", "label_key": "species_xf", "eval_threshold": 0.6,
                     "deployment_name": "penguins-bench"}}


def pipeline_spec(state: Path, name: str, data: dict) -> dict:
    from airflow_mlops.hooks.runtime import RuntimeHook

    hook = RuntimeHook(mlops_conn_id=None, state_dir=str(state))
    root = hook.pipeline_root(name)

    def ref(node: str, output: str) -> dict:
        return {"node": node, "output": output}

    nodes = [
        ("CsvExampleGen", "CsvExampleGen", {}, {"input_base": data["input_base"], "input_pattern": "auto"}),
        ("StatisticsGen", "StatisticsGen", {"examples": ref("CsvExampleGen", "examples")}, {}),
        ("SchemaGen", "SchemaGen", {"statistics": ref("StatisticsGen", "statistics")}, {}),
        ("ExampleValidator", "ExampleValidator",
         {"statistics": ref("StatisticsGen", "statistics"), "schema": ref("SchemaGen", "schema")}, {}),
        ("Transform", "Transform", {"examples": ref("CsvExampleGen", "examples"), "schema": ref("SchemaGen", "schema")},
         {"module_file": data["module_file"]}),
        ("Trainer", "HorovodTrainer",
         {"examples": ref("Transform", "transformed_examples"), "transform_graph": ref("Transform", "transform_graph"),
          "schema": ref("SchemaGen", "schema")},
         {"module_file": data["module_file"], "num_workers": WORKERS, "train_steps": TRAIN_STEPS,
          "eval_steps": EVAL_STEPS, "checkpoint_dir": None}),
        ("Evaluator.latest_blessed_model", "LatestBlessedModelResolver", {}, {}),
        ("Evaluator", "Evaluator",
         {"examples": ref("CsvExampleGen", "examples"), "model": ref("Trainer", "model"),
          "baseline_model": ref("Evaluator.latest_blessed_model", "model")},
         {**data["evaluator"], "max_regression": 0.0}),
        ("Pusher", "Pusher", {"model": ref("Trainer", "model"), "model_blessing": ref("Evaluator", "blessing")},
         {"base_directory": hook.model_root(name), "pipeline_name": name, "run_id": "", "evaluation": {}}),
    ]
    return {"pipeline_name": name, "pipeline_root": root, "metadata": hook.metadata,
            "nodes": [{"id": i, "component": c, "inputs": ins, "args": args} for i, c, ins, args in nodes]}


def local_dag_runner_run(state: Path, data: dict) -> tuple[float, float]:
    from airflow_mlops.hooks.runtime import RuntimeHook

    hook = RuntimeHook(mlops_conn_id=None, state_dir=str(state))
    spec = pipeline_spec(state, "bench_local", data)
    os.makedirs(spec["pipeline_root"], exist_ok=True)
    os.makedirs(spec["nodes"][-1]["args"]["base_directory"], exist_ok=True)
    started = time.monotonic()
    binds = [str(state), os.path.dirname(data["module_file"]), data["input_base"]]  # as the operators bind them
    out = hook.run_step("tfx.run_pipeline", {"pipeline": spec}, binds=binds)
    return time.monotonic() - started, out["seconds"]


def main() -> int:
    import logging

    logging.getLogger("airflow.task.hooks").setLevel(logging.WARNING)  # the LocalDagRunner step's log
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--write", help="append the results to this markdown file")
    parser.add_argument("--dataset", choices=("taxi", "penguins"), default="taxi",
                        help="taxi: the shipped module; penguins: TFX's penguin_utils_keras.py, multi-class")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    home = work / "airflow"
    migrate(home)
    data = dataset(args.dataset, work)
    rows: dict[str, list[float]] = {k: [] for k in ("a1", "a2", "n1", "n2", "l1", "l2", "l1_inner", "l2_inner")}
    tasks1: list[dict[str, float]] = []
    tasks2: list[dict[str, float]] = []
    for i in range(args.repeats):
        for n, tasks in ((1, tasks1), (2, tasks2)):
            wall, per_task = airflow_run(home, work / f"state-a{i}", "mlops_train_deploy", data["conf"])
            rows[f"a{n}"].append(wall)
            rows[f"n{n}"].append(wall - sum(per_task.get(t, 0.0) for t in NOT_NODES))
            tasks.append(per_task)
        for n in (1, 2):
            wall, inner = local_dag_runner_run(work / f"state-l{i}", data)
            rows[f"l{n}"].append(wall)
            rows[f"l{n}_inner"].append(inner)
        print(f"repeat {i + 1}: airflow {rows['a1'][-1]:.1f} s then {rows['a2'][-1]:.1f} s; "
              f"LocalDagRunner {rows['l1'][-1]:.1f} s then {rows['l2'][-1]:.1f} s; tasks {tasks1[-1]} / {tasks2[-1]}",
              flush=True)
    from airflow_mlops.hooks.seldon import SeldonHook

    for i in range(args.repeats):  # the deploy tasks' model servers outlive them by design
        seldon = SeldonHook(mlops_conn_id=None, state_dir=str(work / f"state-a{i}"))
        for deployment in seldon.registry.names():
            seldon.deployments.undeploy(deployment)
    shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    # a task skipped in a run (deploy, when the next model is not blessed against the first) has no time there
    t1 = {t: statistics.median(d[t] for d in tasks1 if t in d) for t in tasks1[0]}
    t2 = {t: statistics.median(d[t] for d in tasks2 if t in d) for t in {t for d in tasks2 for t in d}}
    result = {**{k: round(v, 1) for k, v in med.items()}, "ratio_first": round(med["a1"] / med["l1"], 2),
              "ratio_next": round(med["a2"] / med["l2"], 2),
              "ratio_nodes_first": round(med["n1"] / med["l1"], 2), "ratio_nodes_next": round(med["n2"] / med["l2"], 2),
              "tasks_first": t1, "tasks_next": t2}
    print(json.dumps(result, indent=2))
    if args.write:
        lines = [
            f"\n### Full pipeline ({DATASETS[args.dataset]}): Airflow tasks vs LocalDagRunner "
            f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
            f"{platform.machine()}, median of {args.repeats})\n",
            "| what | first run (s) | next run (s) |", "| --- | ---: | ---: |",
            f"| `airflow dags test mlops_train_deploy` (9 tasks) | {med['a1']:.1f} | {med['a2']:.1f} |",
            *[f"| &nbsp;&nbsp;task {t} | {s:.1f} | {f'{t2[t]:.1f}' if t in t2 else 'skipped'} |" for t, s in t1.items()],
            f"| one runtime process, `LocalDagRunner`, same nodes | {med['l1']:.1f} | {med['l2']:.1f} |",
            f"| &nbsp;&nbsp;of which the pipeline itself (after imports) | {med['l1_inner']:.1f} | {med['l2_inner']:.1f} |",
            f"| `airflow dags test`, the same nodes (without the {' and '.join(NOT_NODES)} tasks) "
            f"| {med['n1']:.1f} | {med['n2']:.1f} |",
            f"| **ratio Airflow / LocalDagRunner, the same nodes** | **{med['n1'] / med['l1']:.2f}×** "
            f"| **{med['n2'] / med['l2']:.2f}×** |",
            f"| ratio Airflow / LocalDagRunner, the whole DAG | {med['a1'] / med['l1']:.2f}× | {med['a2'] / med['l2']:.2f}× |",
            "",
        ]
        append_table(args.write, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
