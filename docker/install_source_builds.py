"""Build and install a runtime's source builds (Horovod) in an image, with the local builder's own recipe.

    PYTHONPATH=<dir holding airflow_mlops> python install_source_builds.py tfx \\
        --python /opt/runtime/bin/python --cache-dir /var/cache/airflow-mlops [--env NAME=VALUE ...]

This runs the script :func:`airflow_mlops.runtimes.builder.source_build_script` writes for a
local runtime build, so the image and the local runtime share one recipe
(``airflow_mlops.runtimes.specs``): the sdist is downloaded, the spec's patch from
``airflow_mlops/runtimes/patches/`` is applied, the wheel is built with the spec's environment,
kept under ``<cache-dir>/wheels/<name>-<key>/`` and installed with ``pip install --no-deps``.

``--env`` adds or overrides a build variable (the CUDA image: ``HOROVOD_GPU_OPERATIONS=NCCL``,
``MAKEFLAGS=-j8``, ...); like the spec's own, they are part of the wheel's cache key, so a GPU
wheel is never mistaken for a CPU one. Standard library only.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

from airflow_mlops.runtimes.builder import source_build_script
from airflow_mlops.runtimes.specs import RUNTIMES, RuntimeSpec


def with_env(spec: RuntimeSpec, overrides: dict[str, str]) -> RuntimeSpec:
    """``spec`` with ``overrides`` set in the environment of each of its source builds."""
    if not overrides:
        return spec
    builds = []
    for build in spec.source_builds:
        env = dict(build.env)
        env.update(overrides)
        builds.append(dataclasses.replace(build, env=tuple(env.items())))
    return dataclasses.replace(spec, source_builds=tuple(builds))


def parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--env takes NAME=VALUE, got {pair!r}")
        env[name] = value
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runtime", choices=sorted(RUNTIMES))
    parser.add_argument("--python", required=True, help="the runtime's interpreter")
    parser.add_argument("--cache-dir", required=True, type=Path, help="where built wheels are kept")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="add or override a build variable (repeatable)")
    args = parser.parse_args(argv)
    spec = with_env(RUNTIMES[args.runtime], parse_env(args.env))
    if not spec.source_builds:
        print(f"runtime {spec.name!r} has no source builds")
        return 0
    script, _ = source_build_script(spec, args.python, args.cache_dir)
    print("$ build " + ", ".join(b.requirement for b in spec.source_builds), flush=True)
    return subprocess.call(["/bin/sh", "-c", script])


if __name__ == "__main__":
    sys.exit(main())
