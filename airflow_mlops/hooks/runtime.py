"""RuntimeHook: the one door through which tasks run work in a runtime."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from airflow.sdk import BaseHook

import airflow_mlops
from airflow_mlops import config
from airflow_mlops.exceptions import (
    NON_RETRYABLE_ERRORS,
    InvalidArgumentError,
    MlopsException,
    RuntimeStepFailed,
    RuntimeStepRejected,
    RuntimeUnavailableError,
)
from airflow_mlops.runtimes.builder import RuntimeBuildError, default_cache_dir, ensure_runtime
from airflow_mlops.runtimes.contract import ContractError, StepRequest, StepResult, write_json_atomic
from airflow_mlops.runtimes.local import RuntimeInstall, RuntimeProcess, runtime_command
from airflow_mlops.runtimes.sources import PackageSources
from airflow_mlops.runtimes.specs import get_runtime_spec
from airflow_mlops.runtimes.warm import ServerGone, WarmRuntime, WarmRuntimeError
from airflow_mlops.kubernetes.api import KubernetesApiError, object_name, owner_labels
from airflow_mlops.kubernetes.pods import CALL_LABEL, RUNTIME_LABEL, STEP_LABEL, PodSettings, \
    PodStepRunner, step_pod

BACKENDS = ("local", "kubernetes")


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
        self._process: RuntimeProcess | WarmRuntime | PodStepRunner | None = None
        self._pod_calls: dict[str, int] = {}
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

    def setting(self, name: str) -> str:
        value = self._args.get(name)
        if value is None:
            value = self.extras.get(name)
        if value is None or value == "":
            value = config.get_option(name)
        if isinstance(value, (dict, list)):
            return json.dumps(value)
        return str(value)

    def json_setting(self, name: str, expected: type) -> Any:
        """A setting holding JSON (``{}``/``[]`` when empty); a wrong value names the setting."""
        text = self.setting(name).strip()
        if not text:
            return expected()
        try:
            value = json.loads(text)
        except ValueError as err:
            raise InvalidArgumentError(f"[mlops] {name} must be JSON, got {text!r}: {err}") from None
        if not isinstance(value, expected):
            raise InvalidArgumentError(f"[mlops] {name} must be a JSON {expected.__name__}, got {text!r}")
        return value

    @property
    def backend(self) -> str:
        backend = self.setting("backend")
        if backend not in BACKENDS:
            raise MlopsException(f"[mlops] backend must be one of {BACKENDS}, got {backend!r}")
        return backend

    @property
    def state_dir(self) -> Path:
        return Path(self.setting("state_dir") or config.airflow_home() / "mlops").expanduser().absolute()

    @property
    def cache_dir(self) -> Path:
        value = self.setting("runtime_cache_dir")
        return Path(value).expanduser().absolute() if value else default_cache_dir()

    def pipeline_root(self, pipeline_name: str, override: str | None = None) -> str:
        root = override or self.setting("pipeline_root")
        if root:
            return root.replace("{pipeline_name}", pipeline_name)
        return str(self.state_dir / "pipelines" / pipeline_name)

    def model_root(self, pipeline_name: str, override: str | None = None) -> str:
        """Where the pipeline's pushed model versions go (``<root>/<version>/``)."""
        root = override or self.setting("model_root")
        if root:
            return root.replace("{pipeline_name}", pipeline_name)
        return str(self.state_dir / "models" / pipeline_name)

    @property
    def metadata(self) -> dict[str, Any]:
        uri = self.setting("metadata_uri")
        if not uri:
            return {"sqlite": str(self.state_dir / "metadata" / "mlmd.sqlite")}
        return parse_metadata_uri(uri)

    @property
    def schema_store_dir(self) -> Path:
        return self.state_dir / "schemas"

    @property
    def package_sources(self) -> PackageSources:
        """Where this runtime's build finds its packages (the ``pip_*`` settings, for :attr:`runtime`)."""
        return PackageSources.from_settings(self.setting, self.runtime)

    # -- runtimes -----------------------------------------------------------------
    def get_runtime(self) -> RuntimeInstall:
        """The built runtime, building it first if allowed (``build_runtimes_on_demand``)."""
        spec = get_runtime_spec(self.runtime)
        build = self.setting("build_runtimes_on_demand").lower() in ("1", "true", "yes")
        try:
            return ensure_runtime(
                spec,
                self.cache_dir,
                isolation=self.setting("runtime_isolation"),
                build=build,
                mirror=self.setting("debian_mirror"),
                sources=self.package_sources,
                log=lambda line: self.log.info("[build %s] %s", self.runtime, line),
            )
        except (RuntimeBuildError, ValueError) as err:
            raise RuntimeUnavailableError(f"runtime {self.runtime!r} is not available: {err}") from err

    def run_step(
        self,
        step: str,
        params: dict[str, Any],
        *,
        context: dict[str, Any] | None = None,
        binds: list[str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Run ``step`` with ``params`` in the runtime; return its outputs or raise :class:`RuntimeStepFailed`.

        :param binds: host paths the step reads or writes (made visible inside a rootfs runtime).
        """
        if self.backend == "kubernetes":
            return self._run_pod(step, params, context or {}, timeout)
        install = self.get_runtime()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # the step's TMPDIR, removed here even when the runtime crashed (TFX leaves ~50 MB per Beam run)
        scratch = tempfile.mkdtemp(prefix="airflow-mlops-step-")
        request = StepRequest(step=step, params=params, context=context or {}, scratch_dir=scratch)
        with contextlib.ExitStack() as cleanup:
            cleanup.callback(shutil.rmtree, scratch, ignore_errors=True)
            workdir = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="step-", dir=self.state_dir))
            request_path, result_path = Path(workdir, "request.json"), Path(workdir, "result.json")
            write_json_atomic(request_path, request.to_json())
            package_parent = str(Path(airflow_mlops.__file__).resolve().parent.parent)
            env = {"PYTHONPATH": package_parent, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "1"}
            base_binds = [package_parent, str(self.state_dir)]
            on_line = lambda line: self.log.info("[%s] %s", self.runtime, line)  # noqa: E731
            code = None
            if self._flag("warm_runtimes"):
                code = self._run_warm(install, env, base_binds, [workdir, scratch, *(binds or [])],
                                      str(request_path), str(result_path), on_line, step, timeout)
            if code is None:
                command, process_env = runtime_command(
                    install,
                    ["python", "-m", "airflow_mlops.runtimes.entrypoint", str(request_path), str(result_path)],
                    env=env,
                    binds=[*base_binds, workdir, scratch, *(binds or [])],
                )
                self.log.info("running step %s in runtime %s (%s at %s)", step, self.runtime, install.isolation, install.path)
                with self._lock:
                    self._process = RuntimeProcess(command, process_env, on_line).start()
                try:
                    code = self._process.wait(timeout=timeout)
                except subprocess.TimeoutExpired as err:
                    raise RuntimeStepFailed(f"step {step} timed out after {timeout} s", step=step) from err
                finally:
                    with self._lock:
                        self._process = None
            try:
                result = StepResult.read(result_path)
            except ContractError as err:
                raise RuntimeStepFailed(
                    f"step {step} in runtime {self.runtime} exited with code {code} and no usable result: {err}",
                    step=step,
                ) from None
        return self.step_outputs(step, result, code)

    def step_outputs(self, step: str, result: StepResult, code: int | None) -> dict[str, Any]:
        """The outputs of a succeeded step; raise the runtime's error otherwise."""
        if code != 0 or not result.succeeded:
            error = result.error or {}
            failure = RuntimeStepRejected if error.get("type") in NON_RETRYABLE_ERRORS else RuntimeStepFailed
            raise failure(
                f"step {step} failed in runtime {self.runtime}: {error.get('type', 'error')}: "
                f"{error.get('message', f'exit code {code}')}",
                step=step,
                error=error,
                outputs=result.outputs,
            )
        return result.outputs

    def _flag(self, name: str) -> bool:
        return self.setting(name).strip().lower() in ("1", "true", "yes", "on")

    def _run_warm(self, install, env, base_binds, binds, request, result, on_line, step, timeout) -> int | None:
        """Run the step in the warm runtime; None when that is not possible (then a fresh process runs it)."""
        warm = WarmRuntime(install, base_binds=base_binds, env=env, preload=get_runtime_spec(self.runtime).preload,
                           idle_timeout=float(self.setting("warm_runtime_idle_timeout")),
                           max_running=int(self.setting("max_warm_runtimes") or 0))
        try:
            pid = warm.ensure_started(log=lambda line: self.log.info("%s", line))
            warm.bind(binds)
        except (WarmRuntimeError, OSError) as err:
            self.log.warning("warm runtime unavailable, running step %s in a fresh process: %s", step, err)
            return None
        self.log.info("running step %s in warm runtime %s (pid %s, %s at %s)", step, self.runtime, pid,
                      install.isolation, install.path)
        with self._lock:
            self._process = warm
        try:
            return warm.run(request, result, on_line, timeout=timeout)
        except ServerGone as err:  # stopped before the step started (to make room for another): nothing ran
            self.log.warning("warm runtime gone, running step %s in a fresh process: %s", step, err)
            return None
        except TimeoutError as err:
            raise RuntimeStepFailed(f"step {step} timed out after {timeout} s", step=step) from err
        except WarmRuntimeError as err:
            raise RuntimeStepFailed(f"step {step}: {err}", step=step) from err
        finally:
            with self._lock:
                self._process = None

    def kill(self) -> None:
        """Stop the step this hook is running, if any (used by ``on_kill``)."""
        with self._lock:
            process = self._process
        if isinstance(process, PodStepRunner):
            process.kill()
        elif process is not None:
            self.log.warning("stopping the step running in runtime %s", self.runtime)
            process.terminate()

    # -- Kubernetes backend ---------------------------------------------------------
    @cached_property
    def kubernetes_hook(self):
        """The cncf-kubernetes provider's hook for connection ``kubernetes_conn_id``."""
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        return KubernetesHook(conn_id=self.setting("kubernetes_conn_id"))

    @property
    def namespace(self) -> str:
        return self.setting("kubernetes_namespace") or self.kubernetes_hook.get_namespace() or "default"

    def image(self, runtime: str | None = None) -> str:
        """The image of ``runtime``'s pods (``kubernetes_image``: a template or a JSON object by runtime)."""
        runtime = runtime or self.runtime
        value = self.setting("kubernetes_image").strip()
        if value.startswith("{"):
            images = self.json_setting("kubernetes_image", dict)
            if runtime not in images:
                raise InvalidArgumentError(
                    f"[mlops] kubernetes_image names images for {sorted(images)}, not for runtime {runtime!r}"
                )
            return str(images[runtime])
        return value.replace("{runtime}", runtime).replace("{version}", airflow_mlops.__version__)

    def pod_settings(self, runtime: str | None = None) -> PodSettings:
        """Where and how this hook's step pods run, from the settings."""
        try:
            startup_timeout = int(self.setting("kubernetes_startup_timeout"))
        except ValueError:
            raise InvalidArgumentError(
                f"[mlops] kubernetes_startup_timeout must be a number of seconds, "
                f"got {self.setting('kubernetes_startup_timeout')!r}"
            ) from None
        claim = self.setting("kubernetes_volume_claim") or None
        settings = PodSettings(
            namespace=self.namespace,
            image=self.image(runtime),
            service_account=self.setting("kubernetes_service_account") or None,
            volume_claim=claim,
            mount_path=str(self.state_dir) if claim else None,
            resources=self.json_setting("kubernetes_resources", dict),
            node_selector=self.json_setting("kubernetes_node_selector", dict),
            tolerations=self.json_setting("kubernetes_tolerations", list),
            on_finish_action=self.setting("kubernetes_on_finish_action"),
            startup_timeout=startup_timeout,
        )
        if problems := settings.errors():
            raise InvalidArgumentError("the Kubernetes settings are wrong: " + "; ".join(problems))
        return settings

    def _pod_manifest(self, step: str, params: dict[str, Any], context: dict[str, Any],
                      timeout: float | None) -> tuple[dict[str, Any], dict[str, str], PodSettings]:
        """The pod that runs ``step`` for the task instance of ``context``, its labels and settings."""
        settings = self.pod_settings()
        dag_id, task_id = context.get("dag_id") or "adhoc", context.get("task_id") or step
        # no task run named (the CLI, a test): a pod of its own, never one to adopt
        run_id = context.get("run_id") or f"adhoc-{uuid.uuid4().hex}"
        map_index = context.get("map_index")
        map_index = -1 if map_index is None else int(map_index)
        # a task may run a step more than once: its n-th call has the same name in every try
        # (unless the caller asks for a pod of its own with ``pod_key``: a sensor's repeated checks)
        call = self._pod_calls[step] = self._pod_calls.get(step, 0) + 1
        if context.get("pod_key"):
            run_id = f"{run_id}#{context['pod_key']}"
        labels = {**owner_labels(dag_id, task_id, run_id, map_index), STEP_LABEL: step.replace(".", "-"),
                  RUNTIME_LABEL: self.runtime, CALL_LABEL: str(call)}
        name = object_name(f"{self.runtime}-{step}-{call}", dag_id, task_id, run_id, map_index)
        request = StepRequest(step=step, params=params, context=context)
        return step_pod(name, request, settings, labels=labels, run_id=run_id, timeout=timeout), labels, settings

    def _pod_runner(self) -> PodStepRunner:
        return PodStepRunner(self.kubernetes_hook.core_v1_client, prefix=f"[{self.runtime}] ")

    def _run_pod(self, step: str, params: dict[str, Any], context: dict[str, Any], timeout: float | None):
        """Run ``step`` as a pod of the runtime's image (see :mod:`airflow_mlops.kubernetes.pods`)."""
        manifest, labels, settings = self._pod_manifest(step, params, context, timeout)
        runner = self._pod_runner()
        self.log.info("running step %s as pod %s/%s (image %s)", step, settings.namespace,
                      manifest["metadata"]["name"], settings.image)
        with self._lock:
            self._process = runner
        try:
            with self._pod_errors(step):
                result = runner.run(manifest, labels, on_finish_action=settings.on_finish_action,
                                    startup_timeout=settings.startup_timeout)
        finally:
            with self._lock:
                self._process = None
        return self.step_outputs(step, result, code=0)

    @contextlib.contextmanager
    def _pod_errors(self, step: str) -> Iterator[None]:
        """A step pod's failure, or the API's, as the task's :class:`RuntimeStepFailed`."""
        try:
            yield
        except KubernetesApiError as err:
            raise RuntimeStepFailed(f"step {step} in runtime {self.runtime}: {err}", step=step) from err

    def start_pod_step(self, step: str, params: dict[str, Any], *, context: dict[str, Any] | None = None,
                       timeout: float | None = None) -> dict[str, Any]:
        """Create (or reattach to) the pod of ``step`` and return a handle for :meth:`finish_pod_step`.

        For deferrable operators: the task waits in the triggerer, then finishes with the handle.
        """
        manifest, labels, settings = self._pod_manifest(step, params, context or {}, timeout)
        with self._pod_errors(step):
            pod = self._pod_runner().start(manifest, labels)
        return {"step": step, "name": manifest["metadata"]["name"], "namespace": settings.namespace,
                "labels": labels, "on_finish_action": settings.on_finish_action,
                "startup_timeout": settings.startup_timeout, "phase": getattr(pod.status, "phase", None)}

    def finish_pod_step(self, handle: dict[str, Any]) -> dict[str, Any]:
        """The outputs of the step pod ``handle`` names (its log goes to the task log); applies ``on_finish_action``."""
        step = handle["step"]
        with self._pod_errors(step):
            result = self._pod_runner().collect(handle["name"], handle["namespace"],
                                                on_finish_action=handle["on_finish_action"])
        return self.step_outputs(step, result, code=0)

    def delete_pod_step(self, handle: dict[str, Any]) -> None:
        """Delete the pod of ``handle`` (a task killed or timed out while deferred)."""
        self._pod_runner().delete(handle["name"], handle["namespace"])

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
