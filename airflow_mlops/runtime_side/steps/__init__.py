"""Steps: the work a runtime does for one request.

Each step is a plain function ``fn(params: dict, context: dict) -> dict`` that imports its
heavy libraries (TFX, TensorFlow, ...) inside the function, so this package imports in
any environment. :data:`STEPS` maps the step name used in a
:class:`~airflow_mlops.runtimes.contract.StepRequest` to ``"module:function"``.
"""

from __future__ import annotations

STEPS: dict[str, str] = {
    "runtime.info": "airflow_mlops.runtime_side.steps.info:runtime_info",
    "tfx.run_node": "airflow_mlops.runtime_side.steps.tfx_node:run_node",
    "tfx.run_pipeline": "airflow_mlops.runtime_side.steps.tfx_node:run_pipeline",
    "tfx.sample_data": "airflow_mlops.runtime_side.steps.tfx_node:sample_data",
    "tfx.relax_schema": "airflow_mlops.runtime_side.steps.tfx_schema:relax_schema",
    "tfx.check_eval_config": "airflow_mlops.runtime_side.steps.tfx_pipeline:check_eval_config",
    "mlmd.lineage": "airflow_mlops.runtime_side.steps.mlmd:lineage",
    "mlmd.training_examples": "airflow_mlops.runtime_side.steps.mlmd:training_examples",
    "mlmd.mark_validated": "airflow_mlops.runtime_side.steps.mlmd:mark_validated",
    "tensorboard.scalars": "airflow_mlops.runtime_side.steps.tensorboard:scalars",
    "serving.direct_predict": "airflow_mlops.runtime_side.steps.serving:direct_predict",
    "serving.client_predict": "airflow_mlops.runtime_side.steps.serving:client_predict",
    "drift.detect": "airflow_mlops.runtime_side.steps.drift:detect",
}
