"""SeldonDeployment manifests for the Kubernetes backend of the deploy operator.

Everything here is a plain function on dataclasses and dicts: no Kubernetes client,
no Airflow. The flow is::

    spec = DeploymentSpec("taxi", "serving", [PredictorSpec("v3", 3, "gs://b/taxi")])
    manifest = build_manifest(spec)            # machinelearning.seldon.io/v1
    validate_manifest(manifest, crd_path)      # CRD schema + admission-webhook rules
    spec = canary(spec, PredictorSpec("v4", 4, "gs://b/taxi"), traffic=10)
    spec = promote(spec, "v4")

Specs validate themselves when constructed (a :class:`ManifestError` names every
wrong field), so a spec that exists builds a manifest the controller accepts.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from airflow_mlops.kubernetes.schema import (
    ManifestError,
    annotation_errors,
    crd_jsonschema,
    crd_version_schema,
    dns_label_errors,
    instance_errors,
    is_int,
    label_errors,
    openapi_to_jsonschema,
    resource_errors,
    schema_errors,
)
from airflow_mlops.shared import IMAGE_UID

__all__ = [
    "API_VERSION",
    "GRAPH_NODE",
    "KIND",
    "MANAGED_BY_LABEL",
    "MODEL_VERSION_LABEL",
    "DeploymentSpec",
    "ManifestError",
    "PredictorSpec",
    "build_manifest",
    "canary",
    "crd_schema",
    "deployment_state",
    "is_ready",
    "openapi_to_jsonschema",
    "promote",
    "restore_patch",
    "schema_errors",
    "shadow",
    "to_yaml",
    "validate_manifest",
    "webhook_errors",
]

GROUP = "machinelearning.seldon.io"
API_VERSION = f"{GROUP}/v1"
KIND = "SeldonDeployment"
CRD_FILENAME = "machinelearning.seldon.io_seldondeployments.yaml"

GRAPH_NODE = "model"
"""Name of the single graph node, and of the container that serves it."""

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "airflow-mlops"
MODEL_VERSION_LABEL = "mlops.airflow/model-version"

PROTOCOLS = ("seldon", "tensorflow", "v2")
PREPACKAGED_URI_SCHEMES = ("gs", "s3", "pvc")
RESERVED_ENV = ("MODEL_URI", "MODEL_VERSION")
#: The volume of a predictor's ``volume_claim``.
VOLUME_NAME = "mlops-data"

# Protocols the well-known prepackaged servers speak; other servers are not checked.
_SERVER_PROTOCOLS = {
    "TENSORFLOW_SERVER": ("seldon", "tensorflow"),
    "TRITON_SERVER": ("v2",),
}

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_SERVER_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")




# --------------------------------------------------------------------------- checks
















def _model_uri_errors(path: str, uri: object, prepackaged: bool) -> list[str]:
    if not isinstance(uri, str) or not uri.strip():
        return [f"{path}: must be a non-empty string, got {uri!r}"]
    if not prepackaged:
        return []  # the custom image reads MODEL_URI itself: any path in it is fine
    parts = urlsplit(uri)
    schemes = ", ".join(f"{s}://" for s in PREPACKAGED_URI_SCHEMES)
    if parts.scheme in ("", "file") or len(parts.scheme) == 1:  # "C:\\..." is a path
        return [
            f"{path}: {uri!r} is a local file path; a prepackaged server's storage "
            "initializer downloads the model inside the pod and cannot see files on "
            f"the Airflow worker: push the model to object storage ({schemes}) or a "
            "PersistentVolumeClaim (pvc://<claim>/<path>), or serve it with a custom "
            "image (implementation=None)"
        ]
    if parts.scheme not in PREPACKAGED_URI_SCHEMES:
        return [
            f"{path}: scheme {parts.scheme + '://'!r} of {uri!r} is not supported for "
            f"a prepackaged server; use one of {schemes}"
        ]
    if not parts.netloc:
        what = "claim" if parts.scheme == "pvc" else "bucket"
        return [f"{path}: {uri!r} names no {what} ({parts.scheme}://<{what}>/<path>)"]
    return []


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class PredictorSpec:
    """One predictor of a SeldonDeployment: one model version behind one graph node.

    :param name: predictor name, a DNS-1123 label (e.g. ``v3``).
    :param model_version: the pushed model version (the predictor label
        ``mlops.airflow/model-version``).
    :param model_uri: where the model lies: ``gs://``, ``s3://`` or ``pvc://`` for a
        prepackaged server; anything the image understands for a custom image.
    :param replicas: pod replicas (>= 0).
    :param traffic: percent of requests routed here (0..100); 0 for a shadow.
    :param shadow: receive a mirrored copy of all requests, responses discarded.
    :param implementation: prepackaged server (``TENSORFLOW_SERVER``...), or None to
        run ``image`` as the model server.
    :param image: the model-server image; only with ``implementation=None``.
    :param resources: container ``requests``/``limits`` (cpu, memory, nvidia.com/gpu).
    :param env: extra environment of the model container.
    :param labels: extra labels of the predictor.
    :param volume_claim: a PersistentVolumeClaim mounted at ``mount_path`` in the model
        container (the provider's state directory: models, prediction logs); custom images only.
    :param mount_path: where the claim is mounted.
    """

    name: str
    model_version: int
    model_uri: str
    replicas: int = 1
    traffic: int = 100
    shadow: bool = False
    implementation: str | None = "TENSORFLOW_SERVER"
    image: str | None = None
    resources: dict[str, dict[str, int | str]] | None = None
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    volume_claim: str | None = None
    mount_path: str | None = None

    def __post_init__(self) -> None:
        problems = self.errors()
        if problems:
            raise ManifestError(
                problems, context=f"invalid PredictorSpec {self.name!r}"
            )

    def errors(self, path: str = "") -> list[str]:
        """Every problem of this predictor, each prefixed by ``path`` + field name.

        :param path: prefix of the field paths (``predictors[1].``).
        """
        p = path
        problems = dns_label_errors(f"{p}name", self.name)
        if not is_int(self.model_version) or self.model_version < 0:
            problems.append(
                f"{p}model_version: must be an integer >= 0, got {self.model_version!r}"
            )
        if not is_int(self.replicas) or self.replicas < 0:
            problems.append(
                f"{p}replicas: must be an integer >= 0, got {self.replicas!r}"
            )
        if not is_int(self.traffic) or not 0 <= self.traffic <= 100:
            problems.append(
                f"{p}traffic: must be an integer percentage 0..100, "
                f"got {self.traffic!r}"
            )
        elif self.shadow and self.traffic != 0:
            problems.append(
                f"{p}traffic: a shadow receives a mirrored copy of every request, so "
                f"its traffic must be 0, got {self.traffic}"
            )
        if not isinstance(self.shadow, bool):
            problems.append(f"{p}shadow: must be a bool, got {self.shadow!r}")
        prepackaged = self.implementation is not None
        if prepackaged:
            if not isinstance(self.implementation, str) or not _SERVER_NAME.match(
                self.implementation
            ):
                problems.append(
                    f"{p}implementation: {self.implementation!r} is not a prepackaged "
                    "server name (upper case, e.g. TENSORFLOW_SERVER)"
                )
            if self.image is not None:
                problems.append(
                    f"{p}image: only used with implementation=None (a custom model "
                    f"server); {self.implementation} brings its own image"
                )
        elif not isinstance(self.image, str) or not self.image.strip():
            problems.append(
                f"{p}image: required when implementation is None (the model-server "
                "image to run)"
            )
        elif any(c.isspace() for c in self.image):
            problems.append(f"{p}image: {self.image!r} contains whitespace")
        problems += _model_uri_errors(f"{p}model_uri", self.model_uri, prepackaged)
        if self.resources is not None:
            problems += resource_errors(f"{p}resources", self.resources)
        if not isinstance(self.env, Mapping):
            problems.append(f"{p}env: must be a mapping of strings")
        else:
            for key, value in self.env.items():
                if not isinstance(key, str) or not _ENV_NAME.match(key):
                    problems.append(f"{p}env[{key!r}]: not a valid variable name")
                elif key in RESERVED_ENV:
                    problems.append(
                        f"{p}env[{key!r}]: set from model_uri/model_version; "
                        "do not set it in env"
                    )
                if not isinstance(value, str):
                    problems.append(
                        f"{p}env[{key!r}]: values are strings, got {value!r}; quote it"
                    )
        if (self.volume_claim is None) != (self.mount_path is None):
            problems.append(f"{p}volume_claim/mount_path: give both or neither")
        elif self.volume_claim is not None:
            problems += dns_label_errors(f"{p}volume_claim", self.volume_claim)
            if not isinstance(self.mount_path, str) or not self.mount_path.startswith("/"):
                problems.append(f"{p}mount_path: must be an absolute path, got {self.mount_path!r}")
            if prepackaged:
                problems.append(f"{p}volume_claim: only for a custom image; {self.implementation} reads "
                                "pvc://<claim>/<path> model URIs itself")
        problems += label_errors(f"{p}labels", self.labels)
        if isinstance(self.labels, Mapping):
            for key in (MANAGED_BY_LABEL, MODEL_VERSION_LABEL):
                if key in self.labels:
                    problems.append(
                        f"{p}labels[{key!r}]: set by airflow-mlops; remove it"
                    )
        return problems


@dataclass(frozen=True)
class DeploymentSpec:
    """A SeldonDeployment: its predictors and where it lives.

    :param name: the SeldonDeployment name, a DNS-1123 label.
    :param namespace: its namespace, a DNS-1123 label.
    :param predictors: one predictor, or several splitting traffic (plus one shadow).
    :param annotations: ``metadata.annotations`` (e.g. ``seldon.io/rest-timeout``).
    :param labels: ``metadata.labels``.
    :param protocol: ``seldon``, ``tensorflow`` or ``v2``.
    """

    name: str
    namespace: str
    predictors: list[PredictorSpec]
    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    protocol: str = "seldon"

    def __post_init__(self) -> None:
        problems = self.errors()
        if problems:
            raise ManifestError(
                problems, context=f"invalid DeploymentSpec {self.name!r}"
            )

    def errors(self) -> list[str]:
        """Every problem of this deployment and its predictors."""
        problems = dns_label_errors("name", self.name)
        problems += dns_label_errors("namespace", self.namespace)
        if self.protocol not in PROTOCOLS:
            problems.append(
                f"protocol: must be one of {', '.join(PROTOCOLS)}, "
                f"got {self.protocol!r}"
            )
        problems += annotation_errors("annotations", self.annotations)
        problems += label_errors("labels", self.labels)
        if isinstance(self.labels, Mapping) and MANAGED_BY_LABEL in self.labels:
            problems.append(
                f"labels[{MANAGED_BY_LABEL!r}]: set by airflow-mlops; remove it"
            )
        if not isinstance(self.predictors, list | tuple) or not self.predictors:
            problems.append("predictors: at least one PredictorSpec is required")
            return problems
        rows = []
        for i, predictor in enumerate(self.predictors):
            path = f"predictors[{i}]"
            if not isinstance(predictor, PredictorSpec):
                problems.append(f"{path}: must be a PredictorSpec, got {predictor!r}")
                continue
            problems += predictor.errors(f"{path}.")  # specs are mutable inside
            rows.append((path, predictor.name, predictor.traffic, predictor.shadow))
            allowed = _SERVER_PROTOCOLS.get(predictor.implementation or "")
            if allowed and self.protocol not in allowed:
                problems.append(
                    f"{path}.implementation: {predictor.implementation} does not speak "
                    f"protocol {self.protocol!r} (it speaks {', '.join(allowed)})"
                )
        problems += _traffic_rule_errors(rows, require_total=True)
        return problems


def _traffic_rule_errors(
    rows: Sequence[tuple[str, object, object, object]], *, require_total: bool = False
) -> list[str]:
    """The admission-webhook rules on ``(path, name, traffic, shadow)`` rows.

    :param require_total: also require a single serving predictor to take 100%
        (a spec rule; the webhook leaves a lone predictor's traffic alone).
    """
    problems: list[str] = []
    seen: dict[object, str] = {}
    for path, name, _, _ in rows:
        if name in seen:
            problems.append(
                f"{path}.name: duplicate predictor name {name!r} ({seen[name]})"
            )
        else:
            seen[name] = path
    serving = [r for r in rows if r[3] is not True]
    shadows = [r for r in rows if r[3] is True]
    if len(shadows) > 1:
        names = ", ".join(f"{r[1]!r} ({r[0]})" for r in shadows)
        problems.append(
            f"predictors: at most one predictor may be a shadow, found {len(shadows)}: "
            f"{names}"
        )
    if shadows and not serving:
        problems.append(
            f"{shadows[0][0]}.shadow: a shadow cannot be the only predictor; it "
            "mirrors the traffic of a predictor that serves it"
        )
    traffics = [r[2] if r[2] is not None else 0 for r in serving]
    if (len(serving) > 1 or (require_total and serving)) and all(
        is_int(t) for t in traffics
    ):
        total = sum(traffics)  # type: ignore[arg-type]
        if total != 100:
            split = " + ".join(
                f"{r[1]}={t}" for r, t in zip(serving, traffics, strict=True)
            )
            problems.append(
                f"predictors: traffic of the non-shadow predictors must sum to 100, "
                f"got {split} = {total}"
            )
    return problems


# --------------------------------------------------------------------------- build


def _predictor_manifest(predictor: PredictorSpec) -> dict[str, Any]:
    labels = {
        MANAGED_BY_LABEL: MANAGED_BY,
        MODEL_VERSION_LABEL: str(predictor.model_version),
        **predictor.labels,
    }
    graph: dict[str, Any] = {"name": GRAPH_NODE, "type": "MODEL"}
    container: dict[str, Any] = {"name": GRAPH_NODE}
    env = dict(predictor.env)
    if predictor.implementation is not None:
        graph["implementation"] = predictor.implementation
        graph["modelUri"] = predictor.model_uri
    else:
        container["image"] = predictor.image
        env = {
            "MODEL_URI": predictor.model_uri,
            "MODEL_VERSION": str(predictor.model_version),
            **env,
        }
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    if predictor.resources:
        container["resources"] = copy.deepcopy(predictor.resources)
    pod: dict[str, Any] = {"containers": [container]}
    if predictor.volume_claim:
        container["volumeMounts"] = [{"name": VOLUME_NAME, "mountPath": predictor.mount_path}]
        pod["volumes"] = [{"name": VOLUME_NAME, "persistentVolumeClaim": {"claimName": predictor.volume_claim}}]
        # the server writes its prediction log on the claim, as the step pods write there: as the images' user
        # with the claim's group (Seldon's operator would run it as uid 8888, which the claim does not let write)
        pod["securityContext"] = {"runAsUser": IMAGE_UID, "runAsGroup": IMAGE_UID, "fsGroup": IMAGE_UID}
    out: dict[str, Any] = {
        "name": predictor.name,
        "replicas": predictor.replicas,
        "traffic": predictor.traffic,
    }
    if predictor.shadow:
        out["shadow"] = True
    out["labels"] = labels
    out["graph"] = graph
    # A prepackaged server needs a container only to receive env or resources: the
    # controller merges a container named after the graph node into the server's.
    if len(container) > 1:
        out["componentSpecs"] = [{"spec": pod}]
    return out


def build_manifest(spec: DeploymentSpec) -> dict[str, Any]:
    """The SeldonDeployment (``machinelearning.seldon.io/v1``) resource of ``spec``.

    :param spec: the deployment; validated again (its dicts and lists are mutable).
    """
    problems = spec.errors()
    if problems:
        raise ManifestError(problems, context=f"invalid DeploymentSpec {spec.name!r}")
    metadata: dict[str, Any] = {
        "name": spec.name,
        "namespace": spec.namespace,
        "labels": {MANAGED_BY_LABEL: MANAGED_BY, **spec.labels},
    }
    if spec.annotations:
        metadata["annotations"] = dict(spec.annotations)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": {
            "protocol": spec.protocol,
            "predictors": [_predictor_manifest(p) for p in spec.predictors],
        },
    }


def to_yaml(manifest: Mapping[str, Any]) -> str:
    """``manifest`` as a YAML document, keys in build order (``kubectl apply -f``-able).

    :param manifest: a manifest dict.
    """
    import yaml

    return yaml.safe_dump(dict(manifest), sort_keys=False, default_flow_style=False)


# --------------------------------------------------------------------------- schema






















def crd_schema(crd_path: str | os.PathLike[str], version: str = "v1") -> dict:
    """The ``openAPIV3Schema`` of ``version`` in the SeldonDeployment CRD (a copy).

    :param crd_path: the CRD YAML file, or the folder that holds it.
    :param version: the CRD version.
    """
    return crd_version_schema(crd_path, CRD_FILENAME, KIND, version)


def webhook_errors(manifest: Mapping[str, Any]) -> list[str]:
    """The rules Seldon's admission webhook enforces and the CRD schema cannot express.

    Predictor names are unique; with more than one non-shadow predictor their
    ``traffic`` sums to 100; at most one predictor is a shadow; a shadow is never
    the only predictor. Malformed parts are skipped (the schema reports them).

    :param manifest: a SeldonDeployment manifest.
    """
    spec = manifest.get("spec") if isinstance(manifest, Mapping) else None
    predictors = spec.get("predictors") if isinstance(spec, Mapping) else None
    if not isinstance(predictors, list):
        return []
    rows = [
        (f"$.spec.predictors[{i}]", p.get("name"), p.get("traffic"), p.get("shadow"))
        for i, p in enumerate(predictors)
        if isinstance(p, Mapping)
    ]
    return [
        line if line.startswith("$.") else f"$.spec.{line}"
        for line in _traffic_rule_errors(rows)
    ]


def _envelope_errors(manifest: Mapping[str, Any], version: str) -> list[str]:
    problems = []
    if manifest.get("apiVersion") != f"{GROUP}/{version}":
        problems.append(
            f"$.apiVersion: must be {GROUP}/{version}, "
            f"got {manifest.get('apiVersion')!r}"
        )
    if manifest.get("kind") != KIND:
        problems.append(f"$.kind: must be {KIND}, got {manifest.get('kind')!r}")
    metadata = manifest.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    if name is None:
        problems.append("$.metadata.name: is required")
    else:
        problems += dns_label_errors("$.metadata.name", name)
    return problems


def validate_manifest(
    manifest: Mapping[str, Any],
    crd_path: str | os.PathLike[str],
    *,
    version: str = "v1",
    strict: bool = True,
) -> None:
    """Check ``manifest`` as the API server and Seldon's webhook would; raise on errors.

    Checks ``apiVersion``/``kind``/``metadata.name``, the CRD's
    ``openAPIV3Schema`` of ``version``, and :func:`webhook_errors`.

    :param manifest: a SeldonDeployment manifest.
    :param crd_path: the CRD YAML file, or the folder that holds it.
    :param version: the CRD version to validate against.
    :param strict: also reject fields the schema does not declare.
    :raises ManifestError: listing every error with its JSON path.
    :raises FileNotFoundError: when the CRD is not at ``crd_path``.
    """
    if not isinstance(manifest, Mapping):
        raise ManifestError(
            f"$: a manifest is a mapping, got {type(manifest).__name__}"
        )
    _, schema = crd_jsonschema(crd_path, CRD_FILENAME, KIND, version, strict=strict)
    problems = _envelope_errors(manifest, version)
    problems += instance_errors(manifest, schema)
    problems += webhook_errors(manifest)
    if problems:
        metadata = manifest.get("metadata")
        name = metadata.get("name") if isinstance(metadata, Mapping) else None
        raise ManifestError(problems, context=f"invalid {KIND} {name!r}")


# --------------------------------------------------------------------------- rollouts


def canary(current: DeploymentSpec, new: PredictorSpec, traffic: int) -> DeploymentSpec:
    """Route ``traffic`` percent to ``new``; the serving predictor keeps the rest.

    The serving predictor is the non-shadow predictor with the most traffic (the
    first on a tie) other than ``new``. The result has exactly those two predictors:
    an earlier canary or a shadow is dropped; a canary or shadow named like ``new``
    is replaced by it (a shadow graduating to canary, or a canary stepping up).

    :param current: the deployment now running.
    :param new: the predictor to try.
    :param traffic: percent for ``new``, 1..99 (for 0 see :func:`shadow`, for 100
        :func:`promote`).
    """
    if not is_int(traffic) or not 1 <= traffic <= 99:
        raise ManifestError(
            f"traffic: a canary takes 1..99 percent, got {traffic!r} (use shadow() "
            "for 0 and promote() for 100)"
        )
    stable = _serving(current, excluding=new.name)
    if stable is None:
        raise ManifestError(
            f"predictors: no predictor other than {new.name!r} serves traffic in "
            f"{current.name!r}; deploy one before a canary"
        )
    return replace(
        current,
        predictors=[
            replace(stable, traffic=100 - traffic, shadow=False),
            replace(new, traffic=traffic, shadow=False),
        ],
    )


def shadow(current: DeploymentSpec, new: PredictorSpec) -> DeploymentSpec:
    """Add ``new`` as the shadow: it sees every request, its answers are discarded.

    Serving predictors are kept as they are; an earlier shadow is replaced.

    :param current: the deployment now running.
    :param new: the predictor to shadow; its name must not be a serving predictor's.
    """
    serving = [p for p in current.predictors if not p.shadow]
    if any(p.name == new.name for p in serving):
        raise ManifestError(
            f"name: {new.name!r} already serves traffic in {current.name!r}; a shadow "
            "needs a name of its own"
        )
    return replace(current, predictors=[*serving, replace(new, traffic=0, shadow=True)])


def promote(spec: DeploymentSpec, predictor_name: str) -> DeploymentSpec:
    """Give ``predictor_name`` all the traffic and remove every other predictor.

    :param spec: the deployment (e.g. a canary or a shadow).
    :param predictor_name: the predictor to keep.
    """
    for predictor in spec.predictors:
        if predictor.name == predictor_name:
            chosen = replace(predictor, traffic=100, shadow=False)
            return replace(spec, predictors=[chosen])
    names = ", ".join(repr(p.name) for p in spec.predictors)
    raise ManifestError(
        f"predictor_name: {spec.name!r} has no predictor {predictor_name!r} "
        f"(it has: {names})"
    )


def _serving(spec: DeploymentSpec, *, excluding: str) -> PredictorSpec | None:
    candidates = [p for p in spec.predictors if not p.shadow and p.name != excluding]
    if not candidates:
        return None
    return max(candidates, key=lambda p: p.traffic)  # max keeps the first on a tie


def restore_patch(previous: Mapping[str, Any], current: Mapping[str, Any]) -> dict:
    """The body that puts ``previous``'s ``.spec`` back in place of ``current``'s.

    Send it as a full replace (``PUT``, ``replace_namespaced_custom_object``), not as
    a merge patch: a merge patch would keep map keys that only ``current`` has.
    ``metadata`` is ``current``'s identity (name, namespace, labels, annotations) with
    its ``resourceVersion``, so a change made meanwhile fails with a conflict rather
    than being overwritten. ``status`` is left out (the controller owns it).

    :param previous: the manifest (or object) to go back to.
    :param current: the object now in the cluster.
    """
    for label, obj in (("previous", previous), ("current", current)):
        if not isinstance(obj, Mapping) or not isinstance(obj.get("metadata"), Mapping):
            raise ManifestError(f"{label}: not a Kubernetes object (no metadata)")
    if not isinstance(previous.get("spec"), Mapping):
        raise ManifestError("previous.spec: missing; nothing to restore")
    before, now = previous["metadata"], current["metadata"]
    for key in ("name", "namespace"):
        if before.get(key) and now.get(key) and before[key] != now[key]:
            raise ManifestError(
                f"previous.metadata.{key}: {before[key]!r} is not the current object's "
                f"{now[key]!r}"
            )
    if previous.get("kind", KIND) != current.get("kind", KIND):
        raise ManifestError(
            f"previous.kind: {previous.get('kind')!r} != {current.get('kind')!r}"
        )
    metadata: dict[str, Any] = {}
    for key in ("name", "namespace", "resourceVersion", "labels", "annotations"):
        value = now.get(key, before.get(key) if key in ("name", "namespace") else None)
        if value is not None:
            metadata[key] = copy.deepcopy(value)
    return {
        "apiVersion": current.get("apiVersion")
        or previous.get("apiVersion")
        or API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": copy.deepcopy(dict(previous["spec"])),
    }


def deployment_state(obj: Mapping[str, Any]) -> tuple[str, str]:
    """``(status.state, status.description)`` of a SeldonDeployment object.

    The state is ``Available``, ``Creating`` or ``Failed`` as the controller writes
    it, or ``Unknown`` before it has written any; the description is ``""`` if absent.

    :param obj: the object as read from the cluster.
    """
    status = obj.get("status") if isinstance(obj, Mapping) else None
    if not isinstance(status, Mapping):
        return "Unknown", ""
    state = status.get("state")
    description = status.get("description")
    return (
        state if isinstance(state, str) and state else "Unknown",
        description if isinstance(description, str) else "",
    )


def is_ready(obj: Mapping[str, Any]) -> bool:
    """Whether the controller reports the object ``Available`` for its latest spec.

    A status older than the spec (``status.observedGeneration`` below
    ``metadata.generation``) describes the previous rollout, so it is not ready.

    :param obj: the object as read from the cluster.
    """
    if deployment_state(obj)[0] != "Available":
        return False
    generation = (obj.get("metadata") or {}).get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    if isinstance(generation, int) and isinstance(observed, int):
        return observed >= generation
    return True
