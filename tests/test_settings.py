"""The typed settings: one field per [mlops] option, resolved once, converted once, errors naming the setting."""

from __future__ import annotations

import dataclasses
import json

import pytest

from airflow_mlops import config
from airflow_mlops.exceptions import InvalidArgumentError
from airflow_mlops.hooks.runtime import RuntimeHook
from airflow_mlops.hooks.seldon import SeldonHook
from airflow_mlops.settings import MlopsSettings


def test_every_option_is_a_field_and_every_field_an_option():
    assert [f.name for f in dataclasses.fields(MlopsSettings)] == list(config.OPTIONS)


def test_the_defaults_are_the_documented_ones_typed(clean_mlops_env):
    settings = MlopsSettings.resolve()
    assert settings.backend == "local" and settings.warm_runtimes is True
    assert settings.max_warm_runtimes == 3 and settings.warm_runtime_idle_timeout == 600.0
    assert settings.kubernetes_startup_timeout == 600 and settings.min_examples == 1
    assert settings.kubernetes_resources == {} and settings.kubernetes_tolerations == []
    for option in dataclasses.fields(MlopsSettings):  # each documented default converts to the field's type
        value = getattr(settings, option.name)
        assert type(value).__name__ == str(option.type).split("[")[0], option.name


def test_argument_then_connection_extra_then_config_then_default(clean_mlops_env):
    clean_mlops_env.setenv("AIRFLOW__MLOPS__MAX_WARM_RUNTIMES", "5")
    assert MlopsSettings.resolve().max_warm_runtimes == 5
    assert MlopsSettings.resolve(extras={"max_warm_runtimes": 7}).max_warm_runtimes == 7
    assert MlopsSettings.resolve({"max_warm_runtimes": "2"}, {"max_warm_runtimes": 7}).max_warm_runtimes == 2
    assert MlopsSettings.resolve({"max_warm_runtimes": None}, {"max_warm_runtimes": ""}).max_warm_runtimes == 5


@pytest.mark.parametrize(("name", "given", "expected"), [
    ("warm_runtimes", "False", False), ("warm_runtimes", "on", True), ("warm_runtimes", False, False),
    ("warm_runtime_idle_timeout", "2.5", 2.5), ("min_examples", "10", 10),
    ("kubernetes_resources", '{"requests": {"cpu": "1"}}', {"requests": {"cpu": "1"}}),
    ("kubernetes_resources", {"limits": {"memory": "1Gi"}}, {"limits": {"memory": "1Gi"}}),  # a connection's JSON
    ("kubernetes_tolerations", '[{"key": "gpu"}]', [{"key": "gpu"}]),
    ("kubernetes_image", {"tfx": "a", "serving": "b"}, json.dumps({"tfx": "a", "serving": "b"})),  # per runtime
])
def test_values_are_converted_once_to_the_settings_type(clean_mlops_env, name, given, expected):
    assert getattr(MlopsSettings.resolve({name: given}), name) == expected


@pytest.mark.parametrize(("name", "given", "message"), [
    ("warm_runtimes", "maybe", r"\[mlops\] warm_runtimes must be true or false, got 'maybe'"),
    ("max_warm_runtimes", "three", r"\[mlops\] max_warm_runtimes must be a number \(a whole one\), got 'three'"),
    ("warm_runtime_idle_timeout", "soon", r"\[mlops\] warm_runtime_idle_timeout must be a number, got 'soon'"),
    ("kubernetes_resources", "{cpu: 1", r"\[mlops\] kubernetes_resources must be JSON, got '\{cpu: 1'"),
    ("kubernetes_node_selector", '["a"]', r"\[mlops\] kubernetes_node_selector must be a JSON dict"),
])
def test_a_value_of_the_wrong_type_is_refused_naming_the_setting(clean_mlops_env, name, given, message):
    with pytest.raises(InvalidArgumentError, match=message):
        MlopsSettings.resolve({name: given})


def test_an_unknown_setting_is_named(clean_mlops_env):
    with pytest.raises(InvalidArgumentError, match=r"unknown setting\(s\) \['warm_runtime'\]"):
        MlopsSettings.resolve({"warm_runtime": True})


def test_hooks_resolve_once_and_share_one_settings_object(clean_mlops_env, tmp_path):
    clean_mlops_env.setenv("AIRFLOW_CONN_MLOPS_DEFAULT", json.dumps(
        {"conn_type": "mlops", "extra": {"state_dir": str(tmp_path), "kubernetes_namespace": "ml"}}))
    hook = RuntimeHook()
    assert hook.settings is hook.settings  # resolved once
    assert hook.settings.kubernetes_namespace == "ml" and hook.state_dir == tmp_path
    seldon = SeldonHook()
    assert seldon.runtime_hook.settings.kubernetes_namespace == "ml"
    changed = hook.replace(warm_runtimes=False)
    assert changed.settings.warm_runtimes is False and hook.settings.warm_runtimes is True
    assert changed.settings.state_dir == str(tmp_path)
