"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    from airflow_mlops import __version__
    from airflow_mlops.config import OPTIONS, SECTION

    integration = "MLOps"
    return {
        "package-name": "airflow-mlops",
        "name": "MLOps",
        "description": "Run the MLOps loop (TFX data validation and training, Horovod, Seldon Core, "
        "Alibi Detect) from Airflow, each ML library in its own isolated runtime.",
        "versions": [__version__],
        "integrations": [{"integration-name": integration, "tags": ["software"]}],
        "operators": [{"integration-name": integration,
                       "python-modules": ["airflow_mlops.operators.tfx", "airflow_mlops.operators.seldon",
                                          "airflow_mlops.operators.drift", "airflow_mlops.operators.quality", "airflow_mlops.operators.approval"]}],
        "sensors": [{"integration-name": integration,
                     "python-modules": ["airflow_mlops.sensors.seldon", "airflow_mlops.sensors.drift",
                                         "airflow_mlops.sensors.quality"]}],
        "hooks": [{"integration-name": integration,
                   "python-modules": ["airflow_mlops.hooks.runtime", "airflow_mlops.hooks.seldon"]}],
        "triggers": [{"integration-name": integration,
                      "python-modules": ["airflow_mlops.triggers.seldon", "airflow_mlops.triggers.drift",
                                          "airflow_mlops.triggers.quality", "airflow_mlops.triggers.spans",
                                          "airflow_mlops.triggers.mpijob", "airflow_mlops.triggers.trainjob",
                                          "airflow_mlops.triggers.kubernetes"]}],
        "extra-links": ["airflow_mlops.links.pages.ModelVersionLink", "airflow_mlops.links.pages.DeploymentLink",
                        "airflow_mlops.links.pages.DriftReportLink"],
        "connection-types": [
            {"connection-type": "mlops", "hook-class-name": "airflow_mlops.hooks.runtime.RuntimeHook"}
        ],
        "config": {
            SECTION: {
                "description": "Settings of the airflow-mlops provider (runtimes, state, ML Metadata).",
                "options": {
                    name: {
                        "description": description,
                        "version_added": "0.1.0",
                        "type": "boolean" if default in ("True", "False") else "string",
                        "example": None,
                        "default": default,
                    }
                    for name, (default, description) in OPTIONS.items()
                },
            }
        },
    }
