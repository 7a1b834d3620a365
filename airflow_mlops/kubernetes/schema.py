"""Checks of Kubernetes objects, shared by the controllers (SeldonDeployments, step pods, MPIJobs).

Names, labels, annotations and resource quantities as the API server checks them, and a CRD's
OpenAPI v3 schema as JSON Schema (the CRD files are read, never copied: ``validate`` a manifest
against the real schema). No Kubernetes client, no Airflow.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_QUANTITY = re.compile(
    r"^(?P<num>[+-]?(\d+(\.\d*)?|\.\d+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$"
)
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": -9,
    "u": -6,
    "m": -3,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}
_STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")


class ManifestError(ValueError):
    """A spec or manifest is invalid; ``errors`` holds one line per problem.

    Each line starts with the path of the offending field (``traffic``,
    ``predictors[1].name``, ``$.spec.predictors[0].replicas``).

    :param errors: one problem, or a list of them.
    :param context: what was being checked, put in front of the message.
    """

    def __init__(self, errors: str | Iterable[str], *, context: str = "") -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        self.context = context
        if len(self.errors) == 1:
            message = f"{context}: {self.errors[0]}" if context else self.errors[0]
        else:
            head = context or "invalid"
            lines = "\n".join(f"  - {e}" for e in self.errors)
            message = f"{head} ({len(self.errors)} problems):\n{lines}"
        super().__init__(message)


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def dns_label_errors(path: str, value: object) -> list[str]:
    if not isinstance(value, str) or not value:
        return [f"{path}: must be a non-empty string, got {value!r}"]
    if len(value) > 63 or not _DNS_LABEL.match(value):
        return [
            f"{path}: {value!r} is not a DNS-1123 label (at most 63 characters: "
            "lower-case letters, digits and '-', starting and ending with a letter "
            "or digit)"
        ]
    return []


def qualified_name_errors(path: str, key: object) -> list[str]:
    """Errors of a label or annotation key: ``[prefix/]name``."""
    if not isinstance(key, str) or not key:
        return [f"{path}: key must be a non-empty string, got {key!r}"]
    prefix, _, name = key.rpartition("/")
    problems = []
    if "/" in key and (
        not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)
    ):
        problems.append(
            f"{path}: prefix {prefix!r} of key {key!r} is not a DNS subdomain"
        )
    if len(name) > 63 or not _LABEL_NAME.match(name):
        problems.append(
            f"{path}: key {key!r} is not a valid Kubernetes label/annotation key "
            "(name part: at most 63 characters of [A-Za-z0-9-_.], alphanumeric at "
            "both ends)"
        )
    return problems


def label_errors(path: str, labels: object) -> list[str]:
    if not isinstance(labels, Mapping):
        return [f"{path}: must be a mapping of strings, got {type(labels).__name__}"]
    problems: list[str] = []
    for key, value in labels.items():
        problems += qualified_name_errors(f"{path}[{key!r}]", key)
        if not isinstance(value, str):
            problems.append(
                f"{path}[{key!r}]: label values are strings, got {value!r} "
                f"({type(value).__name__}); quote it"
            )
        elif value and (len(value) > 63 or not _LABEL_NAME.match(value)):
            problems.append(
                f"{path}[{key!r}]: {value!r} is not a valid label value (at most 63 "
                "characters of [A-Za-z0-9-_.], alphanumeric at both ends)"
            )
    return problems


def annotation_errors(path: str, annotations: object) -> list[str]:
    if not isinstance(annotations, Mapping):
        return [
            f"{path}: must be a mapping of strings, got {type(annotations).__name__}"
        ]
    problems: list[str] = []
    for key, value in annotations.items():
        problems += qualified_name_errors(f"{path}[{key!r}]", key)
        if not isinstance(value, str):
            problems.append(
                f"{path}[{key!r}]: annotation values are strings, got {value!r}"
            )
    return problems


def parse_quantity(value: int | str) -> Decimal | None:
    """The value of a Kubernetes quantity (``500m``, ``2Gi``, ``4``), or None."""
    if is_int(value):
        return Decimal(value)
    if not isinstance(value, str):
        return None
    match = _QUANTITY.match(value)
    if not match:
        return None
    try:
        number = Decimal(match["num"])
    except InvalidOperation:  # pragma: no cover - the regex admits only decimals
        return None
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number.scaleb(_DECIMAL[suffix])
    if suffix:
        return number.scaleb(int(suffix[1:]))
    return number


def resource_errors(path: str, resources: object) -> list[str]:
    """Errors of a container ``resources`` block (``requests``/``limits``)."""
    if not isinstance(resources, Mapping):
        return [f"{path}: must be a mapping with 'requests' and/or 'limits'"]
    problems: list[str] = []
    parsed: dict[str, dict[str, Decimal]] = {}
    for section, amounts in resources.items():
        where = f"{path}.{section}"
        if section not in ("requests", "limits"):
            problems.append(f"{where}: unknown key, expected 'requests' or 'limits'")
            continue
        if not isinstance(amounts, Mapping):
            problems.append(f"{where}: must be a mapping of resource name to quantity")
            continue
        parsed[section] = {}
        for name, amount in amounts.items():
            at = f"{where}[{name!r}]"
            if not isinstance(name, str) or (
                name not in _STANDARD_RESOURCES
                and not name.startswith("hugepages-")
                and "/" not in name
            ):
                hint = " (a GPU is 'nvidia.com/gpu')" if "gpu" in str(name) else ""
                problems.append(
                    f"{at}: unknown resource; use cpu, memory, ephemeral-storage or "
                    f"an extended resource like nvidia.com/gpu{hint}"
                )
                continue
            if isinstance(amount, float):
                problems.append(
                    f"{at}: {amount!r} is a float; Kubernetes quantities are integers "
                    f"or strings, write {str(amount)!r}"
                )
                continue
            quantity = parse_quantity(amount)
            if quantity is None:
                problems.append(
                    f"{at}: {amount!r} is not a Kubernetes quantity "
                    "(e.g. 2, '500m', '1.5', '4Gi')"
                )
                continue
            if quantity < 0:
                problems.append(f"{at}: must not be negative, got {amount!r}")
                continue
            if "/" in name and quantity != quantity.to_integral_value():
                problems.append(
                    f"{at}: extended resources such as {name} are whole units, "
                    f"got {amount!r}"
                )
                continue
            parsed[section][name] = quantity
    requests, limits = parsed.get("requests", {}), parsed.get("limits", {})
    for name, requested in requests.items():
        limit = limits.get(name)
        if "/" in name and limit is None:
            problems.append(
                f"{path}.limits[{name!r}]: required because {name} is requested; "
                "extended resources cannot be overcommitted (set limits only, or "
                "equal requests and limits)"
            )
        elif "/" in name and limit != requested:
            problems.append(
                f"{path}.requests[{name!r}]: must equal the limit for extended "
                f"resource {name} ({requested} != {limit})"
            )
        elif limit is not None and requested > limit:
            problems.append(
                f"{path}.requests[{name!r}]: request {requested} exceeds the "
                f"limit {limit}"
            )
    return problems


def openapi_to_jsonschema(schema: Mapping[str, Any], *, strict: bool = True) -> dict:
    """Translate a CRD's OpenAPI v3 schema into a JSON Schema (Draft 7) document.

    * ``nullable: true`` also admits ``null``;
    * ``x-kubernetes-int-or-string: true`` admits an integer or a string;
    * ``x-kubernetes-preserve-unknown-fields: true`` keeps unknown fields; other
      ``x-kubernetes-*`` keys are dropped (they drive server-side merging, not
      validation);
    * boolean ``exclusiveMinimum``/``exclusiveMaximum`` (OpenAPI 3.0) become numbers.

    :param schema: the ``openAPIV3Schema`` of one CRD version.
    :param strict: reject fields the schema does not declare. The API server prunes
        them silently, so a misspelt field would be lost without a word.
    """

    def convert(node: Any) -> Any:
        if not isinstance(node, Mapping):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key.startswith("x-kubernetes-") or key == "nullable":
                continue
            if key in ("properties", "patternProperties", "definitions"):
                out[key] = {name: convert(sub) for name, sub in value.items()}
            elif key in ("items", "additionalProperties", "not"):
                out[key] = (
                    [convert(sub) for sub in value]
                    if isinstance(value, list)
                    else convert(value)
                )
            elif key in ("anyOf", "allOf", "oneOf"):
                out[key] = [convert(sub) for sub in value]
            elif key in ("exclusiveMinimum", "exclusiveMaximum") and isinstance(
                value, bool
            ):
                bound = "minimum" if key == "exclusiveMinimum" else "maximum"
                if value and bound in node:
                    out[key] = node[bound]
            else:
                out[key] = value
        for key, bound in (
            ("exclusiveMinimum", "minimum"),
            ("exclusiveMaximum", "maximum"),
        ):
            if node.get(key) is True and bound in node:
                out.pop(bound, None)
        if node.get("x-kubernetes-int-or-string") is True:
            out["type"] = ["integer", "string"]
            if _is_int_or_string_anyof(out.get("anyOf")):
                del out["anyOf"]
        preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
        if strict and not preserve and "properties" in out:
            out.setdefault("additionalProperties", False)
        if node.get("nullable") is True:
            kind = out.get("type")
            if any(k in out for k in ("anyOf", "allOf", "oneOf", "not")):
                out = {"anyOf": [{"type": "null"}, out]}
            else:
                if isinstance(kind, str):
                    out["type"] = [kind, "null"]
                elif isinstance(kind, list) and "null" not in kind:
                    out["type"] = [*kind, "null"]
                if "enum" in out and None not in out["enum"]:
                    out["enum"] = [*out["enum"], None]
        return out

    return convert(schema)


def _is_int_or_string_anyof(any_of: object) -> bool:
    if not isinstance(any_of, list):
        return False
    types = sorted(
        str(sub.get("type")) for sub in any_of if isinstance(sub, Mapping) and len(sub) == 1
    )
    return len(types) == len(any_of) and types == ["integer", "string"]


@functools.lru_cache(maxsize=1)
def _format_checker() -> Any:
    """Range checks of the ``int32``/``int64`` formats (the operator's Go types)."""
    from jsonschema import FormatChecker

    checker = FormatChecker(formats=())
    for name, bits in (("int32", 32), ("int64", 64)):
        low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

        def check(value: object, low: int = low, high: int = high) -> bool:
            return not is_int(value) or low <= value <= high  # type: ignore[operator]

        checker.checks(name)(check)
    return checker


def schema_errors(
    instance: object, openapi_schema: Mapping[str, Any], *, strict: bool = True
) -> list[str]:
    """Every error of ``instance`` against an OpenAPI v3 schema, as ``$.path: message``.

    :param instance: the document to check.
    :param openapi_schema: an ``openAPIV3Schema`` (converted here).
    :param strict: see :func:`openapi_to_jsonschema`.
    """
    return instance_errors(instance, openapi_to_jsonschema(openapi_schema, strict=strict))


def instance_errors(instance: object, jsonschema_doc: Mapping[str, Any]) -> list[str]:
    from jsonschema import Draft7Validator

    validator = Draft7Validator(jsonschema_doc, format_checker=_format_checker())
    found = sorted(
        validator.iter_errors(instance),
        key=lambda e: ([(isinstance(p, str), p) for p in e.absolute_path], e.message),
    )
    lines = []
    for error in found:
        message = error.message
        if len(message) > 300:
            message = message[:297] + "..."
        lines.append(f"{error.json_path}: {message}")
    return lines


def version_schema(crd: Mapping[str, Any], version: str, where: str) -> dict:
    versions = crd.get("spec", {}).get("versions") or []
    for entry in versions:
        if entry.get("name") == version:
            return entry["schema"]["openAPIV3Schema"]
    names = ", ".join(str(v.get("name")) for v in versions)
    raise ManifestError(f"{where}: CRD has no version {version!r} (it has: {names})")


def crd_file(crd_path: str | os.PathLike[str], filename: str) -> Path:
    """The CRD file: ``crd_path`` itself, or ``filename`` in that folder."""
    path = Path(crd_path)
    return path / filename if path.is_dir() else path


@functools.lru_cache(maxsize=16)
def _load_crd(path: str, mtime_ns: int, size: int, kind: str) -> dict:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path, encoding="utf-8") as stream:
        for document in yaml.load_all(stream, Loader=loader):
            if (
                isinstance(document, dict)
                and document.get("kind") == "CustomResourceDefinition"
                and document.get("spec", {}).get("names", {}).get("kind") == kind
            ):
                return document
    raise ManifestError(f"{path}: no CustomResourceDefinition of kind {kind}")


def load_crd(crd_path: str | os.PathLike[str], filename: str, kind: str) -> tuple[Path, dict]:
    """The CRD of ``kind`` (read once per file version) and its file.

    :raises FileNotFoundError: naming the path, when the file is not there.
    :raises ManifestError: when the file holds no CRD of ``kind``.
    """
    path = crd_file(crd_path, filename)
    if not path.is_file():
        raise FileNotFoundError(f"{kind} CRD not found at {path}")
    stat = path.stat()
    return path, _load_crd(str(path.resolve()), stat.st_mtime_ns, stat.st_size, kind)


@functools.lru_cache(maxsize=16)
def _converted(path: str, mtime_ns: int, size: int, kind: str, version: str, strict: bool) -> dict:
    return openapi_to_jsonschema(version_schema(_load_crd(path, mtime_ns, size, kind), version, path), strict=strict)


def crd_jsonschema(crd_path: str | os.PathLike[str], filename: str, kind: str, version: str, *,
                   strict: bool = True) -> tuple[Path, dict]:
    """The JSON Schema of ``version`` of the CRD of ``kind`` (converted once per file version), and its file."""
    path, _ = load_crd(crd_path, filename, kind)
    stat = path.stat()
    return path, _converted(str(path.resolve()), stat.st_mtime_ns, stat.st_size, kind, version, strict)


def crd_version_schema(crd_path: str | os.PathLike[str], filename: str, kind: str, version: str) -> dict:
    """The ``openAPIV3Schema`` of ``version`` of the CRD of ``kind`` (a copy)."""
    path, crd = load_crd(crd_path, filename, kind)
    return copy.deepcopy(version_schema(crd, version, str(path)))


def manifest_errors(manifest: Mapping[str, Any], crd_path: str | os.PathLike[str], filename: str, group: str,
                    kind: str, version: str, *, strict: bool = True) -> tuple[Path, list[str]]:
    """``(the CRD's file, the errors)`` of ``manifest`` against ``version`` of the CRD of ``kind``: its apiVersion
    and kind, then its schema, each error with its JSON path."""
    path, schema = crd_jsonschema(crd_path, filename, kind, version, strict=strict)
    problems = []
    if manifest.get("apiVersion") != f"{group}/{version}" or manifest.get("kind") != kind:
        problems.append(f"$: must be {group}/{version} {kind}, got {manifest.get('apiVersion')} {manifest.get('kind')}")
    return path, problems + instance_errors(manifest, schema)


def refuse_invalid(manifest: Mapping[str, Any], kind: str, path: Path, problems: list[str]) -> None:
    """Raise :class:`ManifestError` naming the manifest, the CRD file and every problem; nothing when none."""
    if problems:
        raise ManifestError(f"{kind} {(manifest.get('metadata') or {}).get('name')!r} is invalid against {path}:\n  "
                            + "\n  ".join(problems))
