"""RuntimeHook: the one door through which tasks run work in a runtime."""

from __future__ import annotations

import json
import threading
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from airflow.sdk import BaseHook

from airflow_mlops import config
from airflow_mlops.exceptions import (
    MlopsException,
    RuntimeUnavailableError,
    step_failure,
)
from airflow_mlops.settings import MlopsSettings
from airflow_mlops.runtimes.builder import RuntimeBuildError, default_cache_dir, ensure_runtime
from airflow_mlops.runtimes.contract import StepResult
from airflow_mlops.runtimes.local import RuntimeInstall
from airflow_mlops.runtimes.sources import PackageSources
from airflow_mlops.runtimes.specs import get_runtime_spec
from airflow_mlops.runtimes.context import RunnerContext
from airflow_mlops.runtimes.runners import BACKENDS, ONE_PROCESS, Placement, StepRunner, choose_runner, \
    runner_for_handle


def parse_metadata_uri(uri: str) -> dict[str, Any]:
    """``sqlite:////abs/path`` or ``mysql://user:pw@host:port/db`` → the runtime's metadata dict."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        # SQLAlchemy's convention: sqlite:////abs/path (four slashes), sqlite:///relative
        path = unquote(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else ""
        if not path.startswith("/"):
            raise MlopsException(f"metadata_uri {uri!r}: a sqlite path must be absolute (sqlite:////abs/path.sqlite)")
        return {"sqlite": path}
    if parsed.scheme == "mysql":
        if not parsed.hostname or not parsed.path.strip("/"):
            raise MlopsException(f"metadata_uri {uri!r}: expected mysql://user:password@host:port/database")
        return {
            "mysql": {
                "host": parsed.hostname,
                "port": parsed.port or 3306,
                "database": parsed.path.strip("/"),
                "user": unquote(parsed.username or ""),
                "password": unquote(parsed.password or ""),
            }
        }
    raise MlopsException(f"metadata_uri {uri!r}: scheme must be sqlite or mysql")


def task_context(task: Any, context: Any) -> dict[str, Any]:
    """The ``context`` of a step request made by ``task`` (an operator) in an Airflow task ``context``:
    on Kubernetes it names the step's pod, so that a retry of the task finds it."""
    ti = context.get("ti")
    return {"dag_id": task.dag_id, "task_id": task.task_id, "run_id": context.get("run_id"),
            "try_number": getattr(ti, "try_number", None), "map_index": getattr(ti, "map_index", -1)}


class RuntimeHook(BaseHook):
    """Run steps of work in a named runtime (``tfx``, ...), locally or as pods on Kubernetes.

    Settings are read in the order argument → extra of connection ``mlops_conn_id`` →
    ``[mlops]`` config → default (see :mod:`airflow_mlops.config`).

    :param runtime: name of the runtime (see ``airflow-mlops runtime list``).
    :param mlops_conn_id: optional connection whose extra holds settings.
    :param backend: ``local`` or ``kubernetes``.
    :param state_dir: root of the provider's local state.
    :param isolation: ``auto``, ``venv`` or ``rootfs`` (local backend).
    :param warm: run steps in a warm runtime (imports once, forks per step) or a fresh process.
    :param settings: more settings by their ``[mlops]`` names (e.g. ``kubernetes_namespace``,
        ``kubernetes_image``, ``kubernetes_resources`` as a dict), taking precedence like arguments.
    """

    conn_name_attr = "mlops_conn_id"
    default_conn_name = "mlops_default"
    conn_type = "mlops"
    hook_name = "MLOps runtime"

    def __init__(
        self,
        runtime: str = "tfx",
        mlops_conn_id: str | None = default_conn_name,
        *,
        backend: str | None = None,
        state_dir: str | None = None,
        isolation: str | None = None,
        runtime_cache_dir: str | None = None,
        metadata_uri: str | None = None,
        build_on_demand: bool | None = None,
        warm: bool | None = None,
        settings: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.runtime = runtime
        self.mlops_conn_id = mlops_conn_id
        self._args = {
            "backend": backend,
            "state_dir": state_dir,
            "runtime_isolation": isolation,
            "runtime_cache_dir": runtime_cache_dir,
            "metadata_uri": metadata_uri,
            "build_runtimes_on_demand": build_on_demand,
            "warm_runtimes": warm,
            **(settings or {}),
        }
        self._runners: dict[str, StepRunner] = {}
        self._lock = threading.Lock()

    # -- settings -----------------------------------------------------------------
    @cached_property
    def extras(self) -> dict[str, Any]:
        """The connection's extra, or ``{}`` when the connection does not exist."""
        if not self.mlops_conn_id:
            return {}
        try:
            conn = self.get_connection(self.mlops_conn_id)
        except Exception:  # noqa: BLE001 - AirflowNotFoundException and friends: no connection, defaults
            return {}
        return conn.extra_dejson or {}

    @cached_property
    def settings(self) -> MlopsSettings:
        """Every setting, typed, resolved once: argument → connection extra → ``[mlops]`` → default."""
        return MlopsSettings.resolve({k: v for k, v in self._args.items() if v is not None}, self.extras)

    def replace(self, **settings: Any) -> RuntimeHook:
        """A hook for the same runtime and connection with ``settings`` changed (by their ``[mlops]`` names)."""
        return type(self)(runtime=self.runtime, mlops_conn_id=self.mlops_conn_id,
                          settings={**{k: v for k, v in self._args.items() if v is not None}, **settings})

    @property
    def backend(self) -> str:
        backend = self.settings.backend
        if backend not in BACKENDS:
            raise MlopsException(f"[mlops] backend must be one of {BACKENDS}, got {backend!r}")
        return backend

    @property
    def state_dir(self) -> Path:
        return Path(self.settings.state_dir or config.airflow_home() / "mlops").expanduser().absolute()

    @property
    def cache_dir(self) -> Path:
        value = self.settings.runtime_cache_dir
        return Path(value).expanduser().absolute() if value else default_cache_dir()

    def pipeline_root(self, pipeline_name: str, override: str | None = None) -> str:
        root = override or self.settings.pipeline_root
        if root:
            return root.replace("{pipeline_name}", pipeline_name)
        return str(self.state_dir / "pipelines" / pipeline_name)

    def model_root(self, pipeline_name: str, override: str | None = None) -> str:
        """Where the pipeline's pushed model versions go (``<root>/<version>/``)."""
        root = override or self.settings.model_root
        if root:
            return root.replace("{pipeline_name}", pipeline_name)
        return str(self.state_dir / "models" / pipeline_name)

    @property
    def metadata(self) -> dict[str, Any]:
        uri = self.settings.metadata_uri
        if not uri:
            return {"sqlite": str(self.state_dir / "metadata" / "mlmd.sqlite")}
        return parse_metadata_uri(uri)

    @property
    def schema_store_dir(self) -> Path:
        return self.state_dir / "schemas"

    @property
    def package_sources(self) -> PackageSources:
        """Where this runtime's build finds its packages (the ``pip_*`` settings, for :attr:`runtime`)."""
        return PackageSources.from_settings(self.settings.text, self.runtime)

    # -- runtimes -----------------------------------------------------------------
    def get_runtime(self) -> RuntimeInstall:
        """The built runtime, building it first if allowed (``build_runtimes_on_demand``)."""
        spec = get_runtime_spec(self.runtime)
        build = self.settings.build_runtimes_on_demand
        try:
            return ensure_runtime(
                spec,
                self.cache_dir,
                isolation=self.settings.runtime_isolation,
                build=build,
                mirror=self.settings.debian_mirror,
                sources=self.package_sources,
                log=lambda line: self.log.info("[build %s] %s", self.runtime, line),
            )
        except (RuntimeBuildError, ValueError) as err:
            raise RuntimeUnavailableError(f"runtime {self.runtime!r} is not available: {err}") from err

    @cached_property
    def runner_context(self) -> RunnerContext:
        """What this hook's step runners use (they never get the hook): made once, on first use."""
        return RunnerContext(runtime=self.runtime, settings=self.settings, state_dir=self.state_dir, log=self.log,
                             get_runtime=lambda: self.get_runtime(), kubernetes=lambda: self.kubernetes_hook)

    def runner(self, placement: Placement = ONE_PROCESS, *, poll_interval: float = 10.0) -> StepRunner:
        """The step runner the settings choose for ``placement`` (:func:`~airflow_mlops.runtimes.runners.choose_runner`:
        a fresh or warm local process, a pod, an MPIJob); the same one for every call of this hook."""
        kind = choose_runner(self.runner_context, placement)
        with self._lock:
            if kind.kind not in self._runners:
                self._runners[kind.kind] = kind(self.runner_context, poll_interval=poll_interval)
            runner = self._runners[kind.kind]
        runner.poll_interval = poll_interval
        return runner

    def check_placement(self, placement: Placement) -> None:
        """Refuse, before anything runs, a placement the chosen runner cannot give (GPUs on this machine)."""
        self.runner(placement).check(placement)

    def run_step(
        self,
        step: str,
        params: dict[str, Any],
        *,
        context: dict[str, Any] | None = None,
        binds: list[str] | None = None,
        timeout: float | None = None,
        placement: Placement = ONE_PROCESS,
        poll_interval: float = 10.0,
    ) -> dict[str, Any]:
        """Run ``step`` with ``params`` where the settings say; return its outputs or raise :class:`RuntimeStepFailed`
        (:class:`RuntimeStepRejected` for bad input: not retried).

        :param binds: host paths the step reads or writes (made visible inside a rootfs runtime).
        :param placement: how many processes the step needs (a distributed Horovod node); default one.
        """
        runner = self.runner(placement, poll_interval=poll_interval)
        result, code = runner.run(step, params, context or {}, binds=list(binds or []), timeout=timeout,
                                  placement=placement)
        return self.step_outputs(step, result, code)

    def start_step(self, step: str, params: dict[str, Any], *, context: dict[str, Any] | None = None,
                   timeout: float | None = None, placement: Placement = ONE_PROCESS,
                   poll_interval: float = 10.0) -> dict[str, Any] | None:
        """Start ``step`` where the triggerer can wait for it (a pod, an MPIJob), or find the one an
        earlier try started; its JSON handle (``ended``: it has ended already), or None where steps
        cannot be waited for in the triggerer (locally: call :meth:`run_step`)."""
        runner = self.runner(placement, poll_interval=poll_interval)
        if not runner.can_defer:
            return None
        return runner.start(step, params, context or {}, timeout=timeout, placement=placement)

    def step_trigger(self, handle: dict[str, Any], poll_interval: float = 10.0):
        """The trigger that fires when the step of ``handle`` ends."""
        runner = runner_for_handle(self.runner_context, handle, poll_interval=poll_interval)
        return runner.trigger(handle, poll_interval)

    def finish_step(self, handle: dict[str, Any], event: dict[str, Any] | None = None,
                    poll_interval: float = 10.0) -> dict[str, Any]:
        """The outputs of the step of ``handle`` after its trigger's ``event`` (None: it had ended when
        started); its log goes to the task log. Needs nothing but the handle: a fresh hook finishes it."""
        with self._lock:  # the runner that started it (its count of pods per step goes on), or a new one
            runner = self._runners.get(handle.get("runner", ""))
            if runner is None:
                new = runner_for_handle(self.runner_context, handle, poll_interval=poll_interval)
                runner = self._runners.setdefault(handle.get("runner", ""), new)
        runner.poll_interval = poll_interval
        return self.step_outputs(handle["step"], runner.collect(handle, event), 0)  # on_kill stops it meanwhile

    def delete_step(self, handle: dict[str, Any]) -> None:
        """Remove what the step of ``handle`` left (a task killed or timed out while deferred)."""
        runner_for_handle(self.runner_context, handle).delete(handle)

    def step_outputs(self, step: str, result: StepResult, code: int | None) -> dict[str, Any]:
        """The outputs of a succeeded step; raise the runtime's error otherwise."""
        if code != 0 or not result.succeeded:
            error = result.error or {}
            raise step_failure(error)(
                f"step {step} failed in runtime {self.runtime}: {error.get('type', 'error')}: "
                f"{error.get('message', f'exit code {code}')}",
                step=step,
                error=error,
                outputs=result.outputs,
            )
        return result.outputs

    def kill(self) -> None:
        """Stop the step this hook is running, if any (used by ``on_kill``)."""
        with self._lock:
            runners = list(self._runners.values())
        for runner in runners:
            runner.kill()

    # -- Kubernetes backend ---------------------------------------------------------
    @cached_property
    def kubernetes_hook(self):
        """The cncf-kubernetes provider's hook for connection ``kubernetes_conn_id``: the runners' Kubernetes
        clients (:attr:`runner_context`)."""
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        return KubernetesHook(conn_id=self.settings.kubernetes_conn_id)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["host", "schema", "login", "password", "port"],
            "relabeling": {},
            "placeholders": {
                "extra": json.dumps(
                    {"backend": "local", "state_dir": "/srv/mlops", "metadata_uri": "sqlite:////srv/mlops/mlmd.sqlite"}
                )
            },
        }
