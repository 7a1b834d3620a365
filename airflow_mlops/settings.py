"""The provider's settings, typed and resolved once.

Each ``[mlops]`` option (:data:`airflow_mlops.config.OPTIONS`) is a field of :class:`MlopsSettings`
with its type. :meth:`MlopsSettings.resolve` takes every value from the first place that has it —
the hook's or operator's argument, the extra of the ``mlops`` connection, the ``[mlops]`` section
(or ``AIRFLOW__MLOPS__<NAME>``), the default — and converts it once: a value of the wrong type is
refused there, naming the setting and what it must be. Hooks hold one :class:`MlopsSettings` and read
its fields; nothing re-parses a setting's text afterwards.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from airflow_mlops import config
from airflow_mlops.exceptions import InvalidArgumentError

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class MlopsSettings:
    """Every ``[mlops]`` setting (see :data:`airflow_mlops.config.OPTIONS` for what each means).

    Settings that may name a value per runtime (``kubernetes_image``, the ``pip_*`` ones: a value,
    or a JSON object by runtime) stay text here and are read per runtime where they are used.
    """

    backend: str = "local"
    state_dir: str = ""
    data_root: str = ""
    min_examples: int = 1
    pipeline_root: str = ""
    model_root: str = ""
    metadata_uri: str = ""
    runtime_cache_dir: str = ""
    runtime_isolation: str = "auto"
    build_runtimes_on_demand: bool = True
    warm_runtimes: bool = True
    warm_runtime_idle_timeout: float = 600.0
    max_warm_runtimes: int = 3
    debian_mirror: str = ""
    pip_index_url: str = ""
    pip_extra_index_urls: str = ""
    pip_find_links: str = ""
    pip_trusted_hosts: str = ""
    pip_offline: str = "False"
    pip_spec_indexes: str = "True"
    prediction_log: str = ""
    training_spans: int = 1
    feedback_root: str = ""
    kubernetes_conn_id: str = "kubernetes_default"
    kubernetes_namespace: str = ""
    kubernetes_image: str = ""
    kubernetes_serving_image: str = ""
    kubernetes_service_account: str = ""
    kubernetes_volume_claim: str = ""
    kubernetes_resources: dict[str, Any] = field(default_factory=dict)
    kubernetes_node_selector: dict[str, Any] = field(default_factory=dict)
    kubernetes_tolerations: list[Any] = field(default_factory=list)
    kubernetes_on_finish_action: str = "delete_succeeded_pod"
    kubernetes_startup_timeout: int = 600
    seldon_crd_path: str = ""

    @classmethod
    def resolve(cls, arguments: Mapping[str, Any] | None = None,
                extras: Mapping[str, Any] | None = None) -> MlopsSettings:
        """Each setting from ``arguments``, else ``extras`` (the connection's), else ``[mlops]``, else its default."""
        arguments, extras = arguments or {}, extras or {}
        unknown = sorted(set(arguments) - set(config.OPTIONS))
        if unknown:
            raise InvalidArgumentError(f"unknown setting(s) {unknown}; the [mlops] settings are {sorted(config.OPTIONS)}")
        values = {}
        for option in fields(cls):
            value = arguments.get(option.name)
            if value is None:
                value = extras.get(option.name)
            if value is None or value == "":
                value = config.get_option(option.name)
            values[option.name] = _convert(option.name, str(option.type), value)
        return cls(**values)

    def replace(self, **changes: Any) -> MlopsSettings:
        """These settings with ``changes`` (converted as :meth:`resolve` converts)."""
        types = {option.name: str(option.type) for option in fields(self)}
        return dataclasses.replace(self, **{k: _convert(k, types[k], v) for k, v in changes.items()})

    def text(self, name: str) -> str:
        """A text setting by name (for readers that take a getter, e.g. the ``pip_*`` ones)."""
        value = getattr(self, name)
        if not isinstance(value, str):
            raise TypeError(f"setting {name} is a {type(value).__name__}, not text")
        return value


def _convert(name: str, kind: str, value: Any) -> Any:
    """``value`` (text from the config, or what an argument or a connection extra holds) as ``kind``."""
    where = f"[mlops] {name}"
    if kind == "str":
        return json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in TRUE or text in FALSE:
            return text in TRUE
        raise InvalidArgumentError(f"{where} must be true or false, got {value!r}")
    if kind in ("int", "float"):
        if isinstance(value, bool):
            raise InvalidArgumentError(f"{where} must be a number, got {value!r}")
        try:
            return int(str(value).strip()) if kind == "int" else float(str(value).strip())
        except ValueError:
            raise InvalidArgumentError(
                f"{where} must be a number{' (a whole one)' if kind == 'int' else ''}, got {value!r}"
            ) from None
    expected = dict if kind.startswith("dict") else list
    if isinstance(value, expected):
        return value
    text = str(value).strip()
    if not text:
        return expected()
    try:
        parsed = json.loads(text)
    except ValueError as err:
        raise InvalidArgumentError(f"{where} must be JSON, got {text!r}: {err}") from None
    if not isinstance(parsed, expected):
        raise InvalidArgumentError(f"{where} must be a JSON {expected.__name__}, got {text!r}")
    return parsed
