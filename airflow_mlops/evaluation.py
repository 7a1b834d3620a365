"""What the blessing gate knows about model types and metrics (standard library only).

Shared by the Airflow side (``EvaluatorOperator`` checks its arguments with it, the training
DAG's trigger form lists the metrics) and the TFX runtime (the Evaluator builds its TFMA
``EvalConfig`` and checks the model's outputs with it), so the two cannot disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MODEL_TYPES = ("binary", "multiclass", "regression")
DIRECTIONS = ("auto", "higher", "lower")


@dataclass(frozen=True)
class Metric:
    """A TFMA metric the gate can use.

    :param name: TFMA's class name (``MetricConfig.class_name``).
    :param model_types: the model types it fits.
    :param higher_is_better: its natural direction.
    :param unit_interval: its values lie in [0, 1] (so must a threshold).
    """

    name: str
    model_types: tuple[str, ...]
    higher_is_better: bool
    unit_interval: bool

    @property
    def key(self) -> str:
        """The name TFMA reports its values under (``AUCPrecisionRecall`` → ``auc_precision_recall``)."""
        return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", self.name).lower()


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("AUC", ("binary",), True, True),
        Metric("AUCPrecisionRecall", ("binary",), True, True),
        Metric("BinaryAccuracy", ("binary",), True, True),
        Metric("Precision", ("binary",), True, True),
        Metric("Recall", ("binary",), True, True),
        Metric("SparseCategoricalAccuracy", ("multiclass",), True, True),
        Metric("CategoricalAccuracy", ("multiclass",), True, True),
        Metric("MeanSquaredError", ("regression",), False, False),
        Metric("MeanAbsoluteError", ("regression",), False, False),
        Metric("RootMeanSquaredError", ("regression",), False, False),
    )
}

#: Metrics reported beside the gated one, by model type (per class for multi-class: one-vs-rest).
REPORTED = {
    "binary": ("ExampleCount", "AUC", "BinaryAccuracy", "Precision", "Recall"),
    "multiclass": ("ExampleCount", "SparseCategoricalAccuracy"),
    "regression": ("ExampleCount", "MeanSquaredError", "MeanAbsoluteError", "RootMeanSquaredError"),
}
#: Per-class metrics of a multi-class model (TFMA binarization by class id).
PER_CLASS = ("Precision", "Recall")

DEFAULT_METRIC = {"binary": "AUC", "multiclass": "SparseCategoricalAccuracy", "regression": "MeanSquaredError"}


class EvaluationSpecError(ValueError):
    """The model type, metric, direction or threshold do not fit together; the message says what to set."""


def metrics_for(model_type: str) -> list[str]:
    return [m.name for m in METRICS.values() if model_type in m.model_types]


def check_gate(model_type: str, metric: str, direction: str = "auto", threshold: float | None = None) -> bool:
    """Check that the gate's settings fit; return whether higher is better."""
    if model_type not in MODEL_TYPES:
        raise EvaluationSpecError(f"model_type must be one of {', '.join(MODEL_TYPES)}, got {model_type!r}")
    if metric not in METRICS:
        raise EvaluationSpecError(f"metric {metric!r} is not one the gate knows; for model_type {model_type!r} use one "
                                  f"of {', '.join(metrics_for(model_type))} (or give a full eval_config)")
    spec = METRICS[metric]
    if model_type not in spec.model_types:
        raise EvaluationSpecError(
            f"metric {metric} is for {' or '.join(spec.model_types)} models, not {model_type}: "
            f"use one of {', '.join(metrics_for(model_type))}, or set model_type")
    if direction not in DIRECTIONS:
        raise EvaluationSpecError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    higher = spec.higher_is_better if direction == "auto" else direction == "higher"
    if threshold is not None:
        if spec.unit_interval and not 0 <= threshold <= 1:
            raise EvaluationSpecError(f"threshold of {metric} must be in [0, 1], got {threshold:g}")
        if threshold < 0:
            raise EvaluationSpecError(f"threshold of {metric} must be >= 0, got {threshold:g}")
    return higher


def check_output(model_type: str, metric: str, output: str, shape: list[int | None]) -> None:
    """Refuse a gate whose metric cannot read the model's output ``output`` of ``shape`` (batch first)."""
    width = shape[-1] if len(shape) > 1 else 1
    shown = "[" + ", ".join("None" if d is None else str(d) for d in shape) + "]"
    if model_type in ("binary", "regression") and width not in (1, None):
        raise EvaluationSpecError(
            f"metric {metric} ({model_type}) needs one value per example, but the model's output {output!r} has shape "
            f"{shown} ({width} values per example): for a {width}-class model set model_type=multiclass and a "
            f"multi-class metric ({', '.join(metrics_for('multiclass'))})")
    if model_type == "multiclass" and width == 1:
        raise EvaluationSpecError(
            f"metric {metric} (multiclass) needs one score per class, but the model's output {output!r} has shape "
            f"{shown}: for a single score set model_type=binary or regression")
