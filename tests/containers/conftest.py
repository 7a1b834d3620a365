"""The serving image test serves the model the integration tests train once per run."""

from tests.integration.conftest import trained_taxi_model  # noqa: F401 - a fixture, shared
