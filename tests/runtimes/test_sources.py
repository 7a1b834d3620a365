"""Package sources of runtime builds: the spec's own indexes, the user's pip_* settings, clear failures.

The builds below are real (``python -m venv`` + pip, and a Debian root filesystem) against
package indexes served on loopback by :mod:`tests.runtimes.package_index`, standing in for PyPI
and PyTorch's CPU index. pip's machine configuration is switched off for them
(``PIP_CONFIG_FILE=/dev/null``, no ``PIP_*`` variables), so a package is found only where the
build was told to look.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_mlops.runtimes.builder import RuntimeBuildError, default_cache_dir, ensure_runtime, find_runtime
from airflow_mlops.runtimes.sources import (
    PackageSourceError,
    PackageSources,
    explain_missing_package,
    index_unreachable,
    is_pip_diagnostic,
    pip_install_command,
)
from airflow_mlops.runtimes.specs import PYTORCH_CPU_INDEX, RUNTIMES, RuntimeSpec
from tests.runtimes.package_index import project_of, serve_indexes

BIN = Path(sys.executable).parent


def settings(**values: str):
    return lambda name: values.get(name, "")


@pytest.fixture
def spec(tmp_path) -> RuntimeSpec:
    lock = tmp_path / "small.txt"
    lock.write_text("six==1.17.0\n")
    return RuntimeSpec(name="small", description="test", lock_file=str(lock), probe="import six",
                       extra_index_urls=("https://declared.example/simple",))


@pytest.fixture
def no_machine_pip_config(monkeypatch):
    """pip as it ships: no configuration file, no PIP_* variables (this machine has both)."""
    for name in list(os.environ):
        if name.startswith("PIP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")


# -- settings --------------------------------------------------------------------------------------
def test_defaults_use_the_spec_indexes_and_nothing_else(spec):
    sources = PackageSources.from_settings(settings(), "small")
    assert sources == PackageSources()
    assert sources.pip_options(spec) == ["--extra-index-url", "https://declared.example/simple"]
    assert pip_install_command(spec, "py", "lock.txt", sources) == \
        ["py", "-m", "pip", "install", "--no-deps", "--extra-index-url", "https://declared.example/simple",
         "-r", "lock.txt"]


def test_every_setting_reaches_pip(spec, tmp_path):
    sources = PackageSources.from_settings(settings(
        pip_index_url="https://mirror.example/pypi/simple",
        pip_extra_index_urls="https://a.example/simple, https://b.example/simple",
        pip_find_links=f'["{tmp_path}", "https://links.example/wheels/"]',
        pip_trusted_hosts="mirror.example a.example",
    ), "small")
    assert sources.pip_options(spec) == [
        "--index-url", "https://mirror.example/pypi/simple",
        "--extra-index-url", "https://declared.example/simple",
        "--extra-index-url", "https://a.example/simple",
        "--extra-index-url", "https://b.example/simple",
        "--find-links", str(tmp_path),
        "--find-links", "https://links.example/wheels/",
        "--trusted-host", "mirror.example",
        "--trusted-host", "a.example",
    ]
    assert sources.local_paths(spec) == [str(tmp_path)]


def test_settings_by_runtime_with_a_default(spec):
    get = settings(pip_index_url='{"drift": "https://torch-mirror.example/simple", "*": "https://mirror.example/simple"}',
                   pip_spec_indexes='{"drift": "false"}')
    drift = PackageSources.from_settings(get, "drift")
    assert drift.index_url == "https://torch-mirror.example/simple" and drift.spec_indexes is False
    assert drift.extra_indexes(RUNTIMES["drift"]) == ()
    other = PackageSources.from_settings(get, "small")
    assert other.index_url == "https://mirror.example/simple" and other.spec_indexes is True
    assert PackageSources.from_settings(settings(pip_index_url='{"drift": "x"}'), "tfx").index_url == ""


def test_offline_reads_only_wheel_directories(spec, tmp_path):
    sources = PackageSources.from_settings(settings(pip_offline="True", pip_find_links="wheels",
                                                    pip_index_url="https://ignored.example/simple"), "small")
    assert sources.pip_options(spec) == ["--no-index", "--find-links", os.path.abspath("wheels")]
    assert "offline" in sources.describe(spec)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"pip_offline": "True"}, "pip_find_links is empty"),
        ({"pip_offline": "maybe"}, "pip_offline must be true or false, got 'maybe'"),
        ({"pip_spec_indexes": "nope"}, "pip_spec_indexes must be true or false"),
        ({"pip_index_url": "{not json"}, "pip_index_url looks like a JSON object but is not valid JSON"),
        ({"pip_find_links": "[1, "}, "pip_find_links looks like a JSON list but is not valid JSON"),
    ],
)
def test_bad_settings_name_the_setting(values, message):
    with pytest.raises(PackageSourceError, match=message.replace("(", r"\(")):
        PackageSources.from_settings(settings(**values), "small")


def test_the_hook_resolves_sources_for_its_runtime(monkeypatch):
    from airflow_mlops.hooks.runtime import RuntimeHook

    monkeypatch.setenv("AIRFLOW__MLOPS__PIP_EXTRA_INDEX_URLS", '{"drift": "https://extra.example/simple"}')
    hook = RuntimeHook(runtime="drift", mlops_conn_id=None, settings={"pip_index_url": "https://arg.example/simple"})
    assert hook.package_sources == PackageSources(index_url="https://arg.example/simple",
                                                  extra_index_urls=("https://extra.example/simple",))
    assert RuntimeHook(runtime="tfx", mlops_conn_id=None).package_sources.extra_index_urls == ()


def test_every_pip_setting_is_a_documented_option():
    from airflow_mlops import config
    from airflow_mlops.runtimes.sources import SETTINGS

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name in SETTINGS:
        assert name in config.OPTIONS
        assert f"`{name}`" in readme, f"README.md's configuration table lacks {name}"


def test_drift_declares_the_pytorch_cpu_index_and_the_others_none():
    assert "torch==2.13.0+cpu" in RUNTIMES["drift"].lock_text()
    assert RUNTIMES["drift"].extra_index_urls == (PYTORCH_CPU_INDEX,)
    assert RUNTIMES["tfx"].extra_index_urls == () and RUNTIMES["serving"].extra_index_urls == ()


def test_indexes_do_not_change_the_cache_key(spec):
    assert spec.cache_key("venv") == dataclasses.replace(spec, extra_index_urls=()).cache_key("venv")


# -- failures ---------------------------------------------------------------------------------------
PIP_OUTPUT = [
    "Looking in indexes: http://127.0.0.1:8000/pypi/simple",
    "ERROR: Could not find a version that satisfies the requirement torch==2.13.0+cpu (from versions: none)",
    "ERROR: No matching distribution found for torch==2.13.0+cpu",
]


def test_a_missing_package_names_itself_the_indexes_and_the_settings():
    drift = RUNTIMES["drift"]
    assert all(is_pip_diagnostic(line) for line in PIP_OUTPUT) and not is_pip_diagnostic("Collecting six")
    message = explain_missing_package(PIP_OUTPUT, drift, PackageSources(index_url="http://127.0.0.1:8000/pypi/simple"))
    assert "pip found no distribution of torch==2.13.0+cpu for runtime 'drift'" in message
    assert "looked in indexes http://127.0.0.1:8000/pypi/simple" in message
    for setting in ("pip_index_url", "pip_extra_index_urls", "pip_find_links", "pip_offline"):
        assert setting in message
    switched_off = explain_missing_package(PIP_OUTPUT, drift, PackageSources(spec_indexes=False))
    assert f"The runtime's own indexes ({PYTORCH_CPU_INDEX}) are switched off" in switched_off
    skipped = explain_missing_package(PIP_OUTPUT, drift, PackageSources(unreachable=(PYTORCH_CPU_INDEX,)))
    assert f"Left out as unreachable from this machine: {PYTORCH_CPU_INDEX}" in skipped
    assert explain_missing_package(["ERROR: Failed building wheel for x"], drift, PackageSources()) is None


def test_unreachable_spec_indexes_are_left_out_and_said(spec, tmp_path):
    logs: list[str] = []
    unresolvable = dataclasses.replace(spec, extra_index_urls=("http://no-such-host.invalid/simple",
                                                               tmp_path.as_uri()))
    checked = PackageSources().checked(unresolvable, logs.append, timeout=5)
    assert checked.unreachable == ("http://no-such-host.invalid/simple",)
    assert checked.extra_indexes(unresolvable) == (tmp_path.as_uri(),)
    assert any("cannot be reached" in line and "no-such-host.invalid" in line for line in logs)
    assert index_unreachable((tmp_path / "missing").as_uri()) is not None
    assert PackageSources(spec_indexes=False).checked(unresolvable, logs.append) == PackageSources(spec_indexes=False)


def test_an_offline_build_without_the_wheel_says_how_to_fill_the_directory(tmp_path, spec, no_machine_pip_config):
    empty = tmp_path / "wheels"
    empty.mkdir()
    sources = PackageSources(offline=True, find_links=(str(empty),))
    with pytest.raises(RuntimeBuildError) as err:
        ensure_runtime(spec, tmp_path / "cache", isolation="venv", sources=sources, log=lambda line: None)
    message = str(err.value)
    assert "pip found no distribution of six==1.17.0 for runtime 'small'" in message
    assert f"find-links {empty}" in message
    assert "airflow-mlops runtime download small DIR" in message
    assert find_runtime(spec, tmp_path / "cache", "venv") is None
    assert not list((tmp_path / "cache").glob(".small-*partial*"))


# -- real builds against local indexes --------------------------------------------------------------
def _download(spec_name: str, dest: Path, *extra_env: tuple[str, str]) -> None:
    """`airflow-mlops runtime download` on this (connected) machine: the air-gapped recipe's first step."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update(AIRFLOW_HOME=str(dest.parent / "airflow-home"), **dict(extra_env))
    proc = subprocess.run([str(BIN / "airflow-mlops"), "runtime", "download", spec_name, str(dest)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def drift_wheels() -> Path:
    """Every distribution of the drift lock, downloaded once into a cache outside the repository."""
    lock = RUNTIMES["drift"].lock_text()
    dest = default_cache_dir().parent / "test-wheels" / f"drift-{hashlib.sha256(lock.encode()).hexdigest()[:12]}"
    _download("drift", dest)
    pins = [line.split("==")[0] for line in lock.splitlines() if line and not line.startswith("#")]
    projects = {project_of(p.name) for p in dest.iterdir()}
    assert {re.sub(r"[-_.]+", "-", pin).lower() for pin in pins} <= projects
    return dest


#: torch and the distributions it needs to import (its requirements on Python 3.11)
TORCH_AND_ITS_IMPORTS = {"torch", "filelock", "typing_extensions", "sympy", "mpmath", "networkx", "jinja2", "markupsafe",
                         "fsspec"}


def _forget(install) -> None:
    shutil.rmtree(install.path, ignore_errors=True)


@pytest.mark.integration
def test_drift_builds_only_through_the_index_its_spec_declares(tmp_path, drift_wheels, no_machine_pip_config):
    torch = [p for p in drift_wheels.iterdir() if project_of(p.name) == "torch"]
    others = [p for p in drift_wheels.iterdir() if project_of(p.name) != "torch"]
    assert [p.name for p in torch] == ["torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"]
    with serve_indexes(tmp_path / "www", {"pypi/simple": others, "pytorch/whl/cpu": torch}) as www:
        sources = PackageSources(index_url=www.url("pypi/simple"))  # the "PyPI" stand-in: no torch+cpu there
        # the drift lock's torch and what torch imports: the whole lock is built offline by the air-gapped test
        lock = tmp_path / "drift-torch.txt"
        lock.write_text("".join(f"{line}\n" for line in RUNTIMES["drift"].lock_text().splitlines()
                                if line.split("==")[0].lower() in TORCH_AND_ITS_IMPORTS))
        declared = dataclasses.replace(RUNTIMES["drift"], lock_file=str(lock), probe="import torch",
                                       extra_index_urls=(www.url("pytorch/whl/cpu"),))
        undeclared = dataclasses.replace(declared, extra_index_urls=())
        cache = tmp_path / "cache"

        with pytest.raises(RuntimeBuildError) as err:
            ensure_runtime(undeclared, cache, isolation="venv", sources=sources, log=lambda line: None)
        message = str(err.value).splitlines()[0]
        assert "pip found no distribution of torch==2.13.0+cpu for runtime 'drift'" in message
        assert www.url("pypi/simple") in message and "pip_extra_index_urls" in message
        assert find_runtime(undeclared, cache, "venv") is None and not www.asked("/pytorch/")

        logs: list[str] = []
        install = ensure_runtime(declared, cache, isolation="venv", sources=sources, log=logs.append)
        try:
            assert www.asked("/pytorch/whl/cpu/torch/"), "torch came from somewhere else than the declared index"
            assert any(f"--extra-index-url {www.url('pytorch/whl/cpu')}" in line or
                       www.url("pytorch/whl/cpu") in line for line in logs)
            version = subprocess.run([str(install.python), "-c", "import torch; print(torch.__version__)"],
                                     capture_output=True, text=True, check=True).stdout.strip()
            assert version == "2.13.0+cpu"
        finally:
            _forget(install)


@pytest.mark.integration
def test_air_gapped_build_from_a_wheel_directory_with_no_network(tmp_path, drift_wheels, no_machine_pip_config):
    """The README's recipe: `runtime download` on a connected machine (the fixture), then build with no network."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("cutting the network off (unshare --net) needs root and util-linux's unshare")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update(
        AIRFLOW_HOME=str(tmp_path / "airflow-home"),
        AIRFLOW__MLOPS__RUNTIME_CACHE_DIR=str(tmp_path / "cache"),
        AIRFLOW__MLOPS__PIP_OFFLINE="True",
        AIRFLOW__MLOPS__PIP_FIND_LINKS=str(drift_wheels),
    )
    command = ["unshare", "--net", "--", str(BIN / "airflow-mlops"), "runtime", "build", "drift"]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    try:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "offline: wheel directories" in proc.stdout
        assert "Looking in links: " + str(drift_wheels) in proc.stdout
        assert not any(line.startswith("Looking in indexes") for line in proc.stdout.splitlines())
        # no network at all in there: the same build with an index instead of the wheel directory fails
        env.update(AIRFLOW__MLOPS__PIP_OFFLINE="False", AIRFLOW__MLOPS__PIP_FIND_LINKS="",
                   AIRFLOW__MLOPS__RUNTIME_CACHE_DIR=str(tmp_path / "cache-online"), PIP_RETRIES="0",
                   PIP_DEFAULT_TIMEOUT="5")
        online = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        assert online.returncode == 1
        assert "pip found no distribution of alibi-detect==0.13.0 for runtime 'drift'" in online.stderr
    finally:
        shutil.rmtree(tmp_path / "cache", ignore_errors=True)


@pytest.mark.integration
def test_rootfs_build_uses_the_declared_index_and_the_wheel_directories(tmp_path, spec, no_machine_pip_config):
    """The root-filesystem path: pip runs inside Debian 13 and reaches the loopback index and a bound wheel folder."""
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        pytest.skip("root-filesystem builds need root and debootstrap (make host-tools installs it)")
    wheels = tmp_path / "downloaded"
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(wheels), "six==1.17.0",
                    "idna==3.10"], check=True, capture_output=True, env={**os.environ, "PIP_CONFIG_FILE": os.devnull})
    six, idna = (next(wheels.glob(f"{name}-*.whl")) for name in ("six", "idna"))
    lock = tmp_path / "rootfs.txt"
    lock.write_text("six==1.17.0\nidna==3.10\n")
    local_links = tmp_path / "links"
    local_links.mkdir()
    shutil.copy(idna, local_links)
    cache = tmp_path / "cache"
    cache.mkdir()
    shared_debs = default_cache_dir() / "debootstrap-debs"
    shared_debs.mkdir(parents=True, exist_ok=True)
    (cache / "debootstrap-debs").symlink_to(shared_debs)  # the packages, not the root filesystem, are shared
    with serve_indexes(tmp_path / "www", {"declared/simple": [six], "pypi/simple": []}) as www:
        rootfs_spec = dataclasses.replace(
            spec, name="rootfs-small", lock_file=str(lock), probe="import six, idna",
            extra_index_urls=(www.url("declared/simple"),),
            debian_packages=("python3", "python3-venv", "ca-certificates"),
        )
        sources = PackageSources(index_url=www.url("pypi/simple"), find_links=(str(local_links),))
        install = ensure_runtime(rootfs_spec, cache, isolation="rootfs", sources=sources, log=lambda line: None)
        try:
            assert www.asked("/declared/simple/six/")
            assert install.isolation == "rootfs" and (install.path / "opt").is_dir()
        finally:
            _forget(install)
