"""One deployment interface, two implementations: a model server on this machine, or a SeldonDeployment.

The deploy, promote, rollback, undeploy and health-check operators and the readiness sensor
call :class:`DeploymentBackend` and never ask which backend runs: :func:`deployment_backend`
picks it once, from ``[mlops] backend`` (through :class:`~airflow_mlops.hooks.seldon.SeldonHook`).
Every operation returns one :class:`DeploymentResult`; an operation a backend cannot do raises
:class:`UnsupportedOperation`, whose message always has the same shape: what cannot be done,
by which backend, and what to do instead. Runs on the Airflow side (no ML library).
"""

from __future__ import annotations

import dataclasses
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_mlops.exceptions import InvalidArgumentError, MlopsException, SeldonDeployError

if TYPE_CHECKING:
    from airflow.triggers.base import BaseTrigger

    from airflow_mlops.hooks.seldon import SeldonHook
    from airflow_mlops.serving.local import LocalServing
    from airflow_mlops.serving.registry import LocalDeployment

log = logging.getLogger(__name__)


class UnsupportedOperation(InvalidArgumentError):
    """The deployment backend cannot do this; the task fails without retrying."""

    def __init__(self, backend: str, operation: str, instead: str):
        super().__init__(f"the {backend} deployment backend cannot {operation}: {instead}")
        self.backend, self.operation, self.instead = backend, operation, instead


@dataclass(frozen=True)
class DeployRequest:
    """What to serve, and how (the options a backend does not use must be left at their defaults)."""

    name: str
    model_root: str
    version: int | str  # a number, or "latest"
    replicas: int = 1
    resources: dict[str, Any] | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    canary_traffic: int | None = None
    shadow: bool = False
    image: str | None = None
    timeout: float = 600.0
    poll_interval: float = 5.0
    by: dict[str, str] | None = None  # who or what asks (dag_id, run_id, task_id): kept in the history


@dataclass(frozen=True)
class DeploymentResult:
    """The state of a deployment after an operation, whichever backend did it (the operators' XCom).

    :param changed: the operation changed what is served (False: that version was already served).
    :param traffic: predictor → percent of the traffic (one predictor locally).
    :param stopped: for undeploy: something was running and was stopped.
    """

    name: str
    backend: str
    version: int | None
    changed: bool = True
    url: str | None = None
    namespace: str | None = None
    traffic: dict[str, int] = field(default_factory=dict)
    model_path: str | None = None
    prediction_log: str | None = None
    stopped: bool | None = None
    status: str | None = None
    predictors: list[dict[str, Any]] = field(default_factory=list)  # name, version, traffic, shadow
    history: list[dict[str, Any]] = field(default_factory=list)  # version, at, action, by (where kept)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class HealthInputs:
    """What a health check judges: the served version, the prediction log, and the server's own
    ``/metrics`` text where Airflow can read it (None on Kubernetes: Prometheus scrapes the pods)."""

    name: str
    version: int | None
    url: str | None
    prediction_log: str | None
    metrics_text: str | None


class DeploymentBackend(ABC):
    """Where deployments live. Implementations: :class:`LocalServerBackend`, :class:`SeldonDeploymentBackend`."""

    kind: ClassVar[str]

    def __init__(self, hook: SeldonHook):
        self.hook = hook

    def unsupported(self, operation: str, instead: str) -> UnsupportedOperation:
        return UnsupportedOperation(self.kind, operation, instead)

    @abstractmethod
    def deploy(self, request: DeployRequest) -> DeploymentResult:
        """Serve ``request.version`` (or run it as a canary or a shadow beside what is served)."""

    @abstractmethod
    def promote(self, name: str, version: int, *, timeout: float, poll_interval: float) -> DeploymentResult:
        """Give all traffic to ``version``'s predictor and remove the others."""

    @abstractmethod
    def rollback(self, name: str, version: int | None, *, by: dict[str, str] | None = None) -> DeploymentResult:
        """Serve an earlier version again: ``version``, or (None) the one served before the current one.
        ``by`` (who or what asks: dag_id, run_id, task_id) is kept in the deployment's history."""

    @abstractmethod
    def undeploy(self, name: str, *, by: dict[str, str] | None = None) -> DeploymentResult:
        """Stop serving ``name`` (records and prediction logs are kept)."""

    @abstractmethod
    def names(self) -> list[str]:
        """The deployments there are (sorted)."""

    @abstractmethod
    def describe(self, name: str) -> DeploymentResult:
        """What deployment ``name`` is now: version, status, predictors and traffic, history where kept."""

    @abstractmethod
    def record(self, name: str) -> LocalDeployment:
        """What monitoring needs of deployment ``name``: its served version, model path, prediction log."""

    @abstractmethod
    def health_inputs(self, name: str) -> HealthInputs:
        """What a health check of ``name`` judges; raise :class:`MlopsException` when it does not serve."""

    @abstractmethod
    def ready(self, name: str, expected: int | None) -> bool:
        """``name`` serves (version ``expected``, when given); raise when it failed for good."""

    @abstractmethod
    def readiness_trigger(self, name: str, expected: int | None, *, poll_interval: float,
                          timeout: float) -> BaseTrigger:
        """A trigger that fires once :meth:`ready` would say so (for deferrable sensors)."""

    def cancel(self) -> str | None:
        """Undo the operation in progress (a task killed while waiting); what was done, or None."""
        return None


class LocalServerBackend(DeploymentBackend):
    """A long-lived model server on this machine per deployment (:class:`~airflow_mlops.serving.local.LocalServing`)."""

    kind = "local"

    def _result(self, dep: LocalDeployment, changed: bool, stopped: bool | None = None) -> DeploymentResult:
        return DeploymentResult(name=dep.name, backend=self.kind, version=dep.version, changed=changed, url=dep.url,
                                traffic={"local": 100} if dep.version is not None else {},
                                model_path=dep.model_path, prediction_log=dep.prediction_log, stopped=stopped)

    @cached_property
    def servers(self) -> LocalServing:
        """The model servers of this machine, one per deployment (started in the serving runtime)."""
        from airflow_mlops.serving.local import LocalServing

        return LocalServing(registry=self.hook.registry, command=self._server_command,
                            prediction_log_root=self.hook.prediction_log_root)

    def _server_command(self, deployment_dir: str, name: str, host: str, port: int, prediction_log: str):
        import airflow_mlops
        from airflow_mlops.runtimes.local import runtime_command

        install = self.hook.runtime_hook.get_runtime()
        package_parent = str(Path(airflow_mlops.__file__).resolve().parent.parent)
        env = {
            "PYTHONPATH": package_parent,
            "PYTHONUNBUFFERED": "1",
            "TF_CPP_MIN_LOG_LEVEL": "1",
            "SELDON_DEPLOYMENT_ID": name,  # labels of seldon-core's Prometheus metrics
            "PREDICTOR_ID": "local",
            "PREDICTIVE_UNIT_ID": "model",
            "INCLUDE_METRICS_IN_CLIENT_RESPONSE": "false",
        }
        argv = ["python", "-m", "airflow_mlops.runtime_side.model_server.server", deployment_dir, "--name", name,
                "--host", host, "--port", str(port), "--prediction-log", prediction_log]
        binds = [package_parent, str(self.hook.runtime_hook.state_dir)]
        if "://" not in prediction_log:
            Path(prediction_log).mkdir(parents=True, exist_ok=True)
            binds.append(prediction_log)
        return runtime_command(install, argv, env=env, binds=binds)

    def _serve(self, name: str, model_root: str, version: int | str, *, host: str, port: int | None,
               action: str, by: dict[str, str] | None = None) -> DeploymentResult:
        from airflow_mlops.serving.local import DeployFailed
        from airflow_mlops.serving.registry import DeploymentError

        model = self.hook.resolve_version(model_root, version)
        try:
            dep, changed = self.servers.deploy(name, model, host=host, port=port, model_root=model_root, action=action,
                                                   by=by)
        except DeploymentError as err:
            raise InvalidArgumentError(str(err)) from None
        except DeployFailed as err:
            raise SeldonDeployError(str(err)) from None
        return self._result(dep, changed)

    def deploy(self, request: DeployRequest) -> DeploymentResult:
        if request.canary_traffic or request.shadow:
            raise self.unsupported(
                "run a canary or a shadow (canary_traffic, shadow)",
                "a new version replaces the old one atomically here (no failed request), and a rollback is one task "
                "away; use backend = kubernetes for canaries and shadows")
        if request.replicas != 1 or request.resources or request.image:
            log.warning("replicas, resources and image apply on Kubernetes; locally one model server serves")
        return self._serve(request.name, request.model_root, request.version, host=request.host, port=request.port,
                           action="deploy", by=request.by)

    def promote(self, name: str, version: int, *, timeout: float, poll_interval: float) -> DeploymentResult:
        raise self.unsupported("promote a canary", "there are no canaries here: deploy the version "
                               "(SeldonDeployOperator), which replaces the served one atomically")

    def rollback(self, name: str, version: int | None, *, by: dict[str, str] | None = None) -> DeploymentResult:
        """Serve an earlier version again: ``version``, or the one served before the current one."""
        from airflow_mlops.serving.local import DeployFailed

        dep = self.record(name)
        if dep.model_root is None:
            raise SeldonDeployError(f"deployment {name!r} has no model root recorded")
        try:
            target = version if version not in (None, "", "previous") else self.servers.previous_version(name)
        except DeployFailed as err:
            raise InvalidArgumentError(str(err)) from None
        return self._serve(name, dep.model_root, target, host=dep.host, port=dep.port, action="rollback",
                           by=by)

    def undeploy(self, name: str, *, by: dict[str, str] | None = None) -> DeploymentResult:
        dep = self.record(name)
        stopped = self.servers.undeploy(name, by=by)
        return self._result(dep, changed=stopped, stopped=stopped)

    def names(self) -> list[str]:
        return self.hook.registry.names()

    def describe(self, name: str) -> DeploymentResult:
        dep = self.record(name)
        result = self._result(dep, changed=False)
        predictors = [{"name": "local", "version": dep.version, "traffic": 100, "shadow": False}]
        return dataclasses.replace(result, status=dep.status, history=list(dep.history),
                                   predictors=predictors if dep.version is not None else [])

    def record(self, name: str) -> LocalDeployment:
        """The record of deployment ``name`` (``deployments/<name>/deployment.json``)."""
        from airflow_mlops.serving.registry import DeploymentError

        try:
            dep = self.hook.registry.get(name)
        except DeploymentError as err:
            raise InvalidArgumentError(str(err)) from None
        if dep is None:
            raise InvalidArgumentError(f"deployment {name!r} does not exist (known: "
                                       f"{self.hook.registry.names() or 'none'})")
        return dep

    def status(self, name: str) -> dict[str, Any]:
        """What the deployment's server says (running, the version it serves, a load error)."""
        return self.servers.status(name)

    def server_metrics(self, name: str, timeout: float = 5.0) -> str | None:
        """The Prometheus text of the deployment's ``/metrics``; None when the server does not answer."""
        import urllib.error
        import urllib.request

        dep = self.record(name)
        try:
            with urllib.request.urlopen(f"{dep.url}/metrics", timeout=timeout) as response:
                return response.read().decode()
        except (OSError, urllib.error.URLError):
            return None

    def health_inputs(self, name: str) -> HealthInputs:
        dep = self.record(name)
        status = self.status(name)
        if not status.get("running") or status.get("serving") is None:
            raise MlopsException(f"deployment {dep.name} is not serving (running={status.get('running')}, "
                                 f"server: {status.get('server')}); its log: {self.hook.registry.log_file(dep.name)}")
        text = self.server_metrics(dep.name)
        if text is None:
            raise MlopsException(f"deployment {dep.name}: {dep.url}/metrics does not answer")
        return HealthInputs(name=dep.name, version=status["serving"], url=dep.url, prediction_log=dep.prediction_log,
                            metrics_text=text)

    def ready(self, name: str, expected: int | None) -> bool:
        status = self.status(name)
        serving = status.get("serving")
        log.info("deployment %s: running=%s, serving version %s (waiting for %s)", name, status.get("running"),
                 serving, expected if expected is not None else "any")
        error = (status.get("server") or {}).get("error") or {}
        if expected is not None and error.get("version") == expected:
            raise MlopsException(f"deployment {name}: version {expected} failed to load: {error.get('message')}")
        return bool(status.get("running")) and serving is not None and expected in (None, serving)

    def readiness_trigger(self, name: str, expected: int | None, *, poll_interval: float,
                          timeout: float) -> BaseTrigger:
        from airflow_mlops.triggers.seldon import SeldonDeploymentTrigger

        dep = self.record(name)
        return SeldonDeploymentTrigger(url=dep.url, version=expected, poll_interval=poll_interval, timeout=timeout)


def _traffic(applied: dict[str, Any]) -> dict[str, int]:
    """Predictor name → traffic share of an applied SeldonDeployment."""
    return {p["name"]: p.get("traffic", 0) for p in applied.get("spec", {}).get("predictors", [])}


class SeldonDeploymentBackend(DeploymentBackend):
    """A ``SeldonDeployment`` per deployment, through the Kubernetes connection (Seldon Core v1)."""

    kind = "kubernetes"

    def _applied(self, name: str, version: int, applied: dict[str, Any]) -> DeploymentResult:
        return DeploymentResult(name=name, backend=self.kind, version=version, namespace=self.hook.namespace,
                                traffic=_traffic(applied))

    def deploy(self, request: DeployRequest) -> DeploymentResult:
        if request.version == "latest":
            raise InvalidArgumentError("on Kubernetes model_version must be a number")
        root = self.hook.kube_model_root(request.model_root)
        image = request.image or self.hook.runtime_hook.settings.kubernetes_serving_image or None
        applied = self.hook.kube_deploy(request.name, root, int(request.version), replicas=request.replicas,
                                        resources=request.resources, canary_traffic=request.canary_traffic,
                                        shadow=request.shadow, image=image, timeout=request.timeout,
                                        poll_interval=request.poll_interval)
        return self._applied(request.name, int(request.version), applied)

    def promote(self, name: str, version: int, *, timeout: float, poll_interval: float) -> DeploymentResult:
        applied = self.hook.kube_promote(name, version, timeout=timeout, poll_interval=poll_interval)
        return self._applied(name, version, applied)

    def rollback(self, name: str, version: int | None, *, by: dict[str, str] | None = None) -> DeploymentResult:
        raise self.unsupported("roll back", "deploy the earlier version with SeldonDeployOperator (a failed rollout "
                               "is restored automatically)")

    def undeploy(self, name: str, *, by: dict[str, str] | None = None) -> DeploymentResult:
        deleted = self.hook.kube_delete(name)
        return DeploymentResult(name=name, backend=self.kind, version=None, changed=deleted,
                                namespace=self.hook.namespace, stopped=deleted)

    def names(self) -> list[str]:
        return self.hook.kube_names()

    def describe(self, name: str) -> DeploymentResult:
        from airflow_mlops.serving.kubernetes import spec_from_manifest

        obj = self.hook.kube_object(name)  # read once: the record and the predictors come from it
        dep = self.hook.kube_record(name, obj)
        predictors = [{"name": p.name, "version": p.model_version, "traffic": p.traffic, "shadow": p.shadow}
                      for p in spec_from_manifest(obj).predictors]
        return DeploymentResult(name=name, backend=self.kind, version=dep.version, changed=False,
                                namespace=self.hook.namespace, traffic=_traffic(obj), model_path=dep.model_path,
                                prediction_log=dep.prediction_log, status=dep.status, predictors=predictors)

    def record(self, name: str) -> LocalDeployment:
        return self.hook.kube_record(name)

    def health_inputs(self, name: str) -> HealthInputs:
        # the pods' /metrics are Seldon's (Prometheus scrapes them); the window of the prediction log is judged
        dep = self.hook.get_deployment(name)
        if dep.status != "available":
            raise MlopsException(f"SeldonDeployment {self.hook.namespace}/{dep.name} is not Available ({dep.status})")
        if not dep.prediction_log:
            raise InvalidArgumentError(
                f"deployment {dep.name} logs no predictions: serve it with the project's model-server image "
                "([mlops] kubernetes_serving_image) to check its health here")
        return HealthInputs(name=dep.name, version=dep.version, url=None, prediction_log=dep.prediction_log,
                            metrics_text=None)

    def ready(self, name: str, expected: int | None) -> bool:
        from airflow_mlops.serving.manifest import deployment_state, is_ready

        where = f"SeldonDeployment {self.hook.namespace}/{name}"
        obj = self.hook.kube.get(name, self.hook.namespace)
        if obj is None:
            raise MlopsException(f"{where} does not exist")
        state, description = deployment_state(obj)
        log.info("%s: %s %s", where, state, description)
        if state == "Failed":
            raise MlopsException(f"{where} failed: {description}")
        return is_ready(obj)

    def readiness_trigger(self, name: str, expected: int | None, *, poll_interval: float,
                          timeout: float) -> BaseTrigger:
        from airflow_mlops.triggers.seldon import SeldonDeploymentKubernetesTrigger

        return SeldonDeploymentKubernetesTrigger(
            name=name, namespace=self.hook.namespace,
            kubernetes_conn_id=self.hook.runtime_hook.settings.kubernetes_conn_id,
            poll_interval=poll_interval, timeout=timeout)

    def cancel(self) -> str | None:
        return self.hook.kube_cancel()


BACKENDS: dict[str, type[DeploymentBackend]] = {b.kind: b for b in (LocalServerBackend, SeldonDeploymentBackend)}


def deployment_backend(hook: SeldonHook) -> DeploymentBackend:
    """The deployment backend ``hook``'s settings name (``[mlops] backend``)."""
    kind = hook.runtime_hook.backend
    if kind not in BACKENDS:
        raise InvalidArgumentError(f"[mlops] backend {kind!r} has no deployment backend; known: {sorted(BACKENDS)}")
    return BACKENDS[kind](hook)
