"""SeldonHook: deploy, roll back and stop model servers (local servers, or SeldonDeployments on Kubernetes)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.sdk.bases.hook import BaseHook

from airflow_mlops.exceptions import InvalidArgumentError, MlopsException, SeldonDeployError
from airflow_mlops.hooks.runtime import RuntimeHook
from airflow_mlops.serving.backends import DeploymentBackend, deployment_backend
from airflow_mlops.serving.registry import DeploymentRegistry, LocalDeployment
from airflow_mlops.utils.model_registry import ModelRegistry, ModelRegistryError, ModelVersion


class SeldonHook(BaseHook):
    """Deployments of pushed model versions with the seldon-core model server.

    With ``backend = local`` a deployment is a model server on this machine
    (:class:`~airflow_mlops.serving.local.LocalServing`); with ``backend = kubernetes`` it is a
    ``SeldonDeployment`` applied through the Kubernetes connection ``kubernetes_conn_id``
    (:class:`~airflow_mlops.serving.kubernetes.SeldonKubernetesController`).

    Settings (state directory, runtime cache, …) are read like :class:`RuntimeHook`'s:
    argument → extra of the ``mlops`` connection → ``[mlops]`` → default.

    :param mlops_conn_id: connection with provider settings.
    :param runtime: the runtime the model server runs in (``serving``).
    """

    conn_name_attr = "mlops_conn_id"
    default_conn_name = "mlops_default"
    conn_type = "mlops"
    hook_name = "MLOps (Seldon deployments)"

    def __init__(self, mlops_conn_id: str | None = default_conn_name, runtime: str = "serving", **settings: Any) -> None:
        super().__init__()
        self.mlops_conn_id = mlops_conn_id
        self.runtime = runtime
        self._settings = settings

    @cached_property
    def runtime_hook(self) -> RuntimeHook:
        return RuntimeHook(runtime=self.runtime, mlops_conn_id=self.mlops_conn_id, **self._settings)

    @cached_property
    def registry(self) -> DeploymentRegistry:
        return DeploymentRegistry(self.runtime_hook.state_dir / "deployments")

    @cached_property
    def deployments(self) -> DeploymentBackend:
        """The deployment backend of the settings (a local server or a SeldonDeployment), chosen here once."""
        return deployment_backend(self)

    @cached_property
    def kubernetes_hook(self):
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        return KubernetesHook(conn_id=self.runtime_hook.settings.kubernetes_conn_id)

    @cached_property
    def kube(self):
        from airflow_mlops.serving.kubernetes import SeldonKubernetesController

        return SeldonKubernetesController(self.kubernetes_hook.api_client)

    @property
    def namespace(self) -> str:
        """The SeldonDeployments' namespace: the step pods' (:func:`~airflow_mlops.kubernetes.pods.pod_namespace`)."""
        from airflow_mlops.kubernetes.pods import pod_namespace

        return pod_namespace(self.runtime_hook.settings, self.kubernetes_hook.get_namespace)

    @property
    def crd_path(self) -> str | None:
        return self.runtime_hook.settings.seldon_crd_path or None

    def get_deployment(self, name: str) -> LocalDeployment:
        """The deployment ``name``: the local record, or (Kubernetes) one read from its SeldonDeployment."""
        return self.deployments.record(name)

    # -- versions -----------------------------------------------------------------------
    def model_root(self, pipeline_name: str, override: str | None = None) -> str:
        return self.runtime_hook.model_root(pipeline_name, override)

    def resolve_version(self, model_root: str, version: int | str) -> ModelVersion:
        try:
            return ModelRegistry(model_root).get(version)
        except ModelRegistryError as err:
            raise InvalidArgumentError(str(err)) from None

    def served_version(self, name: str) -> tuple[ModelVersion | None, str]:
        """The registry record of the version deployment ``name`` serves now; or None and why not (no such
        deployment, nothing served, versions on a path Airflow does not read, a record that cannot be read)."""
        try:
            dep = self.get_deployment(name)
        except InvalidArgumentError:  # no such deployment
            return None, "nothing is served yet"
        except MlopsException as err:
            return None, f"the deployment could not be read: {err}"
        if dep.version is None or not dep.model_root:
            return None, "nothing is served yet"
        if "://" in dep.model_root:
            return None, f"version {dep.version} is served from {dep.model_root}, which Airflow does not read"
        try:
            return ModelRegistry(dep.model_root).get(dep.version), ""
        except ModelRegistryError as err:
            return None, f"version {dep.version} is served, but its record cannot be read: {err}"

    # -- operations ---------------------------------------------------------------------
    # -- Kubernetes ---------------------------------------------------------------------
    @contextmanager
    def _kube_errors(self) -> Iterator[None]:
        """A bad spec is an :class:`InvalidArgumentError`; a failed API call or rollout a :class:`SeldonDeployError`."""
        from airflow_mlops.serving.kubernetes import SeldonKubernetesError
        from airflow_mlops.serving.manifest import ManifestError

        try:
            yield
        except ManifestError as err:
            raise InvalidArgumentError(str(err)) from None
        except SeldonKubernetesError as err:
            raise SeldonDeployError(str(err)) from None

    @property
    def prediction_log_root(self) -> str:
        """Where model servers log requests and predictions: ``[mlops] prediction_log``, else ``{state_dir}/predictions``."""
        return self.runtime_hook.settings.prediction_log or str(self.runtime_hook.state_dir / "predictions")

    @property
    def feedback_root(self) -> str:
        """Where ground-truth outcome files land: ``[mlops] feedback_root``, else ``{state_dir}/feedback``."""
        return self.runtime_hook.settings.feedback_root or str(self.runtime_hook.state_dir / "feedback")

    def prediction_log(self, name: str) -> str:
        """Where deployment ``name`` logs its requests and predictions (``prediction_log_root``/name)."""
        return f"{self.prediction_log_root.rstrip('/')}/{name}"

    def local_model_root(self, root: str) -> str:
        """``pvc://<claim>/<path>`` back to the path in the state directory (where the claim is mounted)."""
        claim = self.runtime_hook.settings.kubernetes_volume_claim
        prefix = f"pvc://{claim}"
        if claim and (root == prefix or root.startswith(prefix + "/")):
            return str(self.runtime_hook.state_dir / root[len(prefix):].lstrip("/")).rstrip("/")
        return root

    def kube_model_root(self, root: str) -> str:
        """``root`` as Seldon's model servers reach it: an object-store URL as is; a path in the state
        directory as ``pvc://<kubernetes_volume_claim>/<path in it>`` (the claim holds the state directory)."""
        if "://" in root:
            return root
        claim = self.runtime_hook.settings.kubernetes_volume_claim
        state = self.runtime_hook.state_dir
        path = Path(root)
        if claim and (path == state or state in path.parents):
            return f"pvc://{claim}/{path.relative_to(state).as_posix()}".rstrip("/")
        raise InvalidArgumentError(
            f"model root {root!r} is a path on the Airflow worker that no model server in the cluster can read: "
            "set [mlops] kubernetes_volume_claim (the claim mounted at the state directory) or give model_root as "
            "an object-storage prefix (gs://, s3://)"
        )

    def kube_deploy(self, name: str, model_root: str, version: int, *, replicas: int = 1,
                    resources: dict[str, Any] | None = None, canary_traffic: int | None = None,
                    shadow: bool = False, image: str | None = None, timeout: float = 600.0,
                    poll_interval: float = 5.0) -> dict[str, Any]:
        """Apply a SeldonDeployment serving ``{model_root}/{version}`` (or a canary of it) and wait for it.

        On ``Failed`` or a timeout the previous spec is restored and :class:`SeldonDeployError` raised.
        """
        from airflow_mlops.serving.manifest import DeploymentSpec, PredictorSpec

        if not isinstance(version, int) or isinstance(version, bool):
            raise InvalidArgumentError(f"on Kubernetes model_version must be a version number, got {version!r}")
        with self._kube_errors():
            custom: dict[str, Any] = {}
            if image:  # the project's server (or yours): it logs predictions where monitoring reads them
                custom = {"implementation": None, "image": image,
                          "env": {"DEPLOYMENT_NAME": name, "PREDICTION_LOG": self.prediction_log(name)}}
                claim = self.runtime_hook.settings.kubernetes_volume_claim
                if claim:  # models and prediction logs on the claim, mounted where Airflow sees them too
                    custom.update(volume_claim=claim, mount_path=str(self.runtime_hook.state_dir))
                    model_root = self.local_model_root(model_root)
            predictor = PredictorSpec(
                name=f"v{version}", model_version=version, model_uri=f"{model_root.rstrip('/')}/{version}",
                replicas=replicas, resources=resources, **custom,
            )
            if shadow:  # the new version gets a copy of the traffic; its answers are not returned
                from airflow_mlops.serving.kubernetes import spec_from_manifest
                from airflow_mlops.serving.manifest import shadow as with_shadow

                current = self.kube.get(name, self.namespace)
                if current is None:
                    raise InvalidArgumentError(f"a shadow needs an existing deployment; {name!r} does not exist")
                spec = with_shadow(spec_from_manifest(current), predictor)
                return self.kube.deploy(spec, crd_path=self.crd_path, timeout=timeout, poll_interval=poll_interval)
            if canary_traffic:
                return self.kube.canary(name, self.namespace, predictor, canary_traffic, crd_path=self.crd_path,
                                        timeout=timeout, poll_interval=poll_interval)
            spec = DeploymentSpec(name=name, namespace=self.namespace, predictors=[predictor])
            return self.kube.deploy(spec, crd_path=self.crd_path, timeout=timeout, poll_interval=poll_interval)

    def kube_promote(self, name: str, version: int, *, timeout: float = 600.0,
                     poll_interval: float = 5.0) -> dict[str, Any]:
        """Send all traffic to the predictor of ``version`` and remove the others."""
        with self._kube_errors():
            return self.kube.promote(name, self.namespace, f"v{version}", crd_path=self.crd_path, timeout=timeout,
                                     poll_interval=poll_interval)

    def kube_cancel(self) -> str | None:
        """Undo the rollout this hook is waiting for (``on_kill``); what was done, or None."""
        if "kube" not in self.__dict__:  # no Kubernetes call was made
            return None
        return self.kube.cancel()

    def kube_object(self, name: str) -> dict[str, Any]:
        """SeldonDeployment ``name`` as the API server returns it; InvalidArgumentError when it does not exist."""
        with self._kube_errors():
            obj = self.kube.get(name, self.namespace)
        if obj is None:
            raise InvalidArgumentError(f"SeldonDeployment {self.namespace}/{name} does not exist")
        return obj

    def kube_record(self, name: str, obj: dict[str, Any] | None = None) -> LocalDeployment:
        """What monitoring needs of SeldonDeployment ``name`` (``obj``, when already read): the version its main
        predictor serves, that version's directory (on the claim, as Airflow sees it), and the prediction log
        the server writes."""
        from airflow_mlops.serving.kubernetes import spec_from_manifest
        from airflow_mlops.serving.manifest import deployment_state, is_ready

        obj = obj if obj is not None else self.kube_object(name)
        with self._kube_errors():
            spec = spec_from_manifest(obj)
        main = max((p for p in spec.predictors if not p.shadow), key=lambda p: p.traffic)
        model_path = self.local_model_root(main.model_uri)
        state, _ = deployment_state(obj)
        return LocalDeployment(
            name=name, version=main.model_version, model_path=model_path,
            model_root=model_path.rstrip("/").rsplit("/", 1)[0], prediction_log=main.env.get("PREDICTION_LOG"),
            status="available" if is_ready(obj) else (state or "unknown").lower(),
        )

    def kube_names(self) -> list[str]:
        """The SeldonDeployments of the namespace."""
        with self._kube_errors():
            return self.kube.names(self.namespace)

    def kube_delete(self, name: str) -> bool:
        with self._kube_errors():
            return self.kube.delete(name, self.namespace)

