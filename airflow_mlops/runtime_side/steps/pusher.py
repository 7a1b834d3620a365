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
import os
from typing import Any

from tfx.components.pusher import executor as pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from airflow_mlops.shared import FEATURE_SPEC
from airflow_mlops.utils.model_registry import ModelRegistry

log = logging.getLogger("airflow_mlops.pusher")

#: custom_config key holding what the operator passes (run id, pipeline, evaluation summary).
CONFIG_KEY = "airflow_mlops_pusher"


#: The model server reads the raw features a model takes here (the same constant).
_DUMMY = {"float": 1.0, "int": 1, "string": "a"}


def _kind(feature: Any) -> str:
    import tensorflow as tf

    return {tf.float32: "float", tf.int64: "int", tf.string: "string"}.get(feature.dtype, "string")


def serving_feature_spec(model_path: str, transform_graph: str) -> dict[str, dict[str, Any]] | None:
    """The raw features the model's serving signature reads: ``{name: {dtype, required, kind}}``.

    From the Transform graph's raw feature spec, probed on the serving signature itself: a feature
    the signature fails without is required; one it does without, though the data always has it,
    is the label (or a column the model ignores) and is left out; optional ones stay, not required.
    ``kind`` (for drift checks) is ``categorical`` for strings and integers the pipeline's schema marks
    categorical (``int_domain.is_categorical``), else ``numeric``.
    None (and why, in the log) where the model has no Transform graph or no ``serving_default``
    signature taking serialized ``examples``: such a model is served without type coercion.
    """
    import tensorflow as tf

    if not transform_graph:
        log.warning("no Transform graph is known for this model: it is pushed without %s (the model server "
                    "will not coerce JSON values to the features' types)", FEATURE_SPEC)
        return None
    import tensorflow_transform as tft

    output = tft.TFTransformOutput(transform_graph)
    raw = output.raw_feature_spec()
    categorical = {f.name for f in output.raw_metadata.schema.feature
                   if f.HasField("int_domain") and f.int_domain.is_categorical}
    model = tf.saved_model.load(model_path)
    signature = model.signatures.get("serving_default")
    inputs = signature.structured_input_signature[1] if signature is not None else {}
    if set(inputs) != {"examples"}:
        log.warning("the model's serving_default signature does not take serialized 'examples' (%s): pushed "
                    "without %s", sorted(inputs) or "no such signature", FEATURE_SPEC)
        return None

    def serialized(skip: str | None = None) -> Any:
        features = {}
        for name, feature in raw.items():
            if name == skip:
                continue
            value = _DUMMY[_kind(feature)]
            if isinstance(value, float):
                features[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
            elif isinstance(value, int):
                features[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
            else:
                features[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        example = tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()
        return tf.constant([example], dtype=tf.string)

    def accepts(batch: Any) -> bool:
        try:
            signature(examples=batch)
            return True
        except (tf.errors.InvalidArgumentError, ValueError):
            return False

    if not accepts(serialized()):
        log.warning("the serving signature rejects an example holding every raw feature: pushed without %s",
                    FEATURE_SPEC)
        return None
    spec, left_out = {}, []
    for name, feature in sorted(raw.items()):
        always_there = isinstance(feature, tf.io.FixedLenFeature) and feature.default_value is None
        needed = not accepts(serialized(skip=name))
        if needed or not always_there:
            dtype = _kind(feature)
            kind = "categorical" if dtype == "string" or name in categorical else "numeric"
            spec[name] = {"dtype": dtype, "required": needed, "kind": kind}
        else:
            left_out.append(name)
    log.info("feature spec: %d features the serving signature reads; left out (the label, or unused): %s",
             len(spec), ", ".join(left_out) or "none")
    return spec


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
        model_path = self.GetModelPath(input_dict)
        extra_files = {}
        if not os.path.exists(os.path.join(model_path, FEATURE_SPEC)):
            spec = serving_feature_spec(model_path, config.get("transform_graph") or "")
            if spec is not None:
                extra_files[FEATURE_SPEC] = json.dumps(spec, indent=2, sort_keys=True)
        version, new = ModelRegistry(destination.filesystem.base_directory).publish(
            model_path,
            model_uri=model.uri,
            extra_files=extra_files,
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
