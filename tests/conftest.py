"""Shared fixtures.

Unit tests run anywhere. Tests marked ``integration`` run the real TFX runtime (built on
first use into the runtime cache, see ``airflow-mlops runtime build tfx``) and real
Airflow commands against a throwaway ``AIRFLOW_HOME``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
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


#: The worker's name under pytest-xdist ("gw0", "gw1", ...), "main" in a plain run.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI") and not HAVE_CRDS:
        raise pytest.UsageError(f"CI runs every CRD test, but the real CRDs are not at {CRD_DIR}: "
                                "put ../shared/k8s-crds/ beside the repository")
    # each test process (each xdist worker) has warm runtimes of its own, which it alone stops; a developer's
    # own warm runtimes (make up) are never used or stopped by the tests
    from airflow_mlops.runtimes.warm import WARM_DIR_ENV

    os.environ[WARM_DIR_ENV] = f"/tmp/airflow-mlops-{os.getuid()}-test-{WORKER}"


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


#: Test files, slowest first (the README's table of the suite's time): pytest-xdist (``make test``: ``--dist
#: loadfile --no-loadscope-reorder``) hands a file's tests to one worker, in file order, so a long file must not
#: come last and end the run alone. Files not listed follow in collection order. A file's tests share its
#: module-scoped state and run in order; long parts that share nothing are files of their own.
SLOWEST_FIRST = [
    "integration/test_kubernetes_backend.py", "integration/test_closed_loop.py", "containers/test_images.py",
    "containers/test_mpi.py", "runtimes/test_sources.py", "integration/test_evaluate_push.py",
    "integration/test_serving.py", "integration/test_browser.py", "integration/test_data_gate.py",
    "integration/test_ingest_dag.py", "integration/own_pipeline/test_penguins.py",
    "integration/test_asset_watcher.py", "integration/own_pipeline/test_eval_config.py",
    "integration/test_drift_detection.py", "integration/own_pipeline/test_penguins_refused.py",
    "integration/test_trainer_resume.py", "integration/own_pipeline/test_cars.py", "containers/test_pods.py",
    "integration/own_pipeline/test_module_errors.py", "integration/test_transform.py", "integration/test_approval.py",
    "integration/own_pipeline/test_tfx_taxi.py", "integration/test_trainer.py", "hooks/test_runtime.py",
    "runtimes/test_builder.py", "integration/test_serving_http.py", "integration/test_scheduler_e2e.py",
    "runtime_side/model_server/test_front.py", "integration/test_horovod_runtime.py", "runtimes/test_warm.py",
    "test_cli.py",
]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {f"tests/{path}": n for n, path in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: a file's order kept


def once_per_run(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """The directory ``name`` built by ``build(directory)`` once per test run and shared by every xdist worker.

    The first worker to ask builds it (under a file lock, in the run's base temporary directory); the others
    wait for it and reuse it. A failed build is not tried again: every later caller fails with its error.
    Callers only read it; a test that changes what it holds copies it first.
    """
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if WORKER != "main" else base) / "shared"  # under xdist: the run's, not the worker's
    shared.mkdir(exist_ok=True)
    target, failed = shared / name, shared / f"{name}.failed"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if failed.exists():
            pytest.fail(f"building {name} failed in another test process:\n{failed.read_text()}")
        if not (target / ".built").exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            try:
                build(target)
            except BaseException as err:
                failed.write_text(f"{type(err).__name__}: {err}"[-8000:])
                raise
            (target / ".built").touch()
    return target


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
def container_image() -> Callable[[str], str]:
    """``fn(name)``: the tag of docker/'s image ``name`` (``tfx``, ``serving``, ``drift``, ``airflow``), built with
    podman from a local base image when its inputs changed (tests/containers/images.py; `make images` builds them
    before the suite). The test is skipped, with the reason, where containers cannot run here."""
    from tests.containers.images import build_image
    from tests.containers.podman import unavailable

    if reason := unavailable():
        pytest.skip(f"containers cannot run on this machine: {reason}")

    def build(name: str) -> str:
        with open("/var/tmp/airflow-mlops-images.lock", "w") as lock:  # one build of an image at a time
            fcntl.flock(lock, fcntl.LOCK_EX)
            return build_image(name, log=lambda line: None)

    return build


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
