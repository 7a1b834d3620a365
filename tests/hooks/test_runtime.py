from __future__ import annotations

import json
import time

from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_mlops.exceptions import MlopsException, RuntimeStepFailed, RuntimeUnavailableError
from airflow_mlops.hooks.runtime import RuntimeHook, parse_metadata_uri
from airflow_mlops.runtimes import specs
from airflow_mlops.runtimes.specs import RuntimeSpec


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("sqlite:////srv/m/mlmd.sqlite", {"sqlite": "/srv/m/mlmd.sqlite"}),
        (
            "mysql://ml:p%40ss@db.local:3307/mlmd",
            {"mysql": {"host": "db.local", "port": 3307, "database": "mlmd", "user": "ml", "password": "p@ss"}},
        ),
        ("mysql://db/mlmd", {"mysql": {"host": "db", "port": 3306, "database": "mlmd", "user": "", "password": ""}}),
    ],
)
def test_parse_metadata_uri(uri, expected):
    assert parse_metadata_uri(uri) == expected


@pytest.mark.parametrize(
    "uri, message",
    [("sqlite:///relative.db", "must be absolute"), ("postgres://x/y", "scheme must be"), ("mysql://host", "expected mysql://")],
)
def test_parse_metadata_uri_errors(uri, message):
    with pytest.raises(MlopsException, match=message):
        parse_metadata_uri(uri)


def test_settings_order_argument_then_connection_then_config_then_default(clean_mlops_env, tmp_path):
    mp = clean_mlops_env
    mp.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    assert RuntimeHook().state_dir == tmp_path / "home" / "mlops"  # default
    mp.setenv("AIRFLOW__MLOPS__STATE_DIR", str(tmp_path / "config"))
    assert RuntimeHook().state_dir == tmp_path / "config"  # [mlops] config
    mp.setenv("AIRFLOW_CONN_MLOPS_DEFAULT", json.dumps({"conn_type": "mlops", "extra": {"state_dir": str(tmp_path / "conn")}}))
    assert RuntimeHook().state_dir == tmp_path / "conn"  # connection extra
    assert RuntimeHook(state_dir=str(tmp_path / "arg")).state_dir == tmp_path / "arg"  # argument
    assert RuntimeHook(mlops_conn_id="missing").state_dir == tmp_path / "config"  # missing connection: ignored


def test_derived_paths(clean_mlops_env, tmp_path):
    hook = RuntimeHook(state_dir=str(tmp_path))
    assert hook.metadata == {"sqlite": str(tmp_path / "metadata" / "mlmd.sqlite")}
    assert hook.pipeline_root("taxi") == str(tmp_path / "pipelines" / "taxi")
    assert hook.pipeline_root("taxi", "/data/{pipeline_name}/root") == "/data/taxi/root"
    clean_mlops_env.setenv("AIRFLOW__MLOPS__METADATA_URI", "mysql://u:p@h/db")
    assert RuntimeHook(state_dir=str(tmp_path)).metadata["mysql"]["host"] == "h"


def test_unknown_backend_is_rejected(clean_mlops_env):
    with pytest.raises(MlopsException, match="backend must be one of"):
        _ = RuntimeHook(backend="docker").backend
    with pytest.raises(MlopsException, match="backend must be one of"):
        RuntimeHook(backend="docker").runner()


def test_runners_get_a_context_made_once_not_the_hook(clean_mlops_env, tmp_path):
    hook = RuntimeHook(runtime="tfx", mlops_conn_id=None, state_dir=str(tmp_path), warm=False)
    runner = hook.runner()
    assert runner.ctx is hook.runner_context and not hasattr(runner, "hook")
    ctx = runner.ctx
    assert (ctx.runtime, ctx.settings, ctx.state_dir, ctx.log) == ("tfx", hook.settings, tmp_path, hook.log)
    assert hook.replace(warm_runtimes=True).runner().ctx.settings.warm_runtimes


@pytest.fixture
def small_runtime(tmp_path, monkeypatch, clean_mlops_env):
    """A real venv runtime (one package) registered as 'small', in a private cache."""
    lock = tmp_path / "small.txt"
    lock.write_text("six==1.17.0\n")
    monkeypatch.setitem(specs.RUNTIMES, "small", RuntimeSpec(name="small", description="", lock_file=str(lock)))
    hook = RuntimeHook(
        runtime="small", mlops_conn_id=None, state_dir=str(tmp_path / "state"),
        runtime_cache_dir=str(tmp_path / "cache"), isolation="venv",
    )
    started = time.time()
    yield hook
    from airflow_mlops.runtimes.warm import stop_all

    stop_all(newer_than=started - 1)


def test_run_step_in_a_real_venv_runtime(small_runtime):
    outputs = small_runtime.run_step("runtime.info", {"packages": ["six", "tfx"]})
    assert outputs["packages"] == {"six": "1.17.0", "tfx": None}
    assert outputs["executable"].startswith(str(small_runtime.cache_dir))


def test_failed_step_raises_with_the_runtime_message(small_runtime):
    with pytest.raises(RuntimeStepFailed, match="unknown step 'no.such'") as info:
        small_runtime.run_step("no.such", {})
    assert info.value.step == "no.such"
    assert info.value.error["type"] == "ContractError"
    assert isinstance(info.value, AirflowFailException)  # a bad request is not retried


def test_missing_runtime_without_on_demand_build(small_runtime):
    hook = RuntimeHook(runtime="small", mlops_conn_id=None, state_dir=small_runtime.settings.state_dir,
                       runtime_cache_dir=str(small_runtime.cache_dir) + "-empty", isolation="venv",
                       build_on_demand=False)
    with pytest.raises(RuntimeUnavailableError, match="airflow-mlops runtime build small"):
        hook.run_step("runtime.info", {})


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "fresh-process"])
def test_runtime_that_dies_without_a_result(small_runtime, warm):
    with pytest.raises(RuntimeStepFailed, match="exited with code 3 and no usable result: the runtime wrote no result"):
        small_runtime.replace(warm_runtimes=warm).run_step("runtime.info", {"exit": 3})


def test_warm_and_fresh_processes_give_the_same_result(small_runtime):
    warm = small_runtime.replace(warm_runtimes=True).run_step("runtime.info", {"packages": ["six"]})
    fresh = small_runtime.replace(warm_runtimes=False).run_step("runtime.info", {"packages": ["six"]})
    per_process = {"pid", "tempdir"}
    assert {k: v for k, v in warm.items() if k not in per_process} == {
        k: v for k, v in fresh.items() if k not in per_process
    }


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "fresh-process"])
def test_each_step_gets_a_temporary_directory_that_is_removed(small_runtime, warm):
    """Libraries that leave mkdtemp() directories behind (TFX) must not fill /tmp."""
    small_runtime = small_runtime.replace(warm_runtimes=warm)
    outputs = small_runtime.run_step("runtime.info", {"temp_file": True})
    tempdir, temp_file = Path(outputs["tempdir"]), Path(outputs["temp_file"])
    assert tempdir.name.startswith("airflow-mlops-step-")
    assert tempdir in temp_file.parents
    assert not tempdir.exists(), f"the step's temporary directory {tempdir} was left behind"
    second = small_runtime.run_step("runtime.info", {})
    assert second["tempdir"] != outputs["tempdir"]


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "fresh-process"])
def test_a_runtime_that_dies_leaves_no_temporary_directory(small_runtime, warm, monkeypatch):
    import tempfile

    made: list[str] = []
    real_mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: made.append(real_mkdtemp(*a, **k)) or made[-1])
    with pytest.raises(RuntimeStepFailed, match="exited with code 3"):
        small_runtime.replace(warm_runtimes=warm).run_step("runtime.info", {"temp_file": True, "exit": 3})
    scratch = [path for path in made if Path(path).name.startswith("airflow-mlops-step-")]
    assert len(scratch) == 1 and not Path(scratch[0]).exists()


def test_step_timeout(small_runtime):
    for warm in (True, False):
        with pytest.raises(RuntimeStepFailed, match="timed out after 1 s"):
            small_runtime.replace(warm_runtimes=warm).run_step("runtime.info", {"sleep": 20}, timeout=1)


def test_one_warm_rootfs_runtime_serves_state_directories_outside_tmp(clean_mlops_env):
    """The TFX runtime (a root filesystem) keeps one warm server for every state directory: each step sees its
    own state directory, bound into the running server (nsenter) when it is not under /tmp (always visible)."""
    import os
    import shutil

    from airflow_mlops.runtimes.warm import socket_dir, stop_all

    from ..conftest import WORKER

    base = Path("/var/tmp") / f"airflow-mlops-{os.getuid()}-test-{WORKER}-states"
    shutil.rmtree(base, ignore_errors=True)
    started = time.time()
    servers_before = set(socket_dir().glob("tfx-*.sock"))
    try:
        seen = []
        for name in ("a", "b"):
            state = base / name
            state.mkdir(parents=True)
            (state / "mark.txt").write_text(f"state {name}\n")
            hook = RuntimeHook(runtime="tfx", mlops_conn_id=None, state_dir=str(state)).replace(warm_runtimes=True)
            seen.append(hook.run_step("runtime.info", {"read_file": str(state / "mark.txt")}))
        assert [r["file_text"] for r in seen] == ["state a\n", "state b\n"]
        # one server for both (started here, or already warm from an earlier test), never one per state directory
        assert len(set(socket_dir().glob("tfx-*.sock")) - servers_before) <= 1
    finally:
        stop_all(newer_than=started - 1)
        shutil.rmtree(base, ignore_errors=True)
