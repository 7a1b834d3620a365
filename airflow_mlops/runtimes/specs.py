"""The runtimes this provider knows, as data (standard library only)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

#: Bumped when the build recipe changes in a way that must invalidate cached runtimes.
BUILD_RECIPE_VERSION = 1


@dataclass(frozen=True)
class SourceBuild:
    """A package built from its sdist inside the runtime (after the lock file is installed).

    :param requirement: ``name==version`` of the sdist on the package index.
    :param patch: optional script under ``airflow_mlops/runtimes/patches/``, run as
        ``python PATCH SOURCE_DIR`` on the unpacked sdist before building.
    :param env: build environment variables, as ``(name, value)`` pairs.
    """

    requirement: str
    patch: str | None = None
    env: tuple[tuple[str, str], ...] = ()

    def patch_path(self) -> str | None:
        if self.patch is None:
            return None
        return str(resources.files("airflow_mlops.runtimes").joinpath("patches", self.patch))

    def key(self, lock_text: str) -> str:
        patch = self.patch_path()
        patch_text = Path(patch).read_text() if patch else ""
        payload = json.dumps([self.requirement, patch_text, self.env, lock_text], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RuntimeSpec:
    """A named, pinned environment.

    :param name: the runtime's name (``tfx``), used by operators and the CLI.
    :param description: one line for listings.
    :param lock_file: file name under ``airflow_mlops/runtimes/locks/`` (or an absolute path):
        every package pinned, one requirement a line, as ``pip install --no-deps -r`` takes it.
    :param min_glibc: the oldest C library the locked wheels run on; on an older host the
        runtime is built as a Debian root filesystem instead of a virtualenv.
    :param debian_suite: the Debian release of that root filesystem.
    :param debian_packages: packages installed into the root filesystem.
    :param probe: a Python statement run after the build; a runtime that fails it is not kept.
    :param preload: modules a warm runtime imports once, before forking a process per step.
    :param source_builds: packages built from source after the lock file is installed; each
        wheel is cached and reused while its requirement, patch and the lock file stay the same.
    :param extra_index_urls: package indexes the lock file needs besides PyPI (a package pinned
        to a build that only such an index serves). Used by every build of the runtime, local or
        image (:mod:`.sources`); where packages come from, not what they are, so not part of the
        cache key. Users' own mirrors and wheel directories are settings (``[mlops] pip_*``).
    """

    name: str
    description: str
    lock_file: str
    min_glibc: tuple[int, int] | None = None
    debian_suite: str = "trixie"
    debian_packages: tuple[str, ...] = ("python3", "python3-venv", "python3-dev", "g++", "ca-certificates")
    probe: str = "pass"
    preload: tuple[str, ...] = ()
    source_builds: tuple[SourceBuild, ...] = ()
    extra_index_urls: tuple[str, ...] = ()

    def lock_text(self) -> str:
        """The lock file's text: a packaged file name, or an absolute path (for your own runtimes)."""
        if os.path.isabs(self.lock_file):
            return Path(self.lock_file).read_text()
        return resources.files("airflow_mlops.runtimes").joinpath("locks", self.lock_file).read_text()

    def cache_key(self, isolation: str) -> str:
        """A hash of everything that decides the runtime's content."""
        recipe = asdict(self)
        recipe.pop("description")
        recipe.pop("preload")  # how it is run, not what it contains
        recipe.pop("extra_index_urls")  # where the pinned packages are fetched from, not what they are
        payload = json.dumps(
            {"recipe": recipe, "isolation": isolation, "version": BUILD_RECIPE_VERSION, "lock": self.lock_text(),
             "source_builds": [b.key(self.lock_text()) for b in self.source_builds]},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


#: PyTorch's index of CPU-only wheels (``torch==<version>+cpu``).
PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

HOROVOD_CPU = SourceBuild(
    requirement="horovod==0.28.1",  # the last release, an sdist only
    patch="horovod_0_28_1_cpu.py",
    env=(
        ("CC", "gcc-12"),  # gcc 14 (Debian 13's default) fails on Horovod's vendored sources
        ("CXX", "g++-12"),
        ("MAKEFLAGS", "-j2"),
        ("HOROVOD_WITH_TENSORFLOW", "1"),
        ("HOROVOD_WITH_GLOO", "1"),
        ("HOROVOD_WITHOUT_MPI", "1"),
        ("HOROVOD_WITHOUT_PYTORCH", "1"),
        ("HOROVOD_WITHOUT_MXNET", "1"),
    ),
)

RUNTIMES: dict[str, RuntimeSpec] = {
    "tfx": RuntimeSpec(
        name="tfx",
        description="TFX 1.21 (TensorFlow 2.21, ML Metadata, TFDV, Beam, TensorBoard) + Horovod 0.28.1 on Python 3.13",
        lock_file="tfx.txt",
        # ml-metadata and tensorflow-data-validation 1.21 wheels are manylinux_2_39.
        min_glibc=(2, 39),
        debian_packages=("python3", "python3-venv", "python3-dev", "g++", "ca-certificates", "g++-12", "cmake", "make"),
        source_builds=(HOROVOD_CPU,),
        probe="import tfx, ml_metadata, tensorflow_data_validation, tensorboard, horovod.tensorflow",
        preload=(
            "tensorflow",
            "apache_beam",
            "ml_metadata",
            "tensorflow_data_validation",
            "tfx.components",
            "tfx.v1",  # what TFX module files import (``from tfx import v1 as tfx``): ~2 s each step otherwise
            "tfx.orchestration.portable.launcher",
            "tfx.orchestration.local.runner_utils",
            "airflow_mlops.runtime_side.steps.tfx_node",
        ),
    ),
    "serving": RuntimeSpec(
        name="serving",
        # seldon-core >= 1.18 is under the Business Source License 1.1: see the README.
        description="seldon-core 1.18.2 model server (TensorFlow 2.19.1 CPU, protobuf 3.20, Flask 2.2); "
        "Python of the Airflow environment (3.11)",
        lock_file="seldon.txt",
        probe="import seldon_core.wrapper, tensorflow",
        preload=("tensorflow", "seldon_core.seldon_client"),
    ),
    "drift": RuntimeSpec(
        name="drift",
        # alibi-detect >= 0.11.5 is under the Business Source License 1.1: see the README.
        description="Alibi Detect 0.13.0 (PyTorch 2.13 CPU backend, numpy 1.26); Python of the Airflow environment",
        lock_file="drift.txt",
        # torch==2.13.0+cpu (the CPU-only build, no CUDA libraries) is on PyTorch's CPU index, not on PyPI.
        extra_index_urls=(PYTORCH_CPU_INDEX,),
        probe="import alibi_detect.cd, alibi_detect.saving, torch",
        preload=("numpy", "scipy.stats", "alibi_detect.cd"),
    ),
}


def get_runtime_spec(name: str) -> RuntimeSpec:
    try:
        return RUNTIMES[name]
    except KeyError:
        raise KeyError(f"unknown runtime {name!r}; known runtimes: {', '.join(sorted(RUNTIMES))}") from None
