"""Benchmark: what running a step as a pod costs the task, on top of the step itself.

    .venv/bin/python bench/bench_kubernetes.py [--write docs/benchmarks.md]

The same cheap step (``runtime.info`` in the drift runtime, a virtualenv) run (a) locally in a
fresh process and (b) with ``backend = kubernetes`` as a pod, against the project's FAKE API
server (tests/kubernetes/fake_api.py) whose kubelet starts the pod's command as a local process
at once. (b) - (a) is the provider's own overhead per step: API calls, the cncf provider's
PodManager waits and log following, reading the result back. A real cluster adds scheduling,
image pulls and container start, which no fake can measure. Min / median / max of N runs each:
the pod path costs about 0.01 s when the pod is already running at PodManager's first look, and
one start-check interval (``PodStepRunner.poll_interval``, 1 s) when it is not.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import REPO, append_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--write", help="append the result table to this markdown file")
    args = parser.parse_args()

    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-k8s-home-"))
    from kubernetes import client as k8s

    from airflow_mlops.hooks.runtime import RuntimeHook
    from airflow_mlops.runtimes.local import runtime_command
    from tests.kubernetes.fake_api import FakeKubeAPI, LocalProcessKubelet, airflow_connection_env

    state = tempfile.mkdtemp(prefix="bench-k8s-state-")
    local = RuntimeHook(runtime="drift", mlops_conn_id=None, state_dir=state, warm=False)
    install = local.get_runtime()

    def rewrite(argv, env):
        env = {k: v for k, v in env.items() if k not in ("PATH", "HOME", "LANG")}
        return runtime_command(install, argv, env={**env, "PYTHONPATH": str(REPO)}, binds=[str(REPO), state])

    timings: dict[str, list[float]] = {"local": [], "pod": []}
    requests_per_step = 0
    with FakeKubeAPI(kubelet=LocalProcessKubelet(rewrite=rewrite)) as fake:
        for key, value in airflow_connection_env(fake, "kubernetes_bench", namespace="mlops").items():
            os.environ[key] = value
        saved_default = k8s.Configuration._default
        pod = RuntimeHook(runtime="drift", mlops_conn_id=None, backend="kubernetes", state_dir=state,
                          settings={"kubernetes_conn_id": "kubernetes_bench", "kubernetes_namespace": "mlops"})
        for run in range(args.runs + 1):  # the first of each is a warm-up (imports, connections)
            started = time.monotonic()
            local.run_step("runtime.info", {})
            local_s = time.monotonic() - started
            before = len(fake.requests)
            started = time.monotonic()
            pod.run_step("runtime.info", {}, context={"dag_id": "bench", "task_id": "step", "run_id": f"r{run}"})
            pod_s = time.monotonic() - started
            if run:
                timings["local"].append(local_s)
                timings["pod"].append(pod_s)
                requests_per_step = len(fake.requests) - before
        k8s.Configuration._default = saved_default

    local_s, pod_s = statistics.median(timings["local"]), statistics.median(timings["pod"])

    def spread(values: list[float]) -> str:
        return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f} s"

    lines = [
        "",
        f"## A step as a pod: the provider's overhead ({datetime.now(timezone.utc):%Y-%m-%d}, "
        f"{platform.node() or 'this machine'})",
        "",
        f"`bench/bench_kubernetes.py`, `runtime.info` in the drift runtime, {args.runs} runs each (min / median / "
        "max); the API server is the project's FAKE one, its kubelet starts the command at once (no scheduling, "
        "image pull or container start: a cluster adds those).",
        "",
        "| how the step runs | wall per step |",
        "| --- | ---: |",
        f"| locally, a fresh process | {spread(timings['local'])} |",
        f"| as a pod (`backend = kubernetes`: create, PodManager start check, log follow, completion, result, "
        f"delete; {requests_per_step} API requests) | {spread(timings['pod'])} |",
        f"| the provider's overhead per step (medians) | {pod_s - local_s:.2f} s; up to the start-check interval "
        "(1 s) when the pod is not running at the first look |",
    ]
    print("\n".join(lines))
    if args.write:
        append_table(args.write, lines)


if __name__ == "__main__":
    main()
