"""airflow-mlops: an Apache Airflow provider for the MLOps loop.

This package is imported by two kinds of process:

* the Airflow process (operators, hooks, sensors, triggers, the CLI), which never
  imports an ML library, and
* a *runtime* (an isolated environment with TFX, seldon-core or Alibi Detect), which
  runs ``airflow_mlops.runtime_side.entrypoint`` and the modules under
  ``airflow_mlops.runtime_side.steps``.

So this module and ``airflow_mlops.runtimes.contract`` import nothing but the
standard library.
"""

from __future__ import annotations

__version__ = "0.1.0"
