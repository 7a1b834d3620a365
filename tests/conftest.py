"""Shared fixtures.

Unit tests run anywhere. Tests marked ``integration`` run the real TFX runtime (built on
first use into the runtime cache, see ``airflow-mlops runtime build tfx``) and real
Airflow commands against a throwaway ``AIRFLOW_HOME``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.kubernetes.fake_api import FakeKubeAPI, airflow_connection_env

pytest_plugins = ["tests.timing"]  # where the suite's time goes: printed at the end, written as JSON

REPO = Path(__file__).resolve().parent.parent
DAGS = REPO / "dags"
BIN = Path(sys.executable).parent

#: The real CRDs, read from ``../shared/k8s-crds/`` beside the repository (never copied in). A clone without
#: that folder skips the tests that read them, saying so; CI (``CI`` set) refuses to start without them.
CRD_DIR = REPO.parent / "shared" / "k8s-crds"
HAVE_CRDS = (CRD_DIR / "kubeflow.org_mpijobs.yaml").is_file()
NO_CRDS = f"the real CRDs are not at {CRD_DIR} (../shared/k8s-crds/ beside the repository; CI has them)"
needs_crds = pytest.mark.skipif(not HAVE_CRDS, reason=NO_CRDS)


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI") and not HAVE_CRDS:
        raise pytest.UsageError(f"CI runs every CRD test, but the real CRDs are not at {CRD_DIR}: "
                                "put ../shared/k8s-crds/ beside the repository")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


def airflow_env(home: Path, state_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for an ``airflow`` subprocess using ``home`` and the provider state in ``state_dir``."""
    keep = ("AIRFLOW__MLOPS__RUNTIME_CACHE_DIR", "AIRFLOW__MLOPS__RUNTIME_ISOLATION", "AIRFLOW__MLOPS__DEBIAN_MIRROR")
    env = {k: v for k, v in os.environ.items()
           if k in keep or not (k.startswith("AIRFLOW__") or k.startswith("AIRFLOW_CONN_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW__MLOPS__STATE_DIR=str(state_dir),
        PATH=f"{BIN}:{env.get('PATH', '')}",
        **extra,
    )
    return env


@pytest.fixture(scope="session", autouse=True)
def stop_warm_runtimes_started_by_tests():
    """Warm runtimes outlive the tasks that start them; stop the ones this session started."""
    import time

    from airflow_mlops.runtimes.warm import stop_all

    started = time.time()
    yield
    stop_all(newer_than=started - 1)


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory) -> Path:
    """An AIRFLOW_HOME with a migrated SQLite database, shared by the session's Airflow commands."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = airflow_env(home, home / "mlops")
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True, timeout=600)
    return home


@pytest.fixture(scope="session")
def tfx_runtime():
    """The real TFX runtime, built on first use (minutes) and cached across runs."""
    from airflow_mlops.runtimes.builder import default_cache_dir, ensure_runtime
    from airflow_mlops.runtimes.specs import get_runtime_spec

    cache = Path(os.environ.get("AIRFLOW__MLOPS__RUNTIME_CACHE_DIR") or default_cache_dir())
    return ensure_runtime(get_runtime_spec("tfx"), cache, log=lambda line: None)


@pytest.fixture(scope="session")
def taxi_csv(tfx_runtime) -> Path:
    """The Chicago taxi CSV shipped inside the TFX wheel of the runtime."""
    found = sorted(tfx_runtime.site_root.glob("lib/python3*/site-packages/tfx/examples/chicago_taxi_pipeline/data/simple/data.csv"))
    assert found, f"no taxi data in {tfx_runtime.site_root}"
    return found[0]


@pytest.fixture
def clean_mlops_env(monkeypatch):
    """No [mlops] settings or mlops connection leak in from the environment."""
    for key in list(os.environ):
        if key.startswith("AIRFLOW__MLOPS__") or key == "AIRFLOW_CONN_MLOPS_DEFAULT":
            monkeypatch.delenv(key)
    return monkeypatch


def have_rootfs_tools() -> bool:
    return os.geteuid() == 0 and all(shutil.which(t) for t in ("debootstrap", "unshare", "chroot"))


# -- the FAKE Kubernetes API server (tests/kubernetes/fake_api.py): only the API is faked, at the HTTP
# level; the clients, and the cncf-kubernetes provider's hooks on them, are real.
@pytest.fixture
def fake_kube() -> Iterator[FakeKubeAPI]:
    """A running FAKE API server (kubelet: print nothing, exit 0), stopped after the test.

    The test fails if the fake itself hit an unexpected error (``fake_kube.errors``).
    """
    with FakeKubeAPI() as fake:
        yield fake
    assert not fake.errors, "the FAKE Kubernetes API server failed:\n" + "\n".join(fake.errors)


@pytest.fixture
def kube_client(fake_kube: FakeKubeAPI) -> Iterator[k8s.ApiClient]:
    """A real ``kubernetes.client.ApiClient`` configured for ``fake_kube``."""
    api = k8s.ApiClient(k8s.Configuration(host=fake_kube.url))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def kube_conn(fake_kube: FakeKubeAPI, monkeypatch: pytest.MonkeyPatch) -> str:
    """An Airflow connection ``kubernetes_fake`` (env var) to ``fake_kube`` in namespace ``default``; its id.

    ``KubernetesHook`` loads the kubeconfig into the client's global default configuration: restored after.
    """
    conn_id = "kubernetes_fake"
    for key, value in airflow_connection_env(fake_kube, conn_id).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(k8s.Configuration, "_default", k8s.Configuration._default)
    return conn_id
