"""Every page before anything ran: it says what to run. In-process app with a signed-in user given
(authentication is tested against a real API server in test_app.py)."""

from __future__ import annotations

import pytest
from fastapi import Request
from fastapi.testclient import TestClient

from airflow_mlops.plugins import app as pages

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class User:
    def get_name(self) -> str:
        return "tester"


@pytest.fixture
def client(clean_mlops_env, tmp_path, monkeypatch):
    async def signed_in(request: Request) -> User:
        return User()

    clean_mlops_env.setenv("AIRFLOW__MLOPS__STATE_DIR", str(tmp_path / "empty"))
    pages._data_cache.clear()
    monkeypatch.setattr(pages, "can_trigger", lambda user, dag_id=pages.ACTION_DAG: True)
    pages.app.dependency_overrides[pages.current_user] = signed_in
    try:
        yield TestClient(pages.app, root_path="/mlops")
    finally:
        pages.app.dependency_overrides.clear()
        pages._data_cache.clear()


@pytest.mark.parametrize("path, says", [
    ("/models", "Trigger the DAG mlops_train_deploy"),
    ("/deployments", "Nothing is deployed yet"),
    ("/drift", "No drift check has run yet"),
    ("/data", "Trigger mlops_ingest or mlops_train_deploy"),
])
def test_an_empty_page_says_what_to_run(client, path, says):
    page = client.get(path)
    assert page.status_code == 200
    assert says in " ".join(page.text.replace("<code>", "").replace("</code>", "").split())


def test_unknown_things_are_404_with_what_exists(client):
    assert client.get("/models?pipeline=taxi").json() == {"detail": "no pipeline 'taxi'; known: none"}
    assert client.get("/drift/taxi").status_code == 404
    assert client.get("/api/deployments/taxi").status_code == 404
    assert client.get("/static/../app.py").status_code == 404
