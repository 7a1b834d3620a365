"""Model quality on live traffic: the served predictions joined with the ground truth that arrived later."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator

from airflow_mlops.exceptions import InvalidArgumentError, MlopsException
from airflow_mlops.hooks.runtime import RuntimeHook
from airflow_mlops.hooks.seldon import SeldonHook
from airflow_mlops.serving.quality import QualityGate, QualitySpecError, model_quality, write_report
from airflow_mlops.utils.model_registry import ModelRegistry, ModelRegistryError
from airflow_mlops.utils.run_records import safe_name


class BaseModelQualityOperator(BaseOperator):
    """The quality check shared by :class:`ModelQualityOperator` and ``ModelQualitySensor`` (see those)."""

    template_fields: Sequence[str] = ("deployment_name", "model_type", "metric", "prediction_key", "window_minutes",
                                      "max_drop", "floor", "min_labels", "feedback_root")
    ui_color = "#dff5e3"

    def __init__(self, *, deployment_name: str, model_type: str = "binary", metric: str | None = None,
                 prediction_key: str | None = None, window_minutes: float | str | None = None,
                 max_drop: float | str = 0.05, floor: float | str | None = None, min_labels: int | str = 100,
                 feedback_root: str | None = None, mlops_conn_id: str = RuntimeHook.default_conn_name,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deployment_name = deployment_name
        self.model_type = model_type
        self.metric = metric
        self.prediction_key = prediction_key
        self.window_minutes = window_minutes
        self.max_drop = max_drop
        self.floor = floor
        self.min_labels = min_labels
        self.feedback_root = feedback_root
        self.mlops_conn_id = mlops_conn_id

    @cached_property
    def seldon(self) -> SeldonHook:
        return SeldonHook(mlops_conn_id=self.mlops_conn_id)

    def _number(self, name: str, kind: type = float, minimum: float | None = None) -> Any:
        value = getattr(self, name)
        if value in (None, "", "None"):
            return None
        try:
            number = kind(value)
        except (TypeError, ValueError):
            word = "an integer" if kind is int else "a number"
            raise InvalidArgumentError(f"{self.task_id}: {name} must be {word}, got {value!r}") from None
        if minimum is not None and number < minimum:
            raise InvalidArgumentError(f"{self.task_id}: {name} must be >= {minimum:g}, got {number}")
        return number

    def gate(self) -> QualityGate:
        """The rendered arguments as a :class:`QualityGate`; a wrong one fails the task naming it."""
        gate = QualityGate(model_type=self.model_type, metric=self.metric or None,
                           max_drop=self._number("max_drop", minimum=0) or 0.0, floor=self._number("floor"),
                           min_labels=self._number("min_labels", int, minimum=1) or 100)
        try:
            gate.spec  # noqa: B018 - raises for a metric the model type has not
        except QualitySpecError as err:
            raise InvalidArgumentError(f"{self.task_id}: {err}") from None
        return gate

    def check_quality(self, context: Any) -> dict[str, Any]:
        """Join the window's predictions with the labels that arrived, judge each version, write the report."""
        gate = self.gate()
        minutes = self._number("window_minutes", minimum=0)
        dep = self.seldon.get_deployment(self.deployment_name)
        if not dep.prediction_log:
            raise InvalidArgumentError(f"{self.task_id}: deployment {dep.name} logs no predictions: on Kubernetes "
                                       "serve it with the project's model-server image")
        if "://" in dep.prediction_log:
            raise InvalidArgumentError(f"{self.task_id}: deployment {dep.name} logs to {dep.prediction_log}; the "
                                       "quality check reads a prediction log on a path Airflow sees")
        blessed: dict[int, float | None] = {}
        if dep.model_root and "://" not in dep.model_root:
            try:
                blessed = {v.version: v.metrics.get(gate.spec.key) for v in ModelRegistry(dep.model_root).versions()}
            except ModelRegistryError as err:
                raise MlopsException(f"{self.task_id}: {err}") from None
        root = self.feedback_root or self.seldon.feedback_root
        try:
            report = model_quality(dep.prediction_log, gate, blessed=blessed, feedback_root=root, minutes=minutes,
                                   prediction_key=self.prediction_key or None, serving=dep.version)
        except QualitySpecError as err:
            raise InvalidArgumentError(f"{self.task_id}: {err}") from None
        stamp = safe_name(context.get("run_id") or datetime.now(timezone.utc).isoformat())
        report["deployment"], report["feedback_root"] = dep.name, root
        report.update(write_report(report, self.seldon.runtime_hook.state_dir / "quality" / dep.name, stamp))
        join = report["join"]
        self.log.info("joined %d served rows (%s) with %d labels received (%s): %d labelled; ignored: %d of unknown "
                      "requests, %d duplicates (%d conflicting), %d outside the window, %d malformed",
                      join["served_rows"], dep.prediction_log, join["labels_received"], root, join["labelled_rows"],
                      join["unknown_ids"], join["duplicates"], join["conflicting_duplicates"], join["outside_window"],
                      join["malformed"])
        for place in join["malformed_places"]:
            self.log.warning("malformed label: %s", place)
        for name, version in sorted(report["versions"].items(), key=lambda kv: int(kv[0])):
            value = "n/a" if version["value"] is None else f"{version['value']:.4f}"
            blessed_value = version["blessed_value"]
            line = (f"model version {name}: {version['metric']} = {value} on {version['samples']} labelled rows "
                    f"(blessed with {'n/a' if blessed_value is None else f'{blessed_value:.4f}'}): "
                    f"{version['status'].upper()}" + (f" ({version['reason']})" if version["reason"] else ""))
            (self.log.warning if version["status"] == "decayed" else self.log.info)(line)
        self.log.info("report: %s, plot: %s", report["report"], report["plot"])
        return report


class ModelQualityOperator(BaseModelQualityOperator):
    """Judge a deployment's served predictions against the ground truth that has arrived since.

    The truth arrives by the model server's feedback endpoint (``POST /api/v1.0/feedback`` with
    the prediction's ``meta.puid``) and as outcome files (``*.csv``/``*.jsonl`` with
    ``request_id``, ``label`` and optionally ``row``) under ``feedback_root``. Each model version
    that served in the window is judged on its own labelled rows: the task type's ``metric``
    against the value its registry record says it was blessed with (``max_drop`` tolerated) and an
    absolute ``floor``. The result (XCom) has ``status``: ``decayed`` (any version; with the drop
    and the sample size), ``ok``, or ``insufficient_labels`` (fewer than ``min_labels``: said,
    never a false alarm), per-version details and the join's counts (labels of unknown requests,
    duplicates, malformed rows: ignored and counted). A JSON report and an SVG plot of the metric
    over time per version are written to ``{state_dir}/quality/<deployment>/``. ``status`` is the
    version the deployment serves now (an older version's decay is reported, not acted on: it no
    longer serves). The task succeeds whatever the status; the monitor DAG turns ``decayed`` into a
    retraining request.

    :param deployment_name: the deployment whose predictions are judged (templated).
    :param model_type: ``binary``, ``multiclass`` or ``regression`` (templated).
    :param metric: one of the model type's (AUC, BinaryAccuracy, Precision, Recall;
        SparseCategoricalAccuracy; MeanSquaredError, MeanAbsoluteError, RootMeanSquaredError);
        empty: the blessing gate's default (templated).
    :param prediction_key: the server's output holding the prediction; empty: its first (templated).
    :param window_minutes: judge the predictions of the last N minutes; empty: all (templated).
    :param max_drop: how much worse than the blessed value is tolerated (templated).
    :param floor: the worst acceptable value, whatever the blessed one (templated).
    :param min_labels: labelled rows a version needs to be judged (templated).
    :param feedback_root: where outcome files land; default ``[mlops] feedback_root``, else
        ``{state_dir}/feedback`` (templated).
    """

    def execute(self, context: Any) -> dict[str, Any]:
        return self.check_quality(context)
