"""The model server: runs in the serving runtime (``python -m airflow_mlops.runtime_side.model_server.server``)."""
