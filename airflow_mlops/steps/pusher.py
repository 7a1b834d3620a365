"""TFX Pusher executor that publishes numbered model versions (runs in the TFX runtime).

TFX's own filesystem Pusher names a version after the Unix time of the push. This one
publishes through :class:`~airflow_mlops.utils.model_registry.ModelRegistry`: versions
1, 2, 3, ... under the push destination, each with a record of its run, model artifact,
blessing and metrics, so deploy and rollback can name a version. A retried push of the
same model reuses its version. The ``PushedModel`` artifact records ``pushed_version``,
``pushed_destination`` and the metrics in ML Metadata.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from tfx.components.pusher import executor as pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from airflow_mlops.utils.model_registry import ModelRegistry

log = logging.getLogger("airflow_mlops.pusher")

#: custom_config key holding what the operator passes (run id, pipeline, evaluation summary).
CONFIG_KEY = "airflow_mlops_pusher"


class VersionedPusherExecutor(pusher_executor.Executor):
    """Push a blessed model as the next numeric version of the push destination."""

    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 - TFX's name
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            log.info("the model is not blessed: nothing was pushed")
            return
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        if destination.WhichOneof("destination") != "filesystem":
            raise NotImplementedError(f"push destination {destination.WhichOneof('destination')!r} is not supported")
        custom = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "{}"
        config: dict[str, Any] = (json.loads(custom) if isinstance(custom, str) else dict(custom)).get(CONFIG_KEY) or {}
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        blessings = input_dict.get(standard_component_specs.MODEL_BLESSING_KEY) or []
        evaluation = config.get("evaluation") or {}
        version, new = ModelRegistry(destination.filesystem.base_directory).publish(
            self.GetModelPath(input_dict),
            model_uri=model.uri,
            pipeline_name=config.get("pipeline_name") or "",
            run_id=config.get("run_id") or "",
            model_artifact_id=model.id,
            blessing_artifact_id=blessings[0].id if blessings else None,
            metrics=evaluation.get("metrics") or {},
        )
        if new:
            log.info("pushed the model as version %d: %s", version.version, version.path)
        else:
            log.info("this model was already pushed as version %d (an earlier try): not pushing it again",
                     version.version)
        self._MarkPushed(model_push, pushed_destination=version.path, pushed_version=str(version.version))
        model_push.set_string_custom_property("metrics", json.dumps(version.metrics, sort_keys=True))
        model_push.set_string_custom_property("run_id", version.run_id)
