from __future__ import annotations

import importlib
import subprocess
from importlib.metadata import entry_points

from airflow_mlops.config import OPTIONS
from airflow_mlops.get_provider_info import get_provider_info

from .conftest import BIN


def test_entry_point_is_registered():
    eps = [ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("airflow_mlops")]
    assert [ep.value for ep in eps] == ["airflow_mlops.get_provider_info:get_provider_info"]
    assert eps[0].load()() == get_provider_info()


def test_provider_info_declares_importable_modules_and_config():
    info = get_provider_info()
    assert info["name"] and info["description"] and info["package-name"] == "airflow-mlops"
    for kind in ("operators", "hooks"):
        for entry in info[kind]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    for conn in info["connection-types"]:
        module, _, cls = conn["hook-class-name"].rpartition(".")
        assert getattr(importlib.import_module(module), cls).conn_type == conn["connection-type"]
    options = info["config"]["mlops"]["options"]
    assert set(options) == set(OPTIONS)
    assert all(opt["description"] and "default" in opt for opt in options.values())


def test_airflow_lists_the_provider(tmp_path):
    out = subprocess.run([str(BIN / "airflow"), "providers", "list"], capture_output=True, text=True,
                         env={"AIRFLOW_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "airflow-mlops" in out.stdout
