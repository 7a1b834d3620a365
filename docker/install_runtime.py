"""Install a runtime into an image with the local builder's own recipe (standard library only).

    PYTHONPATH=<dir holding airflow_mlops> python install_runtime.py drift \\
        --python /opt/runtime/bin/python --lock /opt/runtime-lock.txt
    PYTHONPATH=... python install_runtime.py tfx --python /opt/runtime/bin/python \\
        --source-builds --cache-dir /var/cache/airflow-mlops [--env NAME=VALUE ...]

``--lock PATH`` writes the spec's lock file to ``PATH`` and installs it with
:func:`airflow_mlops.runtimes.sources.pip_install_command`, the command the local builder
runs, so the spec's own indexes (PyTorch's CPU index for ``drift``) and your package sources
reach the image exactly as they reach a local build. Your sources are the builder's settings,
given as build arguments: ``AIRFLOW__MLOPS__PIP_INDEX_URL``, ``..._PIP_EXTRA_INDEX_URLS``,
``..._PIP_FIND_LINKS``, ``..._PIP_TRUSTED_HOSTS``, ``..._PIP_OFFLINE``, ``..._PIP_SPEC_INDEXES``.

``--requirements PATH`` installs another pinned file the same way (the CUDA image's TensorFlow
CUDA packages). ``--source-builds`` runs the script :func:`airflow_mlops.runtimes.builder.source_build_script`
writes for a local build: the sdist is downloaded, the spec's patch from
``airflow_mlops/runtimes/patches/`` applied, the wheel built with the spec's environment, kept
under ``<cache-dir>/wheels/<name>-<key>/`` and installed with ``pip install --no-deps``.
``--env`` adds or overrides a build variable (the CUDA image: ``HOROVOD_GPU_OPERATIONS=NCCL``,
``MAKEFLAGS=-j8``, ...); like the spec's own, they are part of the wheel's cache key, so a GPU
wheel is never mistaken for a CPU one.

``--print`` shows the commands instead of running them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import subprocess
import sys
from pathlib import Path

from airflow_mlops.runtimes.sources import PackageSources, pip_install_command
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


def sources_from_environment(runtime: str) -> PackageSources:
    """The ``[mlops] pip_*`` settings as Airflow reads them from the environment (build arguments here)."""
    return PackageSources.from_settings(lambda name: os.environ.get(f"AIRFLOW__MLOPS__{name.upper()}", ""), runtime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runtime", choices=sorted(RUNTIMES))
    parser.add_argument("--python", required=True, help="the runtime's interpreter")
    parser.add_argument("--lock", type=Path, help="write the spec's lock file here and install it")
    parser.add_argument("--requirements", type=Path, action="append", default=[],
                        help="install another pinned requirements file from the same sources (repeatable)")
    parser.add_argument("--source-builds", action="store_true", help="build and install the spec's source builds")
    parser.add_argument("--cache-dir", type=Path, help="where built wheels are kept (with --source-builds)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="add or override a source build's variable (repeatable)")
    parser.add_argument("--print", action="store_true", help="print the commands instead of running them")
    args = parser.parse_args(argv)
    if not (args.lock or args.requirements or args.source_builds):
        parser.error("say what to install: --lock PATH, --requirements PATH and/or --source-builds")
    if args.source_builds and not args.cache_dir:
        parser.error("--source-builds needs --cache-dir")
    spec = with_env(RUNTIMES[args.runtime], parse_env(args.env))
    try:
        sources = sources_from_environment(spec.name)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    commands: list[list[str]] = []
    if args.lock:
        if not args.print:
            args.lock.write_text(spec.lock_text())
        commands.append(pip_install_command(spec, args.python, str(args.lock), sources))
    for requirements in args.requirements:
        commands.append(pip_install_command(spec, args.python, str(requirements), sources))
    if args.source_builds and spec.source_builds:
        from airflow_mlops.runtimes.builder import source_build_script

        script, _ = source_build_script(spec, args.python, args.cache_dir, sources)
        commands.append(["/bin/sh", "-c", script])
    for command in commands:
        print("$ " + shlex.join(command), flush=True)
        if not args.print:
            code = subprocess.call(command)
            if code:
                return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
