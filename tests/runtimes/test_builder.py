from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from airflow_mlops.runtimes import builder
from airflow_mlops.runtimes.builder import (
    RuntimeBuildError,
    choose_isolation,
    ensure_runtime,
    find_runtime,
    install_path,
    list_runtimes,
    prune_runtimes,
)
from airflow_mlops.runtimes.local import READY_FILE
from airflow_mlops.runtimes.specs import RUNTIMES, RuntimeSpec, get_runtime_spec


@pytest.fixture
def lock(tmp_path) -> Path:
    path = tmp_path / "small.txt"
    path.write_text("six==1.17.0\n")
    return path


@pytest.fixture
def small_spec(lock) -> RuntimeSpec:
    """A tiny real runtime: a virtualenv with one pinned package."""
    return RuntimeSpec(name="small", description="test", lock_file=str(lock), probe="import six")


def test_packaged_tfx_lock_pins_every_package():
    text = get_runtime_spec("tfx").lock_text()
    reqs = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert "tfx==1.21.0" in reqs and "tensorflow==2.21.0" in reqs
    assert all("==" in line for line in reqs), [line for line in reqs if "==" not in line]


def test_unknown_runtime_names_the_known_ones():
    with pytest.raises(KeyError, match="known runtimes: drift, serving, tfx"):
        get_runtime_spec("nope")


def test_cache_key_follows_the_lock_file(small_spec, lock):
    before = small_spec.cache_key("venv")
    assert before == small_spec.cache_key("venv")
    assert before != small_spec.cache_key("rootfs")
    lock.write_text("six==1.16.0\n")
    assert small_spec.cache_key("venv") != before


@pytest.mark.parametrize(
    "glibc, min_glibc, expected",
    [((2, 36), (2, 39), "rootfs"), ((2, 39), (2, 39), "venv"), ((2, 41), (2, 39), "venv"), (None, (2, 39), "rootfs"),
     ((2, 36), None, "venv")],
)
def test_choose_isolation(monkeypatch, glibc, min_glibc, expected):
    monkeypatch.setattr(builder, "host_glibc", lambda: glibc)
    spec = RuntimeSpec(name="x", description="", lock_file="tfx.txt", min_glibc=min_glibc)
    assert choose_isolation(spec) == expected
    assert choose_isolation(spec, "venv") == "venv"


def test_choose_isolation_rejects_unknown():
    with pytest.raises(ValueError, match="isolation must be one of"):
        choose_isolation(RUNTIMES["tfx"], "docker")


def test_host_glibc_is_read():
    assert builder.host_glibc() is None or builder.host_glibc() >= (2, 17)


def test_build_venv_runtime_then_reuse(tmp_path, small_spec):
    logs: list[str] = []
    install = ensure_runtime(small_spec, tmp_path / "cache", isolation="venv", log=logs.append)
    assert install.path == install_path(tmp_path / "cache", small_spec, "venv")
    meta = json.loads((install.path / READY_FILE).read_text())
    assert meta["name"] == "small" and meta["key"] == small_spec.cache_key("venv")
    assert any("ready at" in line for line in logs)
    # second call: no build
    again: list[str] = []
    assert ensure_runtime(small_spec, tmp_path / "cache", isolation="venv", log=again.append) == install
    assert again == []
    rows = {(r.name, r.state) for r in list_runtimes(tmp_path / "cache", isolation="venv")}
    assert ("tfx", "not built") in rows


def test_failed_build_leaves_no_cache_entry(tmp_path, lock):
    lock.write_text("this-package-does-not-exist-airflow-mlops==0.0.1\n")
    spec = RuntimeSpec(name="broken", description="", lock_file=str(lock))
    with pytest.raises(RuntimeBuildError, match="pip install -r .* failed"):
        ensure_runtime(spec, tmp_path / "cache", isolation="venv", log=lambda _: None)
    assert find_runtime(spec, tmp_path / "cache", "venv") is None
    leftovers = [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []


def test_failed_probe_leaves_no_cache_entry(tmp_path, lock):
    spec = RuntimeSpec(name="probe", description="", lock_file=str(lock), probe="import not_installed_module")
    with pytest.raises(RuntimeBuildError, match="probe"):
        ensure_runtime(spec, tmp_path / "cache", isolation="venv", log=lambda _: None)
    assert find_runtime(spec, tmp_path / "cache", "venv") is None


def test_leftovers_of_a_killed_build_are_removed(tmp_path, small_spec):
    cache = tmp_path / "cache"
    final = install_path(cache, small_spec, "venv")
    partial = final.with_name(f".{final.name}.partial-99999")
    (partial / "bin").mkdir(parents=True)
    assert [r.state for r in list_runtimes(cache, sizes=False) if r.path == str(partial)] == ["partial"]
    logs: list[str] = []
    ensure_runtime(small_spec, cache, isolation="venv", log=logs.append)
    assert not partial.exists()
    assert any("leftovers of an unfinished build" in line for line in logs)


def test_concurrent_builds_build_once(tmp_path, small_spec, monkeypatch):
    calls = []
    real = builder._build_venv

    def counting(spec, target, log, cache_dir=None, sources=None):
        calls.append(target)
        real(spec, target, log, cache_dir, sources)

    monkeypatch.setattr(builder, "_build_venv", counting)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(ensure_runtime(small_spec, tmp_path / "c", isolation="venv", log=lambda _: None)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert results[0] == results[1]


def test_missing_runtime_without_build_says_how(tmp_path, small_spec):
    with pytest.raises(RuntimeBuildError, match="airflow-mlops runtime build small"):
        ensure_runtime(small_spec, tmp_path, isolation="venv", build=False)


def test_prune_removes_stale_builds(tmp_path, small_spec, lock):
    cache = tmp_path / "cache"
    old = ensure_runtime(small_spec, cache, isolation="venv", log=lambda _: None)
    lock.write_text("six==1.16.0\n")  # the lock moved on: the old build is stale
    new = ensure_runtime(small_spec, cache, isolation="venv", log=lambda _: None)
    assert old.path != new.path
    # list_runtimes only knows packaged specs; the 'small' builds show up as stale entries
    states = {r.path: r.state for r in list_runtimes(cache, sizes=True)}
    assert states[str(old.path)] == "stale"
    removed = prune_runtimes(cache, log=lambda _: None)
    assert str(old.path) in removed and not old.path.exists()


def test_rootfs_build_needs_root(monkeypatch, tmp_path):
    monkeypatch.setattr(builder.os, "geteuid", lambda: 1000)
    with pytest.raises(RuntimeBuildError, match="needs root"):
        builder._require_rootfs_tools()


def test_source_build_in_a_venv_is_cached_and_reused(tmp_path):
    from airflow_mlops.runtimes.specs import SourceBuild

    lock = tmp_path / "lock.txt"
    lock.write_text("setuptools==69.5.1\nwheel==0.43.0\n")
    build = SourceBuild(requirement="six==1.16.0")
    spec = RuntimeSpec(name="src", description="", lock_file=str(lock), source_builds=(build,), probe="import six")
    logs: list[str] = []
    install = ensure_runtime(spec, tmp_path / "cache", isolation="venv", log=logs.append)
    assert any("building six==1.16.0 from source" in line for line in logs)
    wheels = list((tmp_path / "cache" / "wheels").glob("six-*/six-1.16.0-*.whl"))
    assert len(wheels) == 1
    # a rebuild of the runtime reuses the cached wheel instead of building it again
    logs.clear()
    ensure_runtime(spec, tmp_path / "cache", isolation="venv", force=True, log=logs.append)
    assert not any("from source" in line for line in logs)
    assert (install.path / "bin" / "python").exists()


def test_source_build_key_follows_patch_env_and_lock():
    from airflow_mlops.runtimes.specs import HOROVOD_CPU, SourceBuild

    base = HOROVOD_CPU.key("lock-a")
    assert base == HOROVOD_CPU.key("lock-a")
    assert base != HOROVOD_CPU.key("lock-b")
    assert base != SourceBuild(HOROVOD_CPU.requirement, HOROVOD_CPU.patch, HOROVOD_CPU.env[:-1]).key("lock-a")
    assert base != SourceBuild(HOROVOD_CPU.requirement, None, HOROVOD_CPU.env).key("lock-a")
    assert "horovod==0.28.1" in builder.source_build_script(RUNTIMES["tfx"], "/opt/runtime/bin/python", Path("/c"))[0]


def test_horovod_patch_is_exact_and_idempotent(tmp_path):
    import importlib.util

    from airflow_mlops.runtimes.specs import HOROVOD_CPU

    module_spec = importlib.util.spec_from_file_location("hvd_patch", HOROVOD_CPU.patch_path())
    patch = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(patch)
    cmake = tmp_path / "horovod" / "tensorflow" / "CMakeLists.txt"
    cmake.parent.mkdir(parents=True)
    cmake.write_text("# TF SOURCES\n" + patch.OLD + "set_output_dir()\n")
    assert patch.patch(tmp_path) == "patched"
    text = cmake.read_text()
    assert "if(HAVE_CUDA OR HAVE_ROCM)" in text and text.count("xla_mpi_ops.cc") == 2  # comment + guarded line
    assert patch.patch(tmp_path) == "already patched"
    cmake.write_text("something else\n")
    with pytest.raises(SystemExit, match="not there exactly once"):
        patch.patch(tmp_path)
