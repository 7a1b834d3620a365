"""SeldonDeployments on a Kubernetes cluster, driven through the kubernetes client.

:class:`SeldonKubernetesController` applies the manifests of :mod:`.manifest` as
``machinelearning.seldon.io/v1`` custom objects, waits for Seldon's controller to
report the rollout, and puts the previous spec back when it fails::

    controller = SeldonKubernetesController(KubernetesHook(conn_id).api_client)
    controller.deploy(spec, crd_path=crd, timeout=600, poll_interval=5)
    controller.canary("taxi", "serving", PredictorSpec("v4", 4, "gs://b/taxi"), 10)
    controller.promote("taxi", "serving", "v4")

No Airflow here: the hook builds the ``ApiClient``, this class only uses it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kubernetes.client import ApiClient, CustomObjectsApi

from airflow_mlops.kubernetes.api import DEFAULT_BACKOFF, Backoff, KubernetesApiError, call

from airflow_mlops.serving import manifest as m
from airflow_mlops.serving.manifest import (
    GRAPH_NODE,
    KIND,
    MANAGED_BY_LABEL,
    MODEL_VERSION_LABEL,
    DeploymentSpec,
    ManifestError,
    PredictorSpec,
)

__all__ = ["PLURAL", "VERSION", "SeldonKubernetesController", "SeldonKubernetesError", "spec_from_manifest"]

VERSION = "v1"
PLURAL = "seldondeployments"
AVAILABLE, FAILED, TIMEOUT = "Available", "Failed", "Timeout"

T = TypeVar("T")


class SeldonKubernetesError(Exception):
    """A call to the API server or a rollout failed.

    :param message: what happened, naming the deployment.
    :param status: the HTTP status of the API server's answer, if any.
    :param state: the rollout state (``Failed``, ``Timeout``), if a rollout failed.
    :param not_found: the deployment does not exist (default: ``status`` is 404); False for the
        404 of an API server without the SeldonDeployment CRD.
    """

    def __init__(self, message: str, *, status: int | None = None, state: str | None = None,
                 not_found: bool | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.state = state
        self.not_found = status == 404 if not_found is None else not_found


def _describe(spec: Mapping[str, Any] | None) -> str:
    """``v3 (model version 3, 100%)`` for each predictor of a manifest ``spec``."""
    parts = []
    for p in (spec or {}).get("predictors") or []:
        version = (p.get("labels") or {}).get(MODEL_VERSION_LABEL, "?")
        share = "shadow" if p.get("shadow") else f"{p.get('traffic', 0)}%"
        parts.append(f"{p.get('name')} (model version {version}, {share})")
    return ", ".join(parts) or "no predictors"


class SeldonKubernetesController:
    """Create, roll out, roll back and delete SeldonDeployments through ``CustomObjectsApi``.

    :param api_client: a configured ``kubernetes.client.ApiClient`` (``KubernetesHook.api_client``).
    :param sleep: waits between polls (injectable for tests).
    :param clock: a monotonic clock in seconds (injectable for tests).
    """

    def __init__(
        self,
        api_client: ApiClient,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        self.api = CustomObjectsApi(api_client)
        self.sleep = sleep
        self.clock = clock
        self.backoff = backoff
        #: ``(name, namespace, previous object or None)`` while a rollout is awaited (see :meth:`cancel`)
        self.in_progress: tuple[str, str, dict | None] | None = None

    # -- API calls ------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[..., T], **kwargs: Any) -> T:
        """Run one ``CustomObjectsApi`` call, retried on throttling, server errors and dropped
        connections (:func:`airflow_mlops.kubernetes.api.call`); errors become
        :class:`SeldonKubernetesError` (a missing CRD says to install Seldon Core's operator)."""
        try:
            return call(what, fn, api_group=m.GROUP, group=m.GROUP, version=VERSION, plural=PLURAL,
                        backoff=self.backoff, sleep=self.sleep, **kwargs)
        except KubernetesApiError as exc:
            raise SeldonKubernetesError(str(exc), status=exc.status, not_found=exc.not_found) from exc

    def get(self, name: str, namespace: str) -> dict | None:
        """The SeldonDeployment ``namespace/name``, or None when it does not exist."""
        try:
            return self._call(
                f"reading {KIND} {namespace}/{name}",
                self.api.get_namespaced_custom_object,
                namespace=namespace,
                name=name,
            )
        except SeldonKubernetesError as exc:
            if exc.not_found:
                return None
            raise

    def names(self, namespace: str) -> list[str]:
        """The names of the SeldonDeployments of ``namespace``."""
        found = self._call(f"listing {KIND}s in {namespace}", self.api.list_namespaced_custom_object,
                           namespace=namespace)
        return sorted(item["metadata"]["name"] for item in found.get("items", []))

    def delete(self, name: str, namespace: str) -> bool:
        """Delete ``namespace/name``; False when it did not exist."""
        try:
            self._call(
                f"deleting {KIND} {namespace}/{name}",
                self.api.delete_namespaced_custom_object,
                namespace=namespace,
                name=name,
            )
        except SeldonKubernetesError as exc:
            if exc.not_found:
                return False
            raise
        return True

    def _replace(self, body: dict) -> dict:
        meta = body["metadata"]
        return self._call(
            f"replacing {KIND} {meta['namespace']}/{meta['name']}",
            self.api.replace_namespaced_custom_object,
            namespace=meta["namespace"],
            name=meta["name"],
            body=body,
        )

    # -- apply / wait ---------------------------------------------------------------------
    def apply(self, spec: DeploymentSpec, crd_path: str | None = None) -> tuple[dict, dict | None]:
        """Create ``spec``'s SeldonDeployment, or replace the ``.spec`` of the existing one.

        The manifest is validated first (CRD schema when ``crd_path`` is given, webhook
        rules always); a :class:`ManifestError` is raised before any API call. A replace
        carries the ``resourceVersion`` read, so a concurrent change answers 409; then
        the object is read again and the replace retried once.

        :returns: ``(applied object, previous object or None)``.
        """
        body = m.build_manifest(spec)
        if crd_path is not None:
            m.validate_manifest(body, crd_path)  # the webhook rules included
        elif problems := m.webhook_errors(body):
            raise ManifestError(problems, context=f"invalid {KIND} {spec.name!r}")
        where = f"{KIND} {spec.namespace}/{spec.name}"
        for attempt in (1, 2):
            previous = self.get(spec.name, spec.namespace)
            try:
                if previous is None:
                    applied = self._call(
                        f"creating {where}",
                        self.api.create_namespaced_custom_object,
                        namespace=spec.namespace,
                        body=body,
                    )
                else:
                    update = _updated(previous, body)
                    applied = previous if update is None else self._replace(update)
                return applied, previous
            except SeldonKubernetesError as exc:
                if exc.status != 409 or attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def wait(
        self,
        name: str,
        namespace: str,
        *,
        timeout: float,
        poll_interval: float,
        generation: int | None = None,
    ) -> tuple[str, str]:
        """Poll until the rollout is ``Available``, ``Failed``, or ``timeout`` seconds pass.

        A status older than the spec (``status.observedGeneration`` below
        ``generation`` or ``metadata.generation``) is not taken as the answer.

        :returns: ``(state, description)``, state one of ``Available``, ``Failed``, ``Timeout``.
        """
        return self._wait(name, namespace, timeout=timeout, poll_interval=poll_interval, generation=generation)[:2]

    def _wait(
        self, name: str, namespace: str, *, timeout: float, poll_interval: float, generation: int | None
    ) -> tuple[str, str, dict]:
        deadline = self.clock() + timeout
        while True:
            obj = self.get(name, namespace)
            if obj is None:
                raise SeldonKubernetesError(f"{KIND} {namespace}/{name} was deleted during the rollout", status=404)
            state, description = m.deployment_state(obj)
            observed = (obj.get("status") or {}).get("observedGeneration")
            target = max(generation or 0, (obj.get("metadata") or {}).get("generation") or 0)
            current = not isinstance(observed, int) or observed >= target
            if current and m.is_ready(obj):
                return AVAILABLE, description, obj
            if current and state == FAILED:
                return FAILED, description, obj
            remaining = deadline - self.clock()
            if remaining <= 0:
                seen = state if current else f"{state} (status of generation {observed}, spec is {target})"
                last = f"still {seen} after {timeout:g} s"
                return TIMEOUT, f"{last}: {description}" if description else last, obj
            self.sleep(min(poll_interval, remaining))

    # -- rollouts -------------------------------------------------------------------------
    def deploy(
        self, spec: DeploymentSpec, *, crd_path: str | None = None, timeout: float = 600.0, poll_interval: float = 5.0
    ) -> dict:
        """Apply ``spec`` and wait until it is ``Available``; on failure put back what was there.

        :returns: the object as last read (``Available``).
        :raises SeldonKubernetesError: when the rollout fails or times out (after the restore).
        """
        applied, previous = self.apply(spec, crd_path)
        self.in_progress = (spec.name, spec.namespace, previous)
        generation = (applied.get("metadata") or {}).get("generation")
        try:
            state, description, obj = self._wait(
                spec.name, spec.namespace, timeout=timeout, poll_interval=poll_interval, generation=generation
            )
        finally:
            self.in_progress = None
        if state == AVAILABLE:
            return obj
        restored = self._restore(spec.name, spec.namespace, previous)
        raise SeldonKubernetesError(
            f"{KIND} {spec.namespace}/{spec.name}: rollout of {_describe(applied.get('spec'))} ended {state}"
            f"{': ' + description if description else ''}; {restored}",
            state=state,
        )

    def canary(
        self,
        name: str,
        namespace: str,
        new: PredictorSpec,
        traffic: int,
        *,
        crd_path: str | None = None,
        timeout: float = 600.0,
        poll_interval: float = 5.0,
    ) -> dict:
        """Route ``traffic`` percent of ``namespace/name`` to ``new`` (see :func:`.manifest.canary`)."""
        spec = m.canary(self._spec(name, namespace), new, traffic)
        return self.deploy(spec, crd_path=crd_path, timeout=timeout, poll_interval=poll_interval)

    def promote(
        self,
        name: str,
        namespace: str,
        predictor_name: str,
        *,
        crd_path: str | None = None,
        timeout: float = 600.0,
        poll_interval: float = 5.0,
    ) -> dict:
        """Give ``predictor_name`` all traffic and remove the other predictors (see :func:`.manifest.promote`)."""
        spec = m.promote(self._spec(name, namespace), predictor_name)
        return self.deploy(spec, crd_path=crd_path, timeout=timeout, poll_interval=poll_interval)

    def cancel(self) -> str | None:
        """Undo the rollout being awaited (the task was killed): put the previous spec back, or delete
        a deployment this rollout created. Returns what was done, or None when nothing was in progress."""
        rollout = self.in_progress
        if rollout is None:
            return None
        name, namespace, previous = rollout
        return self._restore(name, namespace, previous)

    def _spec(self, name: str, namespace: str) -> DeploymentSpec:
        obj = self.get(name, namespace)
        if obj is None:
            raise SeldonKubernetesError(f"{KIND} {namespace}/{name} does not exist; deploy it first", status=404)
        return spec_from_manifest(obj)

    def _restore(self, name: str, namespace: str, previous: dict | None) -> str:
        """Put ``previous``'s spec back (or delete what did not exist); say what was done."""
        where = f"{KIND} {namespace}/{name}"
        try:
            if previous is None:
                self.delete(name, namespace)
                return "deleted it (it did not exist before)"
            for attempt in (1, 2):
                current = self.get(name, namespace)
                if current is None:
                    raise SeldonKubernetesError(f"{where} disappeared before the restore", status=404)
                try:
                    self._replace(m.restore_patch(previous, current))
                    return f"restored the previous spec: {_describe(previous.get('spec'))}"
                except SeldonKubernetesError as exc:
                    if exc.status != 409 or attempt == 2:
                        raise
        except SeldonKubernetesError as exc:
            return f"the restore FAILED too, fix {where} by hand: {exc}"
        raise AssertionError("unreachable")  # pragma: no cover


def _updated(current: Mapping[str, Any], manifest: Mapping[str, Any]) -> dict | None:
    """The PUT body that gives ``current`` the spec, labels and annotations of ``manifest``.

    None when nothing would change. Other metadata (``resourceVersion`` included) is
    kept; ``status`` is left out (a subresource, owned by Seldon's controller).
    """
    metadata = copy.deepcopy(dict(current["metadata"]))
    for key in ("labels", "annotations"):
        wanted = manifest["metadata"].get(key) or {}
        if wanted:
            metadata[key] = {**(metadata.get(key) or {}), **wanted}
    if metadata == current["metadata"] and manifest["spec"] == current.get("spec"):
        return None
    return {
        "apiVersion": current.get("apiVersion") or m.API_VERSION,
        "kind": m.KIND,
        "metadata": metadata,
        "spec": copy.deepcopy(manifest["spec"]),
    }


def spec_from_manifest(obj: Mapping[str, Any]) -> DeploymentSpec:
    """The :class:`DeploymentSpec` of a SeldonDeployment written by :func:`.manifest.build_manifest`.

    Reads back what the builder writes (the ``mlops.airflow/model-version`` label, the
    graph node's ``implementation``/``modelUri``, or the ``model`` container's image,
    ``MODEL_URI``/``MODEL_VERSION`` env and resources); fields the cluster adds
    (status, defaults) are ignored.

    :param obj: the manifest, or the object as read from the cluster.
    :raises ManifestError: when a predictor has no model version label or no model.
    """
    metadata = obj.get("metadata") or {}
    body = obj.get("spec") or {}
    raw = body.get("predictors") or []
    serving = [p for p in raw if not p.get("shadow")]
    predictors = [_predictor_from_manifest(p, i, lone=len(serving) == 1) for i, p in enumerate(raw)]
    return DeploymentSpec(
        name=str(metadata.get("name") or ""),
        namespace=str(metadata.get("namespace") or ""),
        predictors=predictors,
        annotations=dict(metadata.get("annotations") or {}),
        labels={k: v for k, v in (metadata.get("labels") or {}).items() if k != MANAGED_BY_LABEL},
        protocol=body.get("protocol") or "seldon",
    )


def _predictor_from_manifest(p: Mapping[str, Any], index: int, *, lone: bool) -> PredictorSpec:
    where = f"$.spec.predictors[{index}]"
    labels = dict(p.get("labels") or {})
    version = labels.pop(MODEL_VERSION_LABEL, None)
    labels.pop(MANAGED_BY_LABEL, None)
    if version is None or not str(version).isdigit():
        raise ManifestError(
            f"{where}.labels[{MODEL_VERSION_LABEL!r}]: missing or not a number ({version!r}); "
            "not a predictor deployed by airflow-mlops"
        )
    graph = p.get("graph") or {}
    containers = [
        c for component in p.get("componentSpecs") or [] for c in (component.get("spec") or {}).get("containers") or []
    ]
    container: Mapping[str, Any] = next((c for c in containers if c.get("name") == GRAPH_NODE), {})
    env = {e.get("name"): e.get("value") for e in container.get("env") or []}
    implementation = graph.get("implementation")
    if implementation:
        uri, image = graph.get("modelUri"), None
    else:
        uri, image = env.get("MODEL_URI"), container.get("image")
    for key in m.RESERVED_ENV:
        env.pop(key, None)
    mount = next((v for v in container.get("volumeMounts") or [] if v.get("name") == m.VOLUME_NAME), None)
    volumes = [v for component in p.get("componentSpecs") or [] for v in (component.get("spec") or {}).get("volumes")
               or [] if v.get("name") == m.VOLUME_NAME]
    claim = ((volumes[0].get("persistentVolumeClaim") or {}).get("claimName")) if volumes and mount else None
    shadow = bool(p.get("shadow", False))
    traffic = p.get("traffic")
    if traffic is None:  # the webhook leaves a lone predictor's traffic unset
        traffic = 100 if lone and not shadow else 0
    return PredictorSpec(
        name=str(p.get("name") or ""),
        model_version=int(version),
        model_uri=str(uri or ""),
        replicas=p.get("replicas", 1),
        traffic=traffic,
        shadow=shadow,
        implementation=implementation or None,
        image=image,
        resources=copy.deepcopy(container.get("resources")) or None,
        env=env,
        labels=labels,
        volume_claim=claim,
        mount_path=mount.get("mountPath") if claim and mount else None,
    )
