"""The gate's model types and metrics (airflow_mlops.evaluation), shared by the operator and the runtime."""

from __future__ import annotations

import pytest

from airflow_mlops.evaluation import (
    DEFAULT_METRIC,
    METRICS,
    MODEL_TYPES,
    EvaluationSpecError,
    check_gate,
    check_output,
    metrics_for,
)


def test_every_model_type_has_its_metrics_and_a_default():
    assert metrics_for("binary")[:2] == ["AUC", "AUCPrecisionRecall"]
    assert {"SparseCategoricalAccuracy", "CategoricalAccuracy"} <= set(metrics_for("multiclass"))
    assert {"MeanSquaredError", "MeanAbsoluteError", "RootMeanSquaredError"} == set(metrics_for("regression"))
    for model_type in MODEL_TYPES:
        assert DEFAULT_METRIC[model_type] in metrics_for(model_type)
    assert not any(METRICS[m].higher_is_better for m in metrics_for("regression"))


def test_metric_keys_are_the_names_tfma_reports():
    assert [METRICS[m].key for m in ("AUC", "AUCPrecisionRecall", "BinaryAccuracy", "SparseCategoricalAccuracy",
                                     "RootMeanSquaredError")] == \
        ["auc", "auc_precision_recall", "binary_accuracy", "sparse_categorical_accuracy", "root_mean_squared_error"]


def test_directions():
    assert check_gate("binary", "AUC") is True
    assert check_gate("regression", "MeanSquaredError", threshold=12.5) is False
    assert check_gate("regression", "MeanSquaredError", "higher") is True


@pytest.mark.parametrize(("model_type", "shape", "message"), [
    ("binary", [None, 3], r"AUC \(binary\) needs one value per example, but the model's output 'outputs' has shape "
                          r"\[None, 3\] \(3 values per example\): for a 3-class model set model_type=multiclass"),
    ("multiclass", [None, 1], r"needs one score per class, but the model's output 'outputs' has shape \[None, 1\]"),
    ("multiclass", [None], r"has shape \[None\]"),
])
def test_outputs_that_do_not_fit_the_metric_are_named_with_their_shape(model_type, shape, message):
    metric = {"binary": "AUC", "multiclass": "SparseCategoricalAccuracy"}[model_type]
    with pytest.raises(EvaluationSpecError, match=message):
        check_output(model_type, metric, "outputs", shape)


def test_fitting_outputs_pass():
    check_output("binary", "AUC", "probabilities", [None, 1])
    check_output("regression", "MeanSquaredError", "y", [None])
    check_output("multiclass", "SparseCategoricalAccuracy", "outputs", [None, 3])
