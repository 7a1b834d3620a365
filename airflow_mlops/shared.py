"""What both sides of the process boundary need: constants and small pure helpers.

The Airflow side (operators, sensors, hooks, triggers, the Kubernetes controllers, the DAGs) and
the runtime side (``steps/``, the model server, the warm runtime's server) both import this
module; it imports only the standard library, so importing it never pulls either side into the
other (``tests/test_import_rules.py`` checks this, and ruff's banned-api rule in
``pyproject.toml`` keeps the Airflow side off the runtime side's modules).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Alibi Detect detectors the drift check runs (``steps/drift.py``), offered by the monitor DAG's form.
DETECTORS = ("TabularDrift", "KSDrift", "CVMDrift", "ChiSquareDrift", "MMDDrift", "LSDDDrift")

#: How an MPIJob's launcher tells the Horovod executor its world (``steps/horovod_launch.py``).
ENV_NP, ENV_HOSTFILE = "AIRFLOW_MLOPS_HOROVOD_NP", "AIRFLOW_MLOPS_HOROVOD_HOSTFILE"
ENV_MIN_NP, ENV_MAX_NP, ENV_DISCOVERY = ("AIRFLOW_MLOPS_HOROVOD_MIN_NP", "AIRFLOW_MLOPS_HOROVOD_MAX_NP",
                                         "AIRFLOW_MLOPS_HOROVOD_DISCOVERY")
ENV_SSH_PORT = "AIRFLOW_MLOPS_HOROVOD_SSH_PORT"

#: The line that ends a step's output stream from the warm runtime: ``EXIT_MARK <exit code>``.
EXIT_MARK = "\x00airflow-mlops-exit"

#: Where a pushed model keeps its raw feature spec (written by the Pusher, read by the model server).
FEATURE_SPEC = "assets.extra/feature_spec.json"

#: Rows per request the model server takes by default (``--max-rows``: more is a 413); also the most labels one
#: feedback may carry, and the most the quality join reads from one feedback line.
DEFAULT_MAX_ROWS = 10_000


def quoted(value: Any, limit: int = 80) -> str:
    """``value`` as an error message quotes it: its ``repr``, cut to ``limit`` characters with its length
    when longer (a client's 1 MB string is never echoed whole)."""
    text = value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else value
    if isinstance(text, str):
        return repr(text) if len(text) <= limit else f"{text[:limit]!r}… ({len(text)} characters)"
    shown = repr(value)
    return shown if len(shown) <= limit else f"{shown[:limit]}… ({len(shown)} characters)"


def typed_record(row: dict[str, str], spec: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A CSV row (all strings) as the request record the model expects: features of ``spec`` only,
    cast to their dtype, empty values left out (for replaying CSV data to a deployment)."""
    cast: dict[str, Callable[[str], Any]] = {"float": float, "int": lambda v: int(float(v)), "string": str}
    return {k: cast[spec[k]["dtype"]](v) for k, v in row.items() if k in spec and v != ""}


#: A file shipped inside this package (the template's taxi module), named by its path in the package: each side
#: finds it where its own copy of the package is (the Airflow worker's site-packages, a pod image's
#: /opt/airflow-mlops), as an absolute path is only true where it was made.
PACKAGE_FILE_PREFIX = "airflow-mlops-package:"


def package_file(relative: str) -> str:
    """The reference of ``relative`` (a path inside the ``airflow_mlops`` package) that either side resolves."""
    return PACKAGE_FILE_PREFIX + relative.lstrip("/")


def resolve_package_file(value: str, package_dir: str) -> str:
    """``value`` as a path on this side: a :func:`package_file` reference under ``package_dir`` (this side's
    ``airflow_mlops`` directory), anything else unchanged."""
    if isinstance(value, str) and value.startswith(PACKAGE_FILE_PREFIX):
        return f"{package_dir.rstrip('/')}/{value[len(PACKAGE_FILE_PREFIX):]}"
    return value


#: The non-root user (and group) of the project's images (docker/README.md): step pods, MPIJob and TrainJob pods
#: and the model-server predictors of SeldonDeployments run as it, with it as their fsGroup on the claim.
IMAGE_UID = 1000
