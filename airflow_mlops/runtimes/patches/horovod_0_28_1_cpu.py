"""Build fix for Horovod 0.28.1 (the last release) on CPU against TensorFlow >= 2.18.

``horovod/tensorflow/xla_mpi_ops.cc`` implements XLA custom calls for GPUs only (its body is
under ``#if HAVE_GPU``) but still includes XLA headers that newer TensorFlow moved, so the CPU
build fails. This edit adds the file to the TensorFlow extension only when CUDA or ROCm is
enabled. Applied to the unpacked sdist by the runtime build; idempotent.

    python horovod_0_28_1_cpu.py /path/to/horovod-0.28.1
"""

from __future__ import annotations

import pathlib
import sys

OLD = 'list(APPEND TF_SOURCES "${PROJECT_SOURCE_DIR}/horovod/tensorflow/xla_mpi_ops.cc")\n'
NEW = (
    "# airflow-mlops: xla_mpi_ops.cc is GPU-only XLA code; leave it out of CPU builds.\n"
    "if(HAVE_CUDA OR HAVE_ROCM)\n"
    '    list(APPEND TF_SOURCES "${PROJECT_SOURCE_DIR}/horovod/tensorflow/xla_mpi_ops.cc")\n'
    "endif()\n"
)


def patch(source_dir: pathlib.Path) -> str:
    cmake = source_dir / "horovod" / "tensorflow" / "CMakeLists.txt"
    text = cmake.read_text()
    if NEW in text:
        return "already patched"
    if text.count(OLD) != 1:
        raise SystemExit(f"{cmake}: the line to change is not there exactly once; is this Horovod 0.28.1?")
    cmake.write_text(text.replace(OLD, NEW))
    return "patched"


if __name__ == "__main__":
    target = pathlib.Path(sys.argv[1])
    print(f"{target}: {patch(target)}")
