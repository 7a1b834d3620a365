"""Run inside the TFX runtime: the Evaluator's check of a model against an EvalConfig file, as its executor runs it.

``eval_config_check.py MODEL_DIR CONFIG_FILE...``: loads each file as the Evaluator does (``load_eval_config``) and
checks the SavedModel at MODEL_DIR against it with ``check_model`` (what ``CheckedEvaluatorExecutor`` does before
TFMA). Prints, a line per file in their order, ``REJECTED: <message>`` or ``ACCEPTED: <what was found>``.
"""

import sys

from airflow_mlops.runtime_side.steps.evaluator import check_model
from airflow_mlops.runtime_side.steps.tfx_pipeline import load_eval_config
from airflow_mlops.runtimes.contract import RejectedInput

for path in sys.argv[2:]:
    try:
        found = check_model(sys.argv[1], load_eval_config(path))
    except RejectedInput as err:
        print(f"REJECTED: {err}", flush=True)
    else:
        print(f"ACCEPTED: {found}", flush=True)
