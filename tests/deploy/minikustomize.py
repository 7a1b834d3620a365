"""A minimal ``kustomize build`` for the features ``deploy/kubernetes`` uses, and no others.

The tests must build the manifests where no ``kubectl``/``kustomize`` binary exists, so this
module builds a kustomization itself. It understands exactly:

- ``apiVersion: kustomize.config.k8s.io/v1beta1`` and ``kind: Kustomization``;
- ``resources``: local YAML files next to the kustomization (no directories, no URLs);
- ``namespace``: set on every namespaced object (kustomize overrides one already set);
- ``labels`` with ``pairs`` (and ``includeSelectors``/``includeTemplates`` false): added to
  ``metadata.labels`` of every object, generated ones included, as kustomize does;
- ``secretGenerator`` with ``name``, ``type`` and ``envs`` (kustomize's env-file syntax);
- ``generatorOptions.disableNameSuffixHash: true`` (the content hash is not implemented, so a
  generator without it is refused rather than built with the wrong name).

Anything else raises :class:`KustomizeError` naming the field, so a test cannot pass on a
manifest that this builder silently left out or got wrong. Where a real ``kubectl`` exists,
``test_kustomize.py`` also checks that this build equals ``kubectl kustomize``.
"""

from __future__ import annotations

import base64
import copy
import re
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
API_VERSION = "kustomize.config.k8s.io/v1beta1"

#: kinds this builder knows the scope of; any other kind is refused (it could not tell
#: whether the namespace applies)
NAMESPACED_KINDS = frozenset({
    "ConfigMap", "Secret", "Service", "ServiceAccount", "PersistentVolumeClaim", "Pod",
    "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Role", "RoleBinding",
})
CLUSTER_KINDS = frozenset({"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"})

_FIELDS = {"apiVersion", "kind", "namespace", "labels", "resources", "secretGenerator", "generatorOptions"}
_LABEL_FIELDS = {"pairs", "includeSelectors", "includeTemplates"}
_SECRET_GENERATOR_FIELDS = {"name", "type", "envs"}
_GENERATOR_OPTION_FIELDS = {"disableNameSuffixHash"}
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class KustomizeError(Exception):
    """The kustomization uses something this builder does not implement, or is invalid."""


def resource_id(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    """(apiVersion, kind, namespace, name): how kustomize tells objects apart."""
    meta = obj.get("metadata") or {}
    return obj.get("apiVersion", ""), obj.get("kind", ""), meta.get("namespace") or "", meta.get("name", "")


def find_kustomization(directory: Path) -> Path:
    found = [directory / n for n in KUSTOMIZATION_NAMES if (directory / n).is_file()]
    if len(found) != 1:
        raise KustomizeError(f"{directory}: expected exactly one of {KUSTOMIZATION_NAMES}, found {len(found)}")
    return found[0]


def load_kustomization(directory: Path) -> dict[str, Any]:
    path = find_kustomization(directory)
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise KustomizeError(f"{path}: not a mapping")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise KustomizeError(f"{path}: fields not implemented by this builder: {', '.join(unknown)}")
    if data.get("apiVersion", API_VERSION) != API_VERSION or data.get("kind", "Kustomization") != "Kustomization":
        raise KustomizeError(f"{path}: expected apiVersion {API_VERSION} and kind Kustomization")
    return data


def _local_file(directory: Path, entry: Any, what: str) -> Path:
    """A file named relative to the kustomization, inside its directory."""
    if not isinstance(entry, str) or not entry:
        raise KustomizeError(f"{what}: expected a file name, got {entry!r}")
    if "://" in entry or entry.startswith(("github.com/", "git@")):
        raise KustomizeError(f"{what}: remote resources are not implemented: {entry}")
    pure = PurePosixPath(entry)
    if pure.is_absolute() or ".." in pure.parts:
        raise KustomizeError(f"{what}: only files inside the kustomization's directory are implemented: {entry}")
    path = directory / pure
    if path.is_dir():
        raise KustomizeError(f"{what}: directories (nested kustomizations) are not implemented: {entry}")
    if not path.is_file():
        raise KustomizeError(f"{what}: no such file: {entry}")
    return path


def load_resource_file(path: Path) -> list[dict[str, Any]]:
    objects = []
    for doc in yaml.safe_load_all(path.read_text()):
        if doc is None:
            continue
        if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
            raise KustomizeError(f"{path}: every document must be an object with apiVersion and kind")
        if not (doc.get("metadata") or {}).get("name"):
            raise KustomizeError(f"{path}: a {doc['kind']} has no metadata.name")
        if doc["kind"].endswith("List"):
            raise KustomizeError(f"{path}: List objects are not implemented")
        objects.append(doc)
    return objects


def parse_env_file(text: str, source: str = "env file") -> dict[str, str]:
    """KEY=VALUE lines as kustomize reads them: leading blanks and ``#`` lines skipped, the value
    taken verbatim after the first ``=`` (no quotes removed, no trailing comment stripped)."""
    pairs: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.removeprefix("\ufeff") if number == 1 else raw
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            # kustomize would take the value from its own environment: never what a test wants
            raise KustomizeError(f"{source}:{number}: {line!r} has no '=' "
                                 "(a value from the environment is not implemented)")
        key, value = line.split("=", 1)
        if not _ENV_NAME.match(key):
            raise KustomizeError(f"{source}:{number}: {key!r} is not a valid key")
        if key in pairs:
            raise KustomizeError(f"{source}:{number}: duplicate key {key}")
        pairs[key] = value
    return pairs


def _labels(kustomization: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for entry in kustomization.get("labels") or []:
        if not isinstance(entry, dict):
            raise KustomizeError(f"labels: expected a mapping, got {entry!r}")
        unknown = sorted(set(entry) - _LABEL_FIELDS)
        if unknown:
            raise KustomizeError(f"labels: fields not implemented by this builder: {', '.join(unknown)}")
        for flag in ("includeSelectors", "includeTemplates"):
            if entry.get(flag, False) is not False:
                raise KustomizeError(f"labels: {flag}: true is not implemented (only metadata.labels)")
        pairs = entry.get("pairs") or {}
        if not isinstance(pairs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in pairs.items()):
            raise KustomizeError(f"labels: pairs must map strings to strings, got {pairs!r}")
        labels.update(pairs)
    return labels


def _generate_secrets(directory: Path, kustomization: dict[str, Any]) -> list[dict[str, Any]]:
    generators = kustomization.get("secretGenerator") or []
    if not generators:
        return []
    options = kustomization.get("generatorOptions") or {}
    unknown = sorted(set(options) - _GENERATOR_OPTION_FIELDS)
    if unknown:
        raise KustomizeError(f"generatorOptions: fields not implemented by this builder: {', '.join(unknown)}")
    if options.get("disableNameSuffixHash") is not True:
        raise KustomizeError("secretGenerator: the name suffix hash is not implemented; "
                             "set generatorOptions.disableNameSuffixHash: true")
    secrets = []
    for generator in generators:
        unknown = sorted(set(generator) - _SECRET_GENERATOR_FIELDS)
        if unknown:
            raise KustomizeError(f"secretGenerator: fields not implemented by this builder: {', '.join(unknown)}")
        name = generator.get("name")
        if not name:
            raise KustomizeError("secretGenerator: name is required")
        data: dict[str, str] = {}
        for entry in generator.get("envs") or []:
            path = _local_file(directory, entry, f"secretGenerator {name}: envs")
            for key, value in parse_env_file(path.read_text(), str(path)).items():
                if key in data:
                    raise KustomizeError(f"secretGenerator {name}: duplicate key {key}")
                data[key] = base64.b64encode(value.encode()).decode()
        secrets.append({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "type": generator.get("type") or "Opaque",
            "data": data,
        })
    return secrets


def _set_namespace(obj: dict[str, Any], namespace: str) -> None:
    kind = obj["kind"]
    if kind in CLUSTER_KINDS:
        if kind == "Namespace" and obj["metadata"]["name"] != namespace:
            # kustomize renames such a Namespace; not implemented
            raise KustomizeError(f"Namespace {obj['metadata']['name']} differs from namespace: {namespace}")
        return
    if kind not in NAMESPACED_KINDS:
        raise KustomizeError(f"{kind}: scope unknown to this builder (add it to NAMESPACED_KINDS or CLUSTER_KINDS)")
    obj["metadata"]["namespace"] = namespace
    if kind in ("RoleBinding", "ClusterRoleBinding"):
        for subject in obj.get("subjects") or []:
            if subject.get("kind") == "ServiceAccount" and subject.get("namespace") != namespace:
                # kustomize rewrites some of these; which ones is not implemented here
                raise KustomizeError(f"{kind} {obj['metadata']['name']}: ServiceAccount subject "
                                     f"{subject.get('name')} must name namespace {namespace} itself")


def build(directory: Path | str) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize directory`` would print (in resource order, not kustomize's)."""
    directory = Path(directory)
    kustomization = load_kustomization(directory)
    resources = kustomization.get("resources") or []
    if not isinstance(resources, list):
        raise KustomizeError("resources: expected a list")
    objects: list[dict[str, Any]] = []
    for entry in resources:
        objects += copy.deepcopy(load_resource_file(_local_file(directory, entry, "resources")))
    objects += _generate_secrets(directory, kustomization)

    namespace = kustomization.get("namespace")
    labels = _labels(kustomization)
    for obj in objects:
        obj.setdefault("metadata", {})
        if namespace:
            _set_namespace(obj, namespace)
        elif obj["kind"] not in CLUSTER_KINDS | NAMESPACED_KINDS:
            raise KustomizeError(f"{obj['kind']}: kind unknown to this builder")
        if labels:
            obj["metadata"]["labels"] = {**(obj["metadata"].get("labels") or {}), **labels}

    seen: set[tuple[str, str, str, str]] = set()
    for obj in objects:
        rid = resource_id(obj)
        if rid in seen:
            raise KustomizeError(f"two objects with the same id {rid}")
        seen.add(rid)
    return objects
