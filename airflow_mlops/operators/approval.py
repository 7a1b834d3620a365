"""An optional human approval between pushing a model version and deploying it.

:class:`ModelApprovalOperator` is the standard provider's Human-in-the-loop
``ApprovalOperator`` (options ``Approve`` and ``Reject``) with what a reviewer needs to
decide: the pushed version's metrics beside those of the version the deployment serves
now, and the Evaluator's gate. The decision (who, why, when) is written into the version's
record in the model registry; a rejection skips the tasks downstream (deploy). When the
approval is not required the task succeeds at once and asks nobody.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.providers.standard.exceptions import HITLRejectException
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk.definitions.param import Param, ParamsDict
from airflow.sdk.exceptions import DownstreamTasksSkipped

from airflow_mlops.exceptions import InvalidArgumentError
from airflow_mlops.hooks.seldon import SeldonHook
from airflow_mlops.utils.model_registry import ModelRegistry, ModelRegistryError, ModelVersion

def _required(task_id: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise InvalidArgumentError(f"{task_id}: required must be a boolean (True/False, or the rendered "
                               f"'{{{{ params.require_approval }}}}'), got {value!r}")


def _metric_table(candidate: ModelVersion, served: ModelVersion | None) -> str:
    names = sorted(set(candidate.metrics) | set(served.metrics if served else {}))
    if not names:
        return "_No metrics were recorded for these versions._"

    def cell(metrics: dict[str, Any], name: str) -> str:
        value = metrics.get(name)
        return f"{value:.4f}" if isinstance(value, int | float) else ("–" if value is None else str(value))

    head = f"| metric | candidate (v{candidate.version}) |" + (f" served now (v{served.version}) |" if served else "")
    rule = "|---|---:|" + ("---:|" if served else "")
    rows = [f"| {name} | {cell(candidate.metrics, name)} |" + (f" {cell(served.metrics, name)} |" if served else "")
            for name in names]
    return "\n".join([head, rule, *rows])


class ModelApprovalOperator(ApprovalOperator):
    """Ask a human to approve deploying the version the Pusher pushed, when ``required``.

    Not required: succeeds at once (XCom ``{"required": False, "approved": True}``). Required:
    the task waits for a human (``Approve`` or ``Reject``, and an optional reason) in the UI's
    Required Actions or through the REST API; the decision goes into the version's registry
    record (``approval``). ``Reject`` skips the tasks downstream (deploy).

    :param required: ask a human (templated; a bool, or ``"True"``/``"False"`` as
        ``{{ params.require_approval }}`` renders).
    :param deployment_name: the deployment the version would be served as (templated).
    :param evaluation_task_id: the Evaluator task, whose XCom has the blessing gate.
    :param push_task_id: the Pusher task, whose XCom has ``model_version`` and ``pushed_destination``.
    :param mlops_conn_id: the mlops connection (settings: state directory, backend).

    Other arguments are the ``ApprovalOperator``'s (``response_timeout``, ``assigned_users``, ``notifiers``, …).
    """

    template_fields: Sequence[str] = ("required", "deployment_name")  # the subject and body are built in execute
    ui_color = "#fdf1d6"

    def __init__(self, *, required: bool | str = False, deployment_name: str, evaluation_task_id: str = "Evaluator",
                 push_task_id: str = "Pusher", mlops_conn_id: str = SeldonHook.default_conn_name,
                 **kwargs: Any) -> None:
        kwargs.setdefault("subject", "Deploy the pushed model version?")
        # the form's one field; the DAG's params are in kwargs already (the parent keeps only the task's)
        params = ParamsDict(kwargs.pop("params", None) or {})
        params["reason"] = Param("", type=["null", "string"], title="Reason", source="task",
                                 description="Why you approve or reject (optional).")
        super().__init__(params=params, **kwargs)
        self.required = required
        self.deployment_name = deployment_name
        self.evaluation_task_id = evaluation_task_id
        self.push_task_id = push_task_id
        self.mlops_conn_id = mlops_conn_id

    # -- what is being approved ------------------------------------------------------------
    def _candidate(self, context: Any) -> tuple[ModelRegistry, ModelVersion]:
        pushed = context["ti"].xcom_pull(task_ids=self.push_task_id) or {}
        if not pushed.get("model_version") or not pushed.get("pushed_destination"):
            raise InvalidArgumentError(f"{self.task_id}: {self.push_task_id}'s XCom has no model_version and "
                                       f"pushed_destination (got {sorted(pushed)}): nothing to approve")
        registry = ModelRegistry(Path(pushed["pushed_destination"]).parent)
        try:
            return registry, registry.get(int(pushed["model_version"]))
        except ModelRegistryError as err:
            raise InvalidArgumentError(f"{self.task_id}: {err}") from None

    def _gate(self, context: Any) -> str:
        verdict = context["ti"].xcom_pull(task_ids=self.evaluation_task_id) or {}
        gate = verdict.get("gate") or {}
        if not gate:
            return f"_{self.evaluation_task_id} reported no gate._"
        if gate.get("eval_config"):
            rule = f"the thresholds of the EvalConfig `{gate['eval_config']}`"
        else:
            direction = gate.get("higher_is_better")
            better = "vs" if direction is None else (">=" if direction else "<=")
            rule = f"`{gate.get('metric')}` {better} {gate.get('threshold')}"
            if gate.get("max_regression") is not None:
                rule += f", and no worse than the served model by more than {gate['max_regression']}"
        reasons = gate.get("reasons") or []
        lines = [f"**Blessing gate** ({self.evaluation_task_id}): {rule}; "
                 f"{'blessed' if verdict.get('blessed') else 'not blessed'}."]
        lines += [f"- {reason}" for reason in reasons]
        return "\n".join(lines)

    def describe(self, context: Any) -> tuple[str, str]:
        """The subject and the Markdown body the reviewer sees."""
        _, candidate = self._candidate(context)
        pipeline = candidate.pipeline_name or Path(candidate.path).parent.name
        served, why_not = SeldonHook(mlops_conn_id=self.mlops_conn_id).served_version(self.deployment_name)
        subject = f"Deploy {pipeline} model version {candidate.version} as {self.deployment_name}?"
        serving = (f"Deployment `{self.deployment_name}` serves version {served.version} now."
                   if served else f"Deployment `{self.deployment_name}`: {why_not}.")
        body = "\n\n".join([
            f"**Candidate**: {pipeline} model version {candidate.version} (run `{candidate.run_id or '?'}`), "
            f"at `{candidate.path}`.",
            serving,
            _metric_table(candidate, served),
            self._gate(context),
            "**Approve** deploys it; **Reject** skips the deployment (say why in the reason).",
        ])
        return subject, body

    # -- the task -------------------------------------------------------------------------
    def execute(self, context: Any) -> Any:
        if not _required(self.task_id, self.required):
            self.log.info("approval not required (require_approval is off)")
            return {"required": False, "approved": True}
        self.subject, self.body = self.describe(context)
        self.log.info("%s\n%s", self.subject, self.body)
        return super().execute(context)  # waits for a human; resumes in execute_complete

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        try:
            answer = super().execute_complete(context=context, event=event)
        except (DownstreamTasksSkipped, HITLRejectException):
            # rejected: the parent skips the tasks downstream (or fails); record the decision first
            decision = self._record(context, event, approved=False)
            self.log.warning("rejected by %s: %s; the tasks downstream are skipped", decision["by"],
                             decision["reason"] or "(no reason given)")
            raise
        approved = list(answer["chosen_options"]) == [self.APPROVE]
        decision = self._record(context, event, approved=approved)
        if approved:
            self.log.info("approved by %s%s", decision["by"], f": {decision['reason']}" if decision["reason"] else "")
        else:
            self.log.warning("rejected by %s: %s", decision["by"], decision["reason"] or "(no reason given)")
        return decision

    def _record(self, context: Any, event: dict[str, Any], *, approved: bool) -> dict[str, Any]:
        """Write the decision into the candidate's registry record; return the task's XCom."""
        registry, candidate = self._candidate(context)
        user = event.get("responded_by_user") or {}
        by = user.get("name") or user.get("id") or "nobody (the timeout's default)"
        reason = str((event.get("params_input") or {}).get("reason") or "")
        at = event.get("responded_at")
        approval = {"approved": approved, "by": by, "reason": reason,
                    "at": at.timestamp() if isinstance(at, datetime) else time.time()}
        registry.annotate(candidate.version, approval=approval)
        return {"required": True, "approved": approved, "by": by, "reason": reason,
                "model_version": candidate.version}
