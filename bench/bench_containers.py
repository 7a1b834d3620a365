"""Benchmark: the images of docker/ built and run with podman (issue 24's measurements), side by side in one run.

    .venv/bin/python bench/bench_containers.py [--builds] [--lock-build serving] [--runs 10] [--write docs/benchmarks.md]

* image sizes (``podman image inspect``);
* build times (``--builds``): warm with nothing changed (the inputs label matches: no build), warm after a change of
  the provider's code (podman's layer cache keeps everything before ``COPY airflow_mlops``), cold from the locally
  made base (``--no-cache``-like: the image and its intermediate layers removed first, the base and the prebuilt
  runtime image kept, each rebuilt and timed once: base images and runtime images are timed as they are made);
* ``--lock-build NAME``: the runtime image as ``docker build`` makes it (the Dockerfile's own ``pip install`` of its
  lock file: the path a user's build takes), timed once;
* a step as a container vs as a local process: the drift runtime's ``drift.detect`` on 600 + 300 rows, ``--runs``
  times each, alternating: the Kubernetes backend's step pod run by the FAKE API server's podman kubelet (real
  container, uid 1000, the claim bind-mounted) vs the local backend's fresh runtime process. Median and spread.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import append_table  # noqa: E402
from tests.containers import images  # noqa: E402
from tests.containers.podman import inspect, podman, unavailable  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def sizes() -> list[tuple[str, float]]:
    out = []
    for name, recipe in images.RECIPES.items():
        out.append((name, inspect(images.build_image(name, log=lambda line: None), "image")["Size"] / 1e9))
    for ref in sorted(set(podman("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split())):
        if "airflow-mlops-base:" in ref or "airflow-mlops-runtime-" in ref:
            out.append((ref.split("/", 1)[-1], inspect(ref, "image")["Size"] / 1e9))
    return out


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def builds() -> list[tuple[str, float, float, float]]:
    """(image, warm unchanged s, warm after a code change s, cold s) per image; the cold builds last (they
    remove the images' cached layers)."""
    warm = {}
    marker = REPO / "airflow_mlops" / "_bench_marker.py"
    for name in images.RECIPES:
        unchanged = timed(lambda: images.build_image(name, log=lambda line: None))
        marker.write_text(f"# a code change for bench_containers: {time.time()}\n")
        try:
            changed = timed(lambda: images.build_image(name, log=lambda line: None))
        finally:
            marker.unlink()
        warm[name] = (unchanged, changed)
    for name in images.RECIPES:
        podman("untag", images.RECIPES[name].ref, check=False)  # never --force: it would remove running containers
    podman("image", "prune", "--force", check=False)  # their layers; the base and runtime images stay (tagged)
    return [(name, *warm[name], timed(lambda: images.build_image(name, log=lambda line: None)))
            for name in images.RECIPES]


def step_runs(runs: int) -> tuple[list[float], list[float]]:
    from airflow_mlops.hooks.runtime import RuntimeHook
    from tests.kubernetes.fake_api import FakeKubeAPI, airflow_connection_env
    from tests.kubernetes.podman_kubelet import PodmanKubelet

    images.build_image("drift", log=lambda line: None)
    rng = random.Random(7)
    params = {"features": {"fare": "numeric", "payment_type": "categorical"},
              "reference": [{"fare": rng.gauss(12, 4), "payment_type": rng.choice("AB")} for _ in range(600)],
              "window": [{"fare": rng.gauss(14, 4), "payment_type": rng.choice("AB")} for _ in range(300)]}
    pod, local = [], []
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        claim = Path(tmp, "claim")
        claim.mkdir()
        with PodmanKubelet(claims={"data": claim}) as kubelet, \
                FakeKubeAPI(kubelet=kubelet, stale_polls=0, creating_polls=1) as fake:
            os.environ.update(airflow_connection_env(fake, "kubernetes_fake", namespace="mlops"))
            k8s = RuntimeHook(runtime="drift", mlops_conn_id=None, backend="kubernetes", state_dir=str(claim), settings={
                "kubernetes_conn_id": "kubernetes_fake", "kubernetes_namespace": "mlops", "kubernetes_volume_claim": "data",
                "kubernetes_image": "localhost/airflow-mlops-{runtime}:{version}", "kubernetes_on_finish_action": "delete_pod"})
            here = RuntimeHook(runtime="drift", mlops_conn_id=None, backend="local", warm=False, state_dir=str(claim))
            for _ in range(runs):
                pod.append(timed(lambda: k8s.run_step("drift.detect", params)))
                local.append(timed(lambda: here.run_step("drift.detect", params)))
    return pod, local


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", action="store_true")
    parser.add_argument("--lock-build", action="append", default=[])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--write")
    args = parser.parse_args()
    if reason := unavailable():
        print(f"containers cannot run here: {reason}")
        return 1
    lines = [f"## Images and containers (podman; {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
             f"{platform.machine()})", "", "`bench/bench_containers.py`.", ""]
    lines += ["| image | size (GB) |", "| --- | --- |"]
    lines += [f"| {name} | {size:.2f} |" for name, size in sizes()]
    if args.builds:
        lines += ["", "| image | warm, nothing changed (s) | warm, the provider's code changed (s) | cold, from the "
                  "local base and runtime (s) |", "| --- | --- | --- | --- |"]
        lines += [f"| {n} | {a:.1f} | {b:.1f} | {c:.1f} |" for n, a, b, c in builds()]
    for name in args.lock_build:
        seconds = timed(lambda: images.build_image(name, runtime_from="lock", log=print))
        lines += ["", f"`{images.RECIPES[name].dockerfile}` built as `docker build` builds it (its own `pip install` "
                  f"of the lock file, the `lock` path): {seconds:.0f} s."]
    pod, local = step_runs(args.runs)
    med_pod, med_local = statistics.median(pod), statistics.median(local)
    lines += ["", f"A step (`drift.detect`, 600 + 300 rows) {args.runs} times each, alternating:", "",
              "| where it runs | median (s) | min-max (s) |", "| --- | --- | --- |",
              f"| a step pod as a container (fake API server, podman kubelet) | {med_pod:.2f} | {min(pod):.2f}-{max(pod):.2f} |",
              f"| a local runtime process | {med_local:.2f} | {min(local):.2f}-{max(local):.2f} |",
              "", f"Container / local process: {med_pod / med_local:.2f}x.", ""]
    print("\n".join(lines))
    if args.write:
        append_table(args.write, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
