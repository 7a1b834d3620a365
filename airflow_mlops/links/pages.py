"""Extra links from task instances to the MLOps pages (Airflow's operator extra links).

An operator that has a page sets ``mlops_page`` (the page's path under ``/mlops``) while it runs;
when the task ends, Airflow asks the link for its URL and keeps it with the task instance (its
XCom), so the "MLOps …" button of the task leads to this version's metrics, this deployment or
this drift report. ``[api] base_url`` makes the URL absolute when Airflow is served under a path.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

PREFIX = "/mlops"


def page_path(*parts: Any, query: dict[str, str] | None = None) -> str:
    """``/mlops/<parts…>`` with each part quoted (``?k=v`` from ``query``)."""
    path = "/".join(quote(str(p), safe="") for p in parts)
    return f"/{path}" + ("?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items()) if query else "")


class _PageLink(BaseOperatorLink):
    """The page the operator named in ``mlops_page`` while it ran; empty (no link) before that."""

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        page = getattr(operator, "mlops_page", None)
        if not page:
            return ""
        from airflow.configuration import conf

        base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
        return f"{base}{PREFIX}{page}"


class ModelVersionLink(_PageLink):
    """Evaluator and Pusher: the model version (its metrics, baseline, lineage) or the pipeline's versions."""

    name = "MLOps model version"


class DeploymentLink(_PageLink):
    """Deploy, rollback, promote, undeploy, health: the deployment's page (version, traffic, health, history)."""

    name = "MLOps deployment"


class DriftReportLink(_PageLink):
    """Drift checks: the check's report (p-values per feature, plots, the retraining it caused)."""

    name = "MLOps drift report"
