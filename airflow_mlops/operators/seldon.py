"""Deploy, roll back, promote and undeploy pushed model versions with Seldon Core.

Locally (the embedded default) a deployment is a long-lived model server on
127.0.0.1 that outlives the task; a new version is swapped in without a restart and
without a failed request, and a version that fails its health check is never served.
With ``backend = kubernetes`` a deployment is a ``SeldonDeployment`` (prepackaged
``TENSORFLOW_SERVER`` reading ``{model_root}/{version}``, or your model-server image),
applied and awaited until ``Available``; on ``Failed`` or a timeout the previous spec is
restored. A canary (``canary_traffic``) runs the new version beside the old one;
:class:`SeldonPromoteOperator` then moves all traffic to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator

from airflow_mlops.exceptions import InvalidArgumentError
from airflow_mlops.hooks.seldon import SeldonHook
from airflow_mlops.links.pages import DeploymentLink, page_path
from airflow_mlops.serving.backends import DeploymentResult, DeployRequest


def _version(task_id: str, value: Any, *, allow: tuple[str, ...]) -> int | str:
    if isinstance(value, str) and value.strip() in allow:
        return value.strip()
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(
            f"{task_id}: model_version must be a version number or one of {allow}, got {value!r}"
        ) from None
    if number < 1:
        raise InvalidArgumentError(f"{task_id}: model_version must be >= 1, got {number}")
    return number


class _SeldonOperator(BaseOperator):
    template_fields: Sequence[str] = ("deployment_name",)
    ui_color = "#d7ecfb"
    operator_extra_links = (DeploymentLink(),)

    @property
    def mlops_page(self) -> str:
        """The deployment's MLOps page (:class:`~airflow_mlops.links.pages.DeploymentLink`)."""
        return page_path("deployments", self.deployment_name)

    def __init__(self, *, deployment_name: str, mlops_conn_id: str = SeldonHook.default_conn_name,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deployment_name = deployment_name
        self.mlops_conn_id = mlops_conn_id

    @cached_property
    def hook(self) -> SeldonHook:
        return SeldonHook(mlops_conn_id=self.mlops_conn_id)

    def _by(self, context: Any) -> dict[str, str] | None:
        """Who asks for the change, kept in the deployment's history (the MLOps pages link the run)."""
        run_id = context.get("run_id") if context else None
        return {"dag_id": self.dag_id, "run_id": str(run_id), "task_id": self.task_id} if run_id else None

    def _returned(self, result: DeploymentResult) -> dict[str, Any]:
        """The task's XCom: the same keys whichever backend did the operation."""
        return result.as_dict()


class SeldonDeployOperator(_SeldonOperator):
    """Serve a pushed model version as deployment ``deployment_name``.

    Deploying the version already served is a no-op; another version replaces it without a
    restart; a version that fails to load or run fails the task with the server's log while
    the old version keeps serving.

    :param deployment_name: the deployment (templated; lower-case letters, digits, ``-``).
    :param pipeline_name: whose pushed models to deploy (templated); or give ``model_root``.
    :param model_root: the directory of numbered versions (templated; default from the pipeline).
    :param model_version: a version number, or ``latest`` (= ``latest_blessed``: only blessed models are
        pushed) (templated).
    :param replicas: model server replicas (Kubernetes; one server locally).
    :param resources: container resources (Kubernetes only).
    :param host: address a local server listens on (127.0.0.1; ``0.0.0.0`` exposes it).
    :param port: port of a new local server (default: a free one, kept for the deployment).
    :param canary_traffic: Kubernetes: percent of traffic for the new version beside the current one.
    :param shadow: Kubernetes: run the new version as a shadow (a copy of the traffic, answers dropped).
    :param image: Kubernetes: a model-server image instead of the prepackaged TENSORFLOW_SERVER.
    :param timeout: Kubernetes: seconds to wait for ``Available`` before the previous spec is restored.
    """

    template_fields: Sequence[str] = ("deployment_name", "pipeline_name", "model_root", "model_version")

    def __init__(self, *, pipeline_name: str | None = None, model_root: str | None = None,
                 model_version: int | str = "latest", replicas: int = 1, resources: dict[str, Any] | None = None,
                 host: str = "127.0.0.1", port: int | None = None, canary_traffic: int | None = None,
                 shadow: bool = False, image: str | None = None, timeout: float = 600.0, poll_interval: float = 5.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipeline_name = pipeline_name
        self.model_root = model_root
        self.model_version = model_version
        self.replicas = replicas
        self.resources = resources
        self.host = host
        self.port = port
        self.canary_traffic = canary_traffic
        self.shadow = shadow
        self.image = image
        self.timeout = timeout
        self.poll_interval = poll_interval

    def execute(self, context: Any) -> dict[str, Any]:
        if not self.model_root and not self.pipeline_name:
            raise InvalidArgumentError(f"{self.task_id}: give pipeline_name or model_root")
        version = _version(self.task_id, self.model_version, allow=("latest", "latest_blessed"))
        version = "latest" if version == "latest_blessed" else version  # only blessed models are pushed
        request = DeployRequest(
            name=self.deployment_name, model_root=self.hook.model_root(self.pipeline_name or "", self.model_root),
            version=version, replicas=self.replicas, resources=self.resources, host=self.host, port=self.port,
            canary_traffic=self.canary_traffic, shadow=self.shadow, image=self.image, timeout=self.timeout,
            poll_interval=self.poll_interval, by=self._by(context))
        result = self.hook.deployments.deploy(request)
        if result.changed:
            self.log.info("deployment %s serves model version %s%s; traffic %s", result.name, result.version,
                          f" at {result.url}/api/v1.0/predictions" if result.url else
                          f" (namespace {result.namespace})", result.traffic)
        return self._returned(result)

    def on_kill(self) -> None:
        """Undo the rollout being awaited (Kubernetes: the previous spec back, or a new deployment deleted)."""
        done = self.hook.deployments.cancel()
        if done:
            self.log.warning("deployment %s: the task was killed during its rollout; %s", self.deployment_name, done)


class SeldonPromoteOperator(_SeldonOperator):
    """Kubernetes: send all traffic of a canary deployment to ``model_version`` and remove the other predictors.

    :param deployment_name: the deployment (templated).
    :param model_version: the version whose predictor takes 100 % (templated).
    :param timeout: seconds to wait for ``Available`` before the previous spec is restored.
    """

    template_fields: Sequence[str] = ("deployment_name", "model_version")

    def __init__(self, *, model_version: int | str, timeout: float = 600.0, poll_interval: float = 5.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_version = model_version
        self.timeout = timeout
        self.poll_interval = poll_interval

    def execute(self, context: Any) -> dict[str, Any]:
        version = int(_version(self.task_id, self.model_version, allow=()))
        result = self.hook.deployments.promote(self.deployment_name, version, timeout=self.timeout,
                                               poll_interval=self.poll_interval)
        self.log.info("deployment %s promoted: traffic %s", self.deployment_name, result.traffic)
        return self._returned(result)


class SeldonRollbackOperator(_SeldonOperator):
    """Serve an earlier version again (the one served before the current one, or ``model_version``).

    :param deployment_name: the deployment (templated).
    :param model_version: the version to serve, or ``previous`` (templated).
    """

    template_fields: Sequence[str] = ("deployment_name", "model_version")

    def __init__(self, *, model_version: int | str = "previous", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_version = model_version

    def execute(self, context: Any) -> dict[str, Any]:
        version = _version(self.task_id, self.model_version, allow=("previous",))
        result = self.hook.deployments.rollback(self.deployment_name, None if version == "previous" else int(version),
                                                by=self._by(context))
        self.log.info("deployment %s rolled back to model version %s", result.name, result.version)
        return self._returned(result)


class SeldonUndeployOperator(_SeldonOperator):
    """Stop deployment ``deployment_name`` (its record and prediction log are kept).

    :param deployment_name: the deployment (templated).
    """

    def execute(self, context: Any) -> dict[str, Any]:
        result = self.hook.deployments.undeploy(self.deployment_name, by=self._by(context))
        self.log.info("deployment %s %s", self.deployment_name, "stopped" if result.stopped else "was not running")
        return self._returned(result)


class SeldonHealthCheckOperator(_SeldonOperator):
    """Check a deployment's health: it answers, and its error rate and p99 latency are within bounds.

    The figures come from the prediction log over the last ``window_minutes`` (failed requests
    are logged with their status, answered ones with their latency) and from the server's
    ``/metrics`` (its totals since it started); thresholds apply to the window when it has at
    least ``min_requests`` requests, else to the server's totals. A breach fails the task
    (``on_breach="fail"``) or is logged as a warning with ``healthy: false`` in the result
    (``"warn"``, for a DAG that branches or alerts on it). A server that does not answer always fails.

    :param deployment_name: the deployment (templated).
    :param window_minutes: the prediction-log window (templated).
    :param max_error_rate: highest acceptable share of failed requests, 0..1 (templated).
    :param max_p99_ms: highest acceptable p99 latency in ms (templated).
    :param min_requests: fewer requests in the window: judge by the server's totals.
    :param on_breach: ``fail`` or ``warn``.
    """

    template_fields: Sequence[str] = ("deployment_name", "window_minutes", "max_error_rate", "max_p99_ms")

    def __init__(self, *, deployment_name: str, window_minutes: float | str = 15, max_error_rate: float | str = 0.01,
                 max_p99_ms: float | str = 200.0, min_requests: int = 20, on_breach: str = "fail",
                 **kwargs: Any) -> None:
        super().__init__(deployment_name=deployment_name, **kwargs)
        self.window_minutes = window_minutes
        self.max_error_rate = max_error_rate
        self.max_p99_ms = max_p99_ms
        self.min_requests = min_requests
        self.on_breach = on_breach

    def _number(self, name: str, low: float, high: float | None = None) -> float:
        value = getattr(self, name)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"{self.task_id}: {name} must be a number, got {value!r}") from None
        if number < low or (high is not None and number > high):
            raise InvalidArgumentError(f"{self.task_id}: {name} must be in [{low}, {high if high is not None else 'inf'}]"
                                       f", got {number}")
        return number

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow_mlops.exceptions import MlopsException
        from airflow_mlops.serving.health import breaches, parse_metrics, window_health

        if self.on_breach not in ("fail", "warn"):
            raise InvalidArgumentError(f"{self.task_id}: on_breach must be 'fail' or 'warn', got {self.on_breach!r}")
        minutes = self._number("window_minutes", 0.01)
        max_error_rate, max_p99_ms = self._number("max_error_rate", 0, 1), self._number("max_p99_ms", 0)
        dep = self.hook.deployments.health_inputs(self.deployment_name)
        server = parse_metrics(dep.metrics_text) if dep.metrics_text is not None else None
        window = window_health(dep.prediction_log, minutes) if dep.prediction_log else None
        judged = window if window and (window["requests"] >= self.min_requests or server is None) else server
        if judged is None:  # neither a prediction log nor the server's /metrics: nothing to judge
            raise MlopsException(f"deployment {dep.name}: neither its prediction log nor its /metrics can be read")
        found = breaches(judged, max_error_rate, max_p99_ms)
        result = {"deployment": dep.name, "version": dep.version, "url": dep.url, "window": window,
                  "server": server, "judged_by": judged["source"], "healthy": not found, "breaches": found}
        self.log.info("deployment %s (version %s): window %s; server totals %s", dep.name, dep.version,
                      window, server)
        if found and self.on_breach == "fail":
            raise MlopsException(f"deployment {dep.name} is unhealthy: " + "; ".join(found))
        if found:
            self.log.warning("deployment %s is unhealthy: %s", dep.name, "; ".join(found))
        else:
            self.log.info("deployment %s is healthy (error rate <= %.1f%%, p99 <= %g ms, judged by the %s)", dep.name,
                          max_error_rate * 100, max_p99_ms, judged["source"])
        return result
