"""RuntimeHook: the one door through which tasks run work in a runtime."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import threading
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from airflow.sdk import BaseHook

import airflow_mlops
from airflow_mlops import config
from airflow_mlops.exceptions import (
    NON_RETRYABLE_ERRORS,
    MlopsException,
    RuntimeStepFailed,
    RuntimeStepRejected,
    RuntimeUnavailableError,
)
from airflow_mlops.runtimes.builder import RuntimeBuildError, default_cache_dir, ensure_runtime
from airflow_mlops.runtimes.contract import ContractError, StepRequest, StepResult, write_json_atomic
from airflow_mlops.runtimes.local import RuntimeInstall, RuntimeProcess, runtime_command
from airflow_mlops.runtimes.specs import get_runtime_spec
from airflow_mlops.runtimes.warm import WarmRuntime, WarmRuntimeError

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


class RuntimeHook(BaseHook):
    """Run steps of work in a named runtime (``tfx``, ...), locally or (later) on Kubernetes.

    Settings are read in the order argument → extra of connection ``mlops_conn_id`` →
    ``[mlops]`` config → default (see :mod:`airflow_mlops.config`).

    :param runtime: name of the runtime (see ``airflow-mlops runtime list``).
    :param mlops_conn_id: optional connection whose extra holds settings.
    :param backend: ``local`` or ``kubernetes``.
    :param state_dir: root of the provider's local state.
    :param isolation: ``auto``, ``venv`` or ``rootfs`` (local backend).
    :param warm: run steps in a warm runtime (imports once, forks per step) or a fresh process.
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
        }
        self._process: RuntimeProcess | WarmRuntime | None = None
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
        return str(value)

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
        if self.backend != "local":
            raise MlopsException(
                f"backend {self.backend!r} is not available in this release of airflow-mlops; "
                "set [mlops] backend = local"
            )
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
                           idle_timeout=float(self.setting("warm_runtime_idle_timeout")))
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
        if process is not None:
            self.log.warning("stopping the step running in runtime %s", self.runtime)
            process.terminate()

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
