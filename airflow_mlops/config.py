"""The ``[mlops]`` configuration section: names, defaults and how paths are derived.

Every setting can also be given per hook/operator (argument) or in the extra of the
``mlops_default`` connection; the order is argument → connection extra → ``[mlops]`` → default.
"""

from __future__ import annotations

import os
from pathlib import Path

SECTION = "mlops"

#: option → (default, description). Also published through ``get_provider_info()["config"]``.
OPTIONS: dict[str, tuple[str, str]] = {
    "backend": ("local", "Where runtime steps run: 'local' (this machine) or 'kubernetes'."),
    "state_dir": (
        "",
        "Root of everything the provider keeps locally: pipeline root, ML Metadata SQLite store, "
        "reference schemas, registries. Empty means {AIRFLOW_HOME}/mlops.",
    ),
    "data_root": (
        "",
        "Where new data of your pipeline lands: a directory of CSV files or of span-<N>/ sub-directories. "
        "Ingest and training read it when their input_base (data_root param) is empty, as does the retraining "
        "that monitoring requests. Empty means the Chicago taxi sample shipped with TFX.",
    ),
    "min_examples": (
        "1",
        "Every split of a span needs at least this many examples; a smaller span (a header-only CSV) is "
        "rejected at validation, naming the span and the count, and never becomes the reference schema.",
    ),
    "pipeline_root": ("", "Where TFX writes artifacts. Empty means {state_dir}/pipelines/{pipeline_name}."),
    "model_root": (
        "",
        "Where pushed models go, one numeric version directory each (TF Serving's layout). "
        "Empty means {state_dir}/models/{pipeline_name}.",
    ),
    "metadata_uri": (
        "",
        "ML Metadata store: sqlite:////absolute/path.sqlite or mysql://user:password@host:3306/database. "
        "Empty means sqlite in {state_dir}/metadata/mlmd.sqlite.",
    ),
    "runtime_cache_dir": (
        "",
        "Where built runtimes are cached (keyed by their lock file). Empty means ~/.cache/airflow-mlops/runtimes.",
    ),
    "runtime_isolation": (
        "auto",
        "How local runtimes are built: 'venv', 'rootfs' (a Debian root filesystem entered with chroot), "
        "or 'auto' (rootfs only where the host's glibc is too old for the runtime's wheels).",
    ),
    "build_runtimes_on_demand": ("True", "Build a missing runtime when a task first needs it (else fail and say how to build it)."),
    "warm_runtimes": (
        "True",
        "Keep a warm process per runtime that imports its libraries once and forks a process per step "
        "(saves the import in every task); False starts a fresh process for every step.",
    ),
    "warm_runtime_idle_timeout": ("600", "Seconds a warm runtime waits for work before it exits."),
    "max_warm_runtimes": (
        "3",
        "At most this many warm runtimes run at once on a machine (per user): starting another first stops "
        "the least recently used idle one; when all are running steps, the step runs in a fresh process. "
        "A TFX one holds ~900 MB. 0: no bound.",
    ),
    "debian_mirror": ("http://deb.debian.org/debian", "Debian mirror used to build root-filesystem runtimes."),
    "pip_index_url": (
        "",
        "Package index that replaces PyPI (or the index of pip's own configuration) when runtimes are built, "
        'e.g. a corporate mirror. Like every pip_* option: one value for all runtimes, or a JSON object by runtime '
        '({"drift": "...", "*": "..."}, where "*" is every runtime not named).',
    ),
    "pip_extra_index_urls": (
        "",
        "More package indexes for runtime builds (space- or comma-separated, or a JSON list), searched besides "
        "the main index and the indexes the runtime itself declares (PyTorch's CPU index for drift).",
    ),
    "pip_find_links": (
        "",
        "Wheel directories (or URLs of pages of links) searched by runtime builds; fill one with "
        "`airflow-mlops runtime download <runtime> <dir>`.",
    ),
    "pip_trusted_hosts": ("", "Hosts whose plain-HTTP or self-signed package indexes pip may use (pip's --trusted-host)."),
    "pip_offline": (
        "False",
        "Build runtimes from pip_find_links only, with no package index at all (air-gapped machines).",
    ),
    "pip_spec_indexes": (
        "True",
        "Also search the indexes a runtime declares for its lock file (drift: https://download.pytorch.org/whl/cpu); "
        "False where pip_index_url / pip_extra_index_urls already mirror them.",
    ),
    "prediction_log": (
        "",
        "Where model servers log every request and prediction (monitoring reads it): a directory or any "
        "fsspec URL (s3://…, gs://… with s3fs/gcsfs in the serving runtime). Empty means {state_dir}/predictions.",
    ),
    "training_spans": (
        "1",
        "How many of the newest validated spans Transform and the Trainer train on (1: the span of the run only). "
        "A run's trigger form can ask for more, or for every span since a given one.",
    ),
    "feedback_root": (
        "",
        "Where ground-truth outcome files land (*.csv or *.jsonl with request_id, label and optionally row), "
        "read by the model quality check: a directory or any fsspec URL. Empty means {state_dir}/feedback.",
    ),
    "kubernetes_conn_id": ("kubernetes_default", "Kubernetes connection used when backend = kubernetes."),
    "kubernetes_namespace": (
        "",
        "Namespace of step pods, MPIJobs and SeldonDeployments; empty: the connection's namespace, else 'default'.",
    ),
    "kubernetes_image": (
        "airflow-mlops-{runtime}:{version}",
        "Image of a runtime's pods ({runtime} and {version} are filled in), or a JSON object "
        '{"tfx": "...", "serving": "...", "drift": "..."} naming each one. Build them from docker/.',
    ),
    "kubernetes_serving_image": (
        "",
        "Model-server image of SeldonDeployments when a deploy task names none: the project's "
        "(docker/serving, airflow-mlops-serving:<version>) logs every prediction for monitoring, on the volume "
        "claim; empty: Seldon's prepackaged TENSORFLOW_SERVER (no prediction log, so no drift checks).",
    ),
    "kubernetes_service_account": ("", "ServiceAccount of step pods and MPIJob pods; empty: the namespace's default."),
    "kubernetes_volume_claim": (
        "",
        "PersistentVolumeClaim (ReadWriteMany) mounted at state_dir in every step pod, so pods and Airflow "
        "workers see the same pipeline root, models and prediction logs; empty: no volume (use object-store URLs).",
    ),
    "kubernetes_resources": (
        "",
        'Resources of step pods as JSON, e.g. {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "8Gi"}}.',
    ),
    "kubernetes_node_selector": ("", 'Node selector of step and training pods as JSON, e.g. {"pool": "ml"}.'),
    "kubernetes_tolerations": ("", "Tolerations of step and training pods as a JSON list."),
    "kubernetes_on_finish_action": (
        "delete_succeeded_pod",
        "What happens to a step pod when it ends: delete_pod, delete_succeeded_pod (keep failed ones to "
        "inspect) or keep_pod (the cncf-kubernetes provider's names).",
    ),
    "kubernetes_startup_timeout": ("600", "Seconds a step pod may stay Pending (image pull, scheduling) before the task fails."),
    "seldon_crd_path": (
        "",
        "SeldonDeployment CRD YAML to validate manifests against before they are applied; "
        "empty: only Seldon's admission-webhook rules are checked here.",
    ),
}


def get_option(name: str) -> str:
    """The ``[mlops]`` value of ``name`` (Airflow config or ``AIRFLOW__MLOPS__<NAME>``), else its default."""
    from airflow.sdk import conf

    default = OPTIONS[name][0]
    return conf.get(SECTION, name, fallback=default) or default


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")
