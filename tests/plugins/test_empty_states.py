"""Every page before anything ran: it says what to run (the app in-process, signed in: conftest.py)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def client(clean_mlops_env, tmp_path, signed_in_client):
    clean_mlops_env.setenv("AIRFLOW__MLOPS__STATE_DIR", str(tmp_path / "empty"))
    return signed_in_client


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
