"""The pages' app in-process, as a signed-in user (authentication itself is tested against a real API
server in test_app.py)."""

from __future__ import annotations

import pytest
from fastapi import Request
from fastapi.testclient import TestClient

from airflow_mlops.plugins import app as pages


class User:
    def get_name(self) -> str:
        return "tester"


@pytest.fixture
def signed_in_client(monkeypatch):
    """A TestClient of the pages' app with a signed-in user who may trigger DAGs, and no Airflow database
    (no DAG run is looked up); the settings are read afresh."""
    async def signed_in(request: Request) -> User:
        return User()

    pages._data_cache.clear()
    monkeypatch.setattr(pages, "can_trigger", lambda user, dag_id=pages.ACTION_DAG: True)
    monkeypatch.setattr(pages, "dag_runs", lambda keys: {})
    pages.app.dependency_overrides[pages.current_user] = signed_in
    try:
        yield TestClient(pages.app, root_path="/mlops")
    finally:
        pages.app.dependency_overrides.clear()
        pages._data_cache.clear()
