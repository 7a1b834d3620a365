"""Drift detection on the traffic a deployment served, against the training data of the model it serves."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator

from airflow_mlops.exceptions import InvalidArgumentError, MlopsException
from airflow_mlops.hooks.runtime import RuntimeHook, task_context
from airflow_mlops.hooks.seldon import SeldonHook
from airflow_mlops.links.pages import DriftReportLink, page_path
from airflow_mlops.shared import DETECTORS
from airflow_mlops.utils.model_registry import ModelRegistry, ModelRegistryError
from airflow_mlops.utils.run_records import safe_name


class BaseDriftCheckOperator(BaseOperator):
    """The drift check shared by :class:`DriftDetectionOperator` and ``DriftSensor`` (see those)."""

    operator_extra_links = (DriftReportLink(),)
    template_fields: Sequence[str] = ("deployment_name", "window_size", "window_minutes", "detector", "p_val",
                                      "correction")
    ui_color = "#e8dff5"

    def __init__(self, *, deployment_name: str, window_size: int | str | None = 1000,
                 window_minutes: float | str | None = None, detector: str = "TabularDrift",
                 p_val: float | str = 0.05, correction: str = "bonferroni", min_window: int = 50,
                 features: dict[str, str] | None = None, reference_rows: int = 20000,
                 mlops_conn_id: str = RuntimeHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deployment_name = deployment_name
        self.window_size = window_size
        self.window_minutes = window_minutes
        self.detector = detector
        self.p_val = p_val
        self.correction = correction
        self.min_window = min_window
        self.features = features
        self.reference_rows = reference_rows
        self.mlops_conn_id = mlops_conn_id

    @cached_property
    def seldon(self) -> SeldonHook:
        return SeldonHook(mlops_conn_id=self.mlops_conn_id)

    def _features(self, model_path: str) -> dict[str, str]:
        if self.features:
            return dict(self.features)
        spec_file = Path(model_path) / "assets.extra" / "feature_spec.json"
        if not spec_file.exists():
            raise InvalidArgumentError(f"{self.task_id}: the model at {model_path} has no assets.extra/"
                                       "feature_spec.json; pass features={name: 'numeric'|'categorical'}")
        spec = json.loads(spec_file.read_text())
        # the kind the pipeline's schema gives (the Pusher writes it), else by type
        return {name: f.get("kind") or ("categorical" if f["dtype"] == "string" else "numeric")
                for name, f in spec.items()}

    def check_drift(self, context: Any) -> dict[str, Any]:
        """Run one drift check (reference via lineage, window from the prediction log) and write its report."""
        if self.detector not in DETECTORS:
            raise InvalidArgumentError(f"{self.task_id}: detector must be one of {DETECTORS}, got {self.detector!r}")
        dep = self.seldon.get_deployment(self.deployment_name)
        if dep.version is None or dep.model_root is None or dep.model_path is None:
            raise MlopsException(f"{self.task_id}: deployment {dep.name} serves no model version yet")
        if not dep.prediction_log:
            raise InvalidArgumentError(
                f"{self.task_id}: deployment {dep.name} logs no predictions to check: on Kubernetes serve it with "
                "the project's model-server image ([mlops] kubernetes_serving_image or the deploy task's image=), "
                "not Seldon's prepackaged server")
        if "://" in dep.model_path:
            raise InvalidArgumentError(
                f"{self.task_id}: deployment {dep.name} serves {dep.model_path}, which Airflow cannot read here: "
                "the drift check reads the model's feature spec and version record from the volume claim")
        try:
            version = ModelRegistry(dep.model_root).get(dep.version)
        except ModelRegistryError as err:
            raise MlopsException(f"{self.task_id}: {err}") from None
        features = self._features(dep.model_path)
        tfx = RuntimeHook(runtime="tfx", mlops_conn_id=self.mlops_conn_id)
        work = tfx.state_dir / "drift" / dep.name / f"v{dep.version}"
        reference_file = work / "reference.jsonl"
        if not reference_file.exists():
            if version.model_artifact_id is None:
                raise MlopsException(f"{self.task_id}: model version {dep.version} has no model artifact recorded")
            found = tfx.run_step("mlmd.training_examples", {
                "metadata": tfx.metadata, "model_artifact_id": version.model_artifact_id, "features": list(features),
                "max_rows": self.reference_rows, "dest": str(reference_file)}, binds=[str(tfx.state_dir)],
                context=task_context(self, context))
            self.log.info("reference: %s training records of model version %s, from examples artifact %s (span %s)",
                          found["records"], dep.version, found["examples_artifact_id"], found["span"])
        report_dir = tfx.state_dir / "drift" / dep.name / "reports"
        report = report_dir / safe_name(context["run_id"])
        drift = RuntimeHook(runtime="drift", mlops_conn_id=self.mlops_conn_id)
        # every check reads the traffic of its moment: a pod of its own (a later poke must not adopt this one)
        check = {**task_context(self, context), "pod_key": uuid.uuid4().hex}
        result = drift.run_step("drift.detect", {
            "reference_file": str(reference_file), "prediction_log": dep.prediction_log or "",
            "window_size": int(self.window_size) if self.window_size else None,
            "window_minutes": float(self.window_minutes) if self.window_minutes else None,
            "features": features, "detector": self.detector, "p_val": float(self.p_val),
            "correction": self.correction, "min_window": self.min_window, "detector_dir": str(work / self.detector),
            "model_version": dep.version, "report_png": f"{report}.png",
        }, binds=[str(work), str(report_dir), *([dep.prediction_log] if dep.prediction_log else [])],
            context=check)
        self.log.info("window: %d records of model version %s (%s .. %s) from %s", result["window_size"],
                      dep.version, result.get("window_first"), result.get("window_last"), dep.prediction_log)
        result["deployment"] = dep.name
        result["dag_id"], result["run_id"], result["task_id"] = self.dag_id, context["run_id"], self.task_id
        self.mlops_page = page_path("drift", dep.name, report.name)
        report_dir.mkdir(parents=True, exist_ok=True)
        result["report"] = f"{report}.json"
        Path(result["report"]).write_text(json.dumps(result, indent=2, sort_keys=True))
        if result.get("skipped_features"):
            self.log.warning("not compared (no value in the training data): %s", result["skipped_features"])
        if result.get("unserved_features"):
            self.log.warning("never served in the window (every request left them out): %s",
                             ", ".join(result["unserved_features"]))
        if result["status"] == "insufficient_data":
            self.log.warning("not enough traffic to check drift: %s", result["message"])
        elif result["is_drift"]:
            self.log.warning("DRIFT in %s: %s", dep.name, ", ".join(
                f"{n} (p={result['features'][n]['p_val']:.2g})" for n in result["drifted_features"]) or "joint test")
        else:
            self.log.info("no drift in %s (threshold %.3g)", dep.name, result["threshold"])
        return result


class DriftDetectionOperator(BaseDriftCheckOperator):
    """Compare the last requests a deployment served with the training data of the model version it serves.

    The reference is found through ML Metadata lineage (pushed model → Trainer → Transform →
    the raw examples of its training split) and cached per model version; the window is read
    from the deployment's prediction log. Alibi Detect runs in the ``drift`` runtime; the
    fitted detector is saved per model version and reused. The result (``is_drift``, per-feature
    p-values and distances, window size and time range, model version) is returned (XCom) and
    written to ``{state_dir}/drift/<deployment>/reports/<run>.json``. A window smaller than
    ``min_window`` gives ``status: insufficient_data``: not drift, not a failure.

    :param deployment_name: the deployment whose traffic is checked (templated).
    :param window_size: the last N served records (templated).
    :param window_minutes: or the records of the last T minutes (templated).
    :param detector: one of :data:`DETECTORS` (templated).
    :param p_val: significance level (templated).
    :param correction: ``bonferroni`` or ``fdr`` (templated).
    :param min_window: fewer records than this is ``insufficient_data``.
    :param features: ``{name: "numeric" | "categorical"}``; default: from the model's feature spec.
    :param reference_rows: at most this many training records form the reference.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        return self.check_drift(context)
