"""TFX Trainer executor that trains with Horovod data parallelism (runs in the TFX runtime).

``HorovodTrainerExecutor.Do`` writes TFX's inputs, outputs and exec properties to a JSON
file and starts ``num_workers`` workers with ``horovodrun --gloo`` (``python -m
horovod.runner.launch``). Each worker (``python -m airflow_mlops.runtime_side.steps.horovod_trainer FILE``)
calls ``hvd.init()``, rebuilds the same ``FnArgs`` TFX's GenericExecutor would give, and
calls the module file's ``run_fn``. Only rank 0 writes the serving model and the model-run
directory; the other ranks get scratch directories. horovodrun prefixes each worker's
output with its rank (``[1]<stdout>:``), and that output reaches the Airflow task log.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from typing import Any

from tfx.components.trainer import executor as trainer_executor
from tfx.components.util import udf_utils
from tfx.types import artifact_utils

from airflow_mlops.runtimes.contract import RejectedInput
from airflow_mlops.runtime_side.steps.horovod_launch import LaunchLog, horovodrun_args, on_mpijob
from airflow_mlops.runtime_side.steps.module_file import uses_horovod

log = logging.getLogger("airflow_mlops.horovod")

#: custom_config key holding the Horovod settings given by the operator.
CONFIG_KEY = "airflow_mlops_horovod"


def horovod_settings(exec_properties: dict[str, Any]) -> dict[str, Any]:
    custom = exec_properties.get("custom_config") or "{}"
    config = json.loads(custom) if isinstance(custom, str) else dict(custom)
    return dict(config.get(CONFIG_KEY) or {})


class HorovodTrainerExecutor(trainer_executor.GenericExecutor):
    """Runs ``run_fn`` on ``num_workers`` Horovod workers (Gloo) instead of in this process."""

    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 - TFX's name
        settings = horovod_settings(exec_properties)
        workers = int(settings.get("num_workers", 1))
        remote = on_mpijob(os.environ)
        run_fn = udf_utils.get_fn(exec_properties, "run_fn")
        if (workers > 1 or remote) and not uses_horovod(run_fn):
            advice = ("to train data-parallel, import horovod.tensorflow in the module, call hvd.init(), shard the "
                      "dataset by hvd.rank()/hvd.size(), wrap the optimizer's gradients with hvd.DistributedGradientTape "
                      "(or average them with hvd.allreduce) and broadcast the initial weights from rank 0 "
                      "(README: Transform and Horovod training)")
            if remote:
                raise RejectedInput(f"run_fn of {run_fn.__module__} never uses Horovod, so each of the MPIJob's ranks "
                                    f"would train the whole model on its own: {advice}; or train it with num_workers=1")
            log.warning("run_fn of %s never uses Horovod: %d workers would each train the whole model, so it runs "
                        "once, on one worker. %s", run_fn.__module__, workers, advice)
            workers = 1
        payload = {
            "input_dict": artifact_utils.jsonify_artifact_dict(input_dict),
            "output_dict": artifact_utils.jsonify_artifact_dict(output_dict),
            "exec_properties": {k: v for k, v in exec_properties.items()},
        }
        # ranks in other pods (MPIJob) read the payload from the shared pipeline root, local ones from /tmp
        shared = os.path.dirname(artifact_utils.get_single_uri(output_dict["model_run"])) if remote else None
        with tempfile.TemporaryDirectory(prefix=".horovod-", dir=shared) as tmp:
            path = os.path.join(tmp, "trainer.json")
            with open(path, "w") as handle:
                json.dump(payload, handle, default=str)
            command = [sys.executable, "-m", "horovod.runner.launch", *horovodrun_args(workers, os.environ),
                       sys.executable, "-m", "airflow_mlops.runtime_side.steps.horovod_trainer", path]
            log.info("starting %d Horovod worker(s): %s", workers, " ".join(command))
            launch_log = LaunchLog()
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip("\n")
                launch_log.add(line)
                print(line, flush=True)
            if proc.wait() != 0:
                raise RuntimeError(launch_log.failure(workers, proc.returncode))


def worker_main(path: str) -> None:
    """One Horovod worker: rebuild FnArgs and call the module's run_fn."""
    import horovod.tensorflow as hvd
    from tfx.components.util import udf_utils

    hvd.init()
    with open(path) as handle:
        payload = json.load(handle)
    input_dict = artifact_utils.parse_artifact_dict(payload["input_dict"])
    output_dict = artifact_utils.parse_artifact_dict(payload["output_dict"])
    exec_properties = payload["exec_properties"]
    executor = trainer_executor.GenericExecutor()
    fn_args = executor._GetFnArgs(input_dict, output_dict, exec_properties)  # noqa: SLF001 - same FnArgs as TFX
    if hvd.rank() != 0:  # only rank 0 writes the model, checkpoints and logs
        scratch = tempfile.mkdtemp(prefix=f"horovod-rank{hvd.rank()}-")
        fn_args.serving_model_dir = os.path.join(scratch, "serving_model")
        fn_args.model_run_dir = os.path.join(scratch, "model_run")
    fn_args.custom_config = {
        **(fn_args.custom_config or {}),
        "horovod": {"rank": hvd.rank(), "size": hvd.size(),
                    "checkpoint_dir": horovod_settings(exec_properties).get("checkpoint_dir")},
    }
    run_fn = udf_utils.get_fn(exec_properties, "run_fn")
    run_fn(fn_args)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)
    worker_main(sys.argv[1])
