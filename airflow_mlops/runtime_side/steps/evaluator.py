"""TFX Evaluator executor that checks the model against the EvalConfig before TFMA runs (TFX runtime).

TFMA reports a label or prediction key the model does not have, or a binary metric on a
3-class output, deep inside a Beam job ("add_input failed on _BinaryConfusionMatrixCombiner …
no value provided for label"), after minutes. This executor loads the candidate's SavedModel
first and refuses, in one line naming the value and what to set:

* a serving signature the model lacks (listing those it has);
* a ``prediction_key`` that is not among the serving signature's outputs, or none given while
  there are several;
* a ``label_key`` that is not among the outputs of the ``transform_features`` signature
  (where TFMA reads the label);
* a gated metric whose model type does not fit the output's shape
  (:func:`airflow_mlops.evaluation.check_output`).

It raises :class:`~airflow_mlops.runtimes.contract.RejectedInput`: the task fails without a retry.
"""

from __future__ import annotations

import logging
from typing import Any

from tfx.components.evaluator import executor as evaluator_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import path_utils, proto_utils

from airflow_mlops.evaluation import METRICS, PER_CLASS, EvaluationSpecError, check_output
from airflow_mlops.runtimes.contract import RejectedInput

log = logging.getLogger("airflow_mlops.evaluator")


def signature_outputs(signature: Any) -> dict[str, list[int | None]]:
    """A concrete function's outputs by name, each with its shape (batch dimension first)."""
    outputs = signature.structured_outputs
    if not isinstance(outputs, dict):
        outputs = {"output_0": outputs}
    return {name: list(tensor.shape.as_list() if tensor.shape.rank is not None else [None])
            for name, tensor in outputs.items()}


def check_model(model_path: str, eval_config: Any) -> dict[str, Any]:
    """Check the model at ``model_path`` against ``eval_config``; return what was found (logged)."""
    import tensorflow as tf

    model = tf.saved_model.load(model_path)
    spec = eval_config.model_specs[0]
    name = spec.signature_name or "serving_default"
    if name not in model.signatures:
        raise RejectedInput(f"the model has no signature {name!r} (it has: {', '.join(sorted(model.signatures))}): "
                            "export one in run_fn, or name one it has in the eval_config's signature_name")
    outputs = signature_outputs(model.signatures[name])
    problems: list[str] = []  # every wrong key at once: one run to fix them all, not one run per key
    prediction_key = spec.prediction_key
    if prediction_key and prediction_key not in outputs:
        problems.append(f"prediction_key {prediction_key!r} is not an output of the model's {name!r} signature; "
                        f"its outputs: {', '.join(sorted(outputs))}: set prediction_key to one of them")
    if not prediction_key and len(outputs) > 1:
        problems.append(f"the model's {name!r} signature has several outputs ({', '.join(sorted(outputs))}): "
                        "set prediction_key to the one holding the prediction")
    transform = list(spec.preprocessing_function_names)
    if not transform and spec.label_key and "transform_features" in model.signatures \
            and spec.label_key in signature_outputs(model.signatures["transform_features"]):
        problems.append(f"label_key {spec.label_key!r} is an output of the model's 'transform_features' signature, "
                        "but the EvalConfig reads the label from the raw examples: add "
                        'preprocessing_function_names: "transform_features" to its model_specs')
    label_source = next((f for f in transform if f in model.signatures), None)
    if spec.label_key and label_source:
        features = signature_outputs(model.signatures[label_source])
        if spec.label_key not in features:
            problems.append(f"label_key {spec.label_key!r} is not an output of the model's {label_source!r} "
                            f"signature, where TFMA reads the label; its outputs: {', '.join(sorted(features))}: "
                            "set label_key to the label's name there")
    if problems:
        raise RejectedInput("; and ".join(problems))
    output = prediction_key or next(iter(outputs))
    gated = [m.class_name for s in eval_config.metrics_specs for m in s.metrics
             if (m.HasField("threshold") or m.per_slice_thresholds) and m.class_name in METRICS
             and not s.binarize.ListFields()]
    model_type = None
    for metric in gated:
        model_type = METRICS[metric].model_types[0]
        try:
            check_output(model_type, metric, output, outputs[output])
        except EvaluationSpecError as err:
            raise RejectedInput(str(err)) from None
    found = {"signature": name, "prediction_key": output, "output_shape": outputs[output],
             "label_key": spec.label_key, "label_from": label_source, "model_type": model_type}
    log.info("model checked before TFMA: %s", found)
    return found


class CheckedEvaluatorExecutor(evaluator_executor.Executor):
    """TFX's Evaluator, after :func:`check_model` passed on the candidate model."""

    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 - TFX's name
        import tensorflow_model_analysis as tfma

        config_json = exec_properties.get(standard_component_specs.EVAL_CONFIG_KEY)
        if config_json and input_dict.get(standard_component_specs.MODEL_KEY):
            eval_config = tfma.EvalConfig()
            proto_utils.json_to_proto(config_json, eval_config)
            model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
            found = check_model(path_utils.serving_model_path(model.uri), eval_config)
            if with_per_class_metrics(eval_config, found):
                exec_properties = {**exec_properties,
                                   standard_component_specs.EVAL_CONFIG_KEY: proto_utils.proto_to_json(eval_config)}
        super().Do(input_dict, output_dict, exec_properties)


def with_per_class_metrics(eval_config: Any, found: dict[str, Any]) -> bool:
    """Add one-vs-rest :data:`~airflow_mlops.evaluation.PER_CLASS` metrics for each class of a multi-class gate."""
    import tensorflow_model_analysis as tfma
    from tensorflow_model_analysis.proto import config_pb2

    classes = found.get("output_shape", [None])[-1]
    if found.get("model_type") != "multiclass" or not classes or any(s.binarize.ListFields()
                                                                     for s in eval_config.metrics_specs):
        return False
    eval_config.metrics_specs.append(tfma.MetricsSpec(
        metrics=[tfma.MetricConfig(class_name=name) for name in PER_CLASS],
        binarize=config_pb2.BinarizationOptions(class_ids={"values": list(range(classes))}),
    ))
    return True
