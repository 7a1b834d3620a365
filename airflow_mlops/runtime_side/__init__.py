"""The runtime side: code that runs inside a runtime, never in an Airflow process.

- ``entrypoint.py``: the step process (reads a step request, runs the step, writes its result);
- ``session.py``: the warm runtime's server (forks a step process per request);
- ``steps/``: the steps, by name (``steps/__init__.py``'s ``STEPS``);
- ``model_server/``: the model server (Seldon's Python server, the deployment's front);
- ``modules/``: the TFX module files that ship with the provider (run by TFX).

These modules import the ML libraries (TFX, TensorFlow, Horovod, seldon-core, Alibi Detect); the
Airflow side reaches them only through a step request or a server's HTTP API. ruff's banned-api
rule (``pyproject.toml``) and ``tests/test_import_rules.py`` keep the Airflow side off this
package. Both sides share only standard-library modules: ``shared.py``, ``components.py``,
``evaluation.py``, ``runtimes/contract.py``, ``runtimes/reaper.py``, ``serving/prediction_log.py``,
``utils/model_registry.py`` (``tests/test_import_rules.py`` holds the list).
"""
