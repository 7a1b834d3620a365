"""The airflow-mlops plugin: the MLOps pages in Airflow's UI (Airflow >= 3.1), registered by the package's
``airflow.plugins`` entry point (Airflow 3.3 loads a provider metadata's ``plugins`` only without lazy discovery).

The pages are a FastAPI app the API server mounts at ``/mlops`` (:mod:`airflow_mlops.plugins.app`);
an external view puts them in the nav bar ("MLOps"), shown inside the UI, and one view per page
sits under the Plugins menu. The app module is imported when Airflow loads the plugin (in the
API server; the scheduler and workers load plugins too, and it only defines routes there).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airflow_mlops.links.pages import PREFIX
from airflow_mlops.plugins.app import app

PAGES = {"models": "Model versions", "deployments": "Deployments", "drift": "Drift", "data": "Data validation"}


class MlopsPlugin(AirflowPlugin):
    """Nav entry "MLOps" (the model versions page; tabs lead to the others) and the pages' app."""

    name = "airflow_mlops"
    external_views = [
        {"name": "MLOps", "href": f"{PREFIX}/models", "url_route": "mlops", "destination": "nav",
         "nav_top_level": True, "icon": f"{PREFIX}/static/icon.svg"},
        *({"name": title, "href": f"{PREFIX}/{page}", "url_route": f"mlops-{page}", "destination": "nav",
           "category": "MLOps"} for page, title in PAGES.items()),
    ]
    fastapi_apps = [{"app": app, "url_prefix": PREFIX, "name": "MLOps pages"}]
