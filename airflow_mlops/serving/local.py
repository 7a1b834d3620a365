"""Local deployments: start, switch, roll back and stop model servers on this machine (standard library only).

A deployment is one long-lived model server process (:mod:`airflow_mlops.runtime_side.model_server.server`)
that outlives the task that started it, on a fixed port. A new version never restarts it:
the controller points ``current.json`` at the version, the server loads it beside the one
it serves and swaps when it works; the controller waits until ``/health/status`` reports
the new version, or reports that it failed, in which case the pointer is put back and the
old version never stopped serving.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_mlops.runtimes import reaper
from airflow_mlops.serving.registry import AVAILABLE, STOPPED, DeploymentRegistry, LocalDeployment, check_name
from airflow_mlops.utils.model_registry import ModelVersion

log = logging.getLogger("airflow_mlops.serving.local")

#: (argv, env) that start the server for (deployment dir, name, host, port, prediction log).
CommandFactory = Callable[[str, str, str, int, str], tuple[Sequence[str], dict[str, str]]]


class DeployFailed(Exception):
    """A version could not be deployed; what was served before still is."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


SERVER_MODULE = "airflow_mlops.runtime_side.model_server.server"


def alive(pid: int | None) -> bool:
    """Whether ``pid`` is a running model server of ours (not a reused pid, not a zombie)."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            if SERVER_MODULE.encode() not in handle.read():
                return False
    except OSError:
        return False
    return reaper.alive(pid)


def server_status(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The server's ``/health/status`` (version, pending, error); None when it does not answer."""
    try:
        with urllib.request.urlopen(f"{url}/health/status", timeout=timeout) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as err:  # 503 until a first version is loaded: the body says why
        try:
            body = json.loads(err.read())
            return json.loads(body.get("status", {}).get("info", "null")) or None
        except (ValueError, AttributeError):
            return None
    except (OSError, ValueError):
        return None
    return body.get("jsonData")


def log_excerpt(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def _change(version: int | None, action: str, by: dict[str, str] | None) -> dict[str, Any]:
    """A history entry: the version, when, what was done, and who or what asked (when known)."""
    return {"version": version, "at": time.time(), "action": action, **({"by": by} if by else {})}


@dataclass
class LocalServing:
    """Controls the local deployments recorded in ``registry``.

    :param registry: where deployments are recorded.
    :param command: builds the command that starts a server (the hook runs it in the serving runtime).
    :param prediction_log_root: each deployment logs its predictions to ``<root>/<name>/`` (a path or URL).
    """

    registry: DeploymentRegistry
    command: CommandFactory
    prediction_log_root: str
    start_timeout: float = 180.0
    switch_timeout: float = 180.0

    # -- queries ------------------------------------------------------------------------
    def get(self, name: str) -> LocalDeployment | None:
        return self.registry.get(name)

    def status(self, name: str) -> dict[str, Any]:
        """Record plus what the server says now (``running``, ``serving``)."""
        dep = self.registry.get(name)
        if dep is None:
            return {"name": name, "exists": False, "running": False}
        live = server_status(dep.url) if alive(dep.pid) else None
        return {"name": name, "exists": True, "running": live is not None, "serving": (live or {}).get("version"),
                "record": dep.__dict__, "server": live}

    # -- changes ------------------------------------------------------------------------
    def deploy(self, name: str, version: ModelVersion, *, host: str = "127.0.0.1", port: int | None = None,
               model_root: str | None = None, action: str = "deploy",
               by: dict[str, str] | None = None) -> tuple[LocalDeployment, bool]:
        """Serve ``version`` as deployment ``name``; return the record and whether anything changed."""
        check_name(name)
        with self.registry.locked(name):
            dep = self.registry.get(name) or LocalDeployment(name=name, host=host)
            live = server_status(dep.url) if alive(dep.pid) else None
            running = live is not None
            if live is not None and dep.version == version.version and live.get("version") == version.version:
                log.info("deployment %s already serves model version %s at %s: nothing to do", name, version.version,
                         dep.url)
                return dep, False
            previous_pointer = self.registry.pointer(name)
            self.registry.point_to(name, version.version, version.path)
            try:
                if running:
                    log.info("deployment %s: switching from version %s to %s at %s (no restart)", name, dep.version,
                             version.version, dep.url)
                    self._wait_for_version(dep, version.version, self.switch_timeout)
                else:
                    dep.host = host or dep.host
                    if port:
                        dep.port = port
                    if not dep.port or not _port_free(dep.host, dep.port):
                        dep.port = free_port(dep.host)
                    self._start(dep)
                    self._wait_for_version(dep, version.version, self.start_timeout)
            except DeployFailed:
                if previous_pointer:
                    self.registry.point_to(name, int(previous_pointer["version"]), str(previous_pointer["path"]))
                else:
                    self.registry.pointer_file(name).unlink(missing_ok=True)
                if not running:
                    self._stop_process(dep)  # a server we started for a version that does not work
                raise
            dep.version, dep.model_path, dep.status = version.version, version.path, AVAILABLE
            dep.model_root = model_root or dep.model_root
            dep.history.append(_change(version.version, action, by))
            self.registry.save(dep)
            log.info("deployment %s serves model version %s at %s", name, version.version, dep.url)
            return dep, True

    def undeploy(self, name: str, by: dict[str, str] | None = None) -> bool:
        """Stop the server of ``name`` and mark it stopped; False when it was not running."""
        with self.registry.locked(name):
            dep = self.registry.get(name)
            if dep is None:
                return False
            was_running = alive(dep.pid)
            self._stop_process(dep)
            dep.pid, dep.status = None, STOPPED
            dep.history.append(_change(dep.version, "undeploy", by))
            self.registry.save(dep)
            return was_running

    def previous_version(self, name: str) -> int:
        """The version served before the current one (for a rollback without a version)."""
        dep = self.registry.get(name)
        if dep is None:
            raise DeployFailed(f"deployment {name!r} does not exist")
        served = [h["version"] for h in dep.history if h.get("action") != "undeploy"]
        earlier = [v for v in served if v != dep.version]
        if not earlier:
            raise DeployFailed(f"deployment {name!r} has served no other version than {dep.version}")
        return int(earlier[-1])

    # -- processes ----------------------------------------------------------------------
    def _start(self, dep: LocalDeployment) -> None:
        log_dir = f"{str(self.prediction_log_root).rstrip('/')}/{dep.name}"
        dep.prediction_log = log_dir
        argv, env = self.command(str(self.registry.dir(dep.name)), dep.name, dep.host, dep.port, log_dir)
        logfile = self.registry.log_file(dep.name)
        with open(logfile, "ab") as out:
            out.write(f"\n--- starting model server on {dep.url} ---\n".encode())
            out.flush()
            # its own session: the server outlives the task that starts it
            proc = subprocess.Popen(list(argv), env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        dep.pid, dep.status = proc.pid, "starting"
        self.registry.save(dep)
        log.info("started the model server of %s (pid %s, log %s)", dep.name, proc.pid, logfile)

    def _wait_for_version(self, dep: LocalDeployment, version: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        logfile = self.registry.log_file(dep.name)
        while time.monotonic() < deadline:
            if not alive(dep.pid):
                raise DeployFailed(f"the model server of {dep.name} exited; last lines of {logfile}:\n"
                                   f"{log_excerpt(logfile)}")
            status = server_status(dep.url)
            if status:
                if status.get("version") == version:
                    return
                error = status.get("error") or {}
                if error.get("version") == version:
                    served = status.get("version")
                    raise DeployFailed(
                        f"model version {version} failed its health check in deployment {dep.name} "
                        f"({error.get('message')}); still serving {served if served is not None else 'nothing'}; "
                        f"last lines of {logfile}:\n{log_excerpt(logfile)}"
                    )
            time.sleep(0.25)
        raise DeployFailed(f"deployment {dep.name} did not serve version {version} within {timeout:.0f} s; "
                           f"last lines of {logfile}:\n{log_excerpt(logfile)}")

    def _stop_process(self, dep: LocalDeployment, grace: float = 10.0) -> None:
        if not alive(dep.pid):
            return
        assert dep.pid is not None
        try:
            os.killpg(dep.pid, signal.SIGTERM)  # the server leads its own session and process group
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and alive(dep.pid):
            time.sleep(0.1)
        if alive(dep.pid):
            try:
                os.killpg(dep.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
