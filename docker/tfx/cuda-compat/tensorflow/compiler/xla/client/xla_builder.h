// airflow-mlops, CUDA image only (docker/tfx/Dockerfile.cuda puts this directory on CXXFLAGS).
//
// A GPU build of Horovod 0.28.1 compiles horovod/tensorflow/xla_mpi_ops.cc (a CPU build leaves it
// out: airflow_mlops/runtimes/patches/horovod_0_28_1_cpu.py). That file includes XLA's builder by
// its pre-TensorFlow-2.19 path and uses xla::StatusOr, which XLA replaced with absl::StatusOr;
// TensorFlow 2.21 ships the builder as xla/hlo/builder/xla_builder.h. Upstream: horovod/horovod#4302.
#ifndef AIRFLOW_MLOPS_XLA_BUILDER_COMPAT_H_
#define AIRFLOW_MLOPS_XLA_BUILDER_COMPAT_H_

#include "absl/status/statusor.h"
#include "xla/hlo/builder/xla_builder.h"

namespace xla {
template <typename T>
using StatusOr = absl::StatusOr<T>;
}  // namespace xla

#endif  // AIRFLOW_MLOPS_XLA_BUILDER_COMPAT_H_
