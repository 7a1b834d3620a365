"""The MLOps pages of the Airflow UI (an Airflow plugin the provider registers): models, deployments, drift, data."""
