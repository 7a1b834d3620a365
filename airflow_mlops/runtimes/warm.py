"""Client side of warm runtimes (standard library only): start, reuse, feed and stop them.

A warm runtime (:mod:`airflow_mlops.runtime_side.session`) is started on first use, detached
from the task (its own session) so the next tasks reuse it, and exits by itself after an
idle timeout. One server serves one (runtime build, state directory, code location and
code content); its socket, pid file and log live in ``/tmp/airflow-mlops-<uid>/`` or ``$AIRFLOW_MLOPS_WARM_DIR`` (``/tmp``
is visible inside root-filesystem runtimes, and socket paths must stay short). Paths a step needs that the
server did not bind at start are bind-mounted into its mount namespace with ``nsenter``.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from airflow_mlops.runtimes.local import RuntimeInstall, normalise_binds, runtime_command
from airflow_mlops.shared import EXIT_MARK


class WarmRuntimeError(RuntimeError):
    """A warm runtime could not be started or reached; callers fall back to a fresh process."""


class StepCancelled(WarmRuntimeError):
    """The step was stopped by :meth:`WarmRuntime.terminate` (the task is being killed)."""


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A hash of this provider's Python sources: a warm server only runs the code it imported.

    A server started before the provider was upgraded (or edited) is not reused; it exits
    after its idle timeout.
    """
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


#: Environment variable naming another directory for the warm runtimes' sockets, pid files and logs (under
#: ``/tmp``, which root-filesystem runtimes see): Airflow installations, or test workers, that run as one user
#: and must not share (or stop) each other's warm runtimes each set their own.
WARM_DIR_ENV = "AIRFLOW_MLOPS_WARM_DIR"


def socket_dir() -> Path:
    return Path(os.environ.get(WARM_DIR_ENV) or f"/tmp/airflow-mlops-{os.getuid()}")


class RuntimeLimitReached(WarmRuntimeError):
    """As many warm runtimes as allowed run and every one is running a step: this step takes a fresh process."""


def _alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


class ServerGone(WarmRuntimeError):
    """The server could not be reached before the step started (e.g. stopped to make room): nothing ran."""


def _stop_if_idle(name: str, pid: int) -> bool:
    """Stop server ``name`` unless a client runs a step on it (clients hold a shared lock on ``<name>.inuse``
    from before they connect until the step ends; this holds it exclusively while stopping)."""
    with open(socket_dir() / f"{name}.inuse", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
        (socket_dir() / f"{name}.pid").unlink(missing_ok=True)
        (socket_dir() / f"{name}.sock").unlink(missing_ok=True)
        return True


def make_room(limit: int, keep: str, log: Callable[[str], None] = print) -> None:
    """Stop idle warm runtimes, least recently used first, until fewer than ``limit`` run (``keep`` is spared).

    The caller holds ``<socket dir>/limit.lock`` until the server it starts has written its pid file,
    so two starts cannot both see room for one. Raises :class:`RuntimeLimitReached` when ``limit``
    run and all of them are busy.
    """
    if limit <= 0:
        return
    running = []
    for pid_file in socket_dir().glob("*.pid"):
        name = pid_file.name[: -len(".pid")]
        pid = _alive(pid_file)
        if pid is None or name == keep:
            continue
        used = socket_dir() / f"{name}.used"
        last = used.stat().st_mtime if used.exists() else pid_file.stat().st_mtime
        running.append((last, name, pid))
    for last, name, pid in sorted(running):
        if len(running) < limit:
            return
        if not _stop_if_idle(name, pid):
            continue  # running a step
        log(f"stopped warm runtime {name} (pid {pid}, unused for {time.time() - last:.0f} s): at most {limit} run "
            "at once ([mlops] max_warm_runtimes)")
        running = [r for r in running if r[1] != name]
    if len(running) >= limit:
        raise RuntimeLimitReached(f"{len(running)} warm runtimes run and each is running a step "
                                  f"([mlops] max_warm_runtimes = {limit})")


class WarmRuntime:
    """One warm runtime server for ``install`` with ``base_binds`` (state dir, code) and ``env``.

    :param max_running: at most this many warm runtimes of this user run at once: starting another
        first stops the least recently used idle one (0: no bound).
    """

    def __init__(
        self,
        install: RuntimeInstall,
        *,
        base_binds: Iterable[str],
        env: Mapping[str, str],
        preload: Iterable[str],
        idle_timeout: float = 600.0,
        start_timeout: float = 180.0,
        max_running: int = 0,
    ) -> None:
        self.install = install
        self.max_running = max_running
        self.base_binds = normalise_binds(base_binds)
        self.env = dict(env)
        self.preload = list(preload)
        self.idle_timeout = idle_timeout
        self.start_timeout = start_timeout
        ident = json.dumps([str(install.path), install.key, self.base_binds, sorted(self.env.items()), self.preload,
                            code_fingerprint()])
        name = f"{install.name}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}"
        self.name = name
        self.socket_path = socket_dir() / f"{name}.sock"
        self.pid_file = socket_dir() / f"{name}.pid"
        self.log_file = socket_dir() / f"{name}.log"
        self._conn: socket.socket | None = None
        self._cancelled = False

    # -- lifecycle ----------------------------------------------------------------------
    def pid(self) -> int | None:
        """The server's pid if it is running and listening."""
        pid = _alive(self.pid_file)
        return pid if pid is not None and self.socket_path.exists() else None

    def ensure_started(self, log: Callable[[str], None] = print) -> int:
        socket_dir().mkdir(mode=0o700, exist_ok=True)
        with open(socket_dir() / (self.socket_path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            pid = self.pid()
            if pid:
                return pid
            self.socket_path.unlink(missing_ok=True)
            with open(socket_dir() / "limit.lock", "w") as limit:  # starts and evictions one at a time
                fcntl.flock(limit, fcntl.LOCK_EX)
                make_room(self.max_running, keep=self.name, log=log)
                return self._start(log)

    def _start(self, log: Callable[[str], None]) -> int:
        command, env = runtime_command(
            self.install,
            ["python", "-m", "airflow_mlops.runtime_side.session", str(self.socket_path),
             "--preload", ",".join(self.preload), "--idle-timeout", str(self.idle_timeout)],
            env=self.env,
            binds=self.base_binds,
        )
        log(f"starting warm runtime {self.install.name} (log: {self.log_file})")
        with open(self.log_file, "ab") as out:
            # exec chain (unshare → sh → chroot → env → python) keeps this pid for the server
            proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise WarmRuntimeError(f"warm runtime exited with code {proc.returncode}:\n{self._log_tail()}")
            if self.socket_path.exists():
                self.pid_file.write_text(str(proc.pid))
                return proc.pid
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        raise WarmRuntimeError(f"warm runtime did not listen within {self.start_timeout:.0f} s:\n{self._log_tail()}")

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        return True

    # -- steps ----------------------------------------------------------------------------
    def bind(self, paths: Iterable[str]) -> None:
        """Make ``paths`` visible inside a running root-filesystem server (no-op for a venv)."""
        if self.install.isolation != "rootfs":
            return
        pid = self.pid()
        if pid is None:
            raise WarmRuntimeError("warm runtime is not running")
        root = os.path.realpath(self.install.path)
        for path in normalise_binds(paths):
            if any(path == b or path.startswith(b.rstrip("/") + "/") for b in [*self.base_binds, "/tmp"]):
                continue
            target = root + path
            make = f'mkdir -p "{target}"' if os.path.isdir(path) else f'mkdir -p "$(dirname "{target}")" && touch "{target}"'
            script = f'mountpoint -q "{target}" || {{ {make} && mount --bind "{path}" "{target}"; }}'
            out = subprocess.run(["nsenter", "--target", str(pid), "--mount", "--", "/bin/sh", "-c", script],
                                 capture_output=True, text=True, timeout=30)
            if out.returncode != 0:
                raise WarmRuntimeError(f"could not bind {path} into the warm runtime: {out.stderr.strip()}")

    def run(self, request: str, result: str, on_line: Callable[[str], None], timeout: float | None = None) -> int:
        """Run one step request; stream its output to ``on_line``; return its exit code.

        Raises :class:`TimeoutError` after ``timeout`` seconds, having stopped the step.
        """
        (socket_dir() / f"{self.name}.used").touch()  # for the least-recently-used order of make_room
        inuse = open(socket_dir() / f"{self.name}.inuse", "a")  # noqa: SIM115 - held for the step
        fcntl.flock(inuse, fcntl.LOCK_SH)  # a busy server is never stopped to make room
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(str(self.socket_path))
        except OSError as err:
            conn.close()
            inuse.close()
            raise ServerGone(f"cannot reach the warm runtime at {self.socket_path}: {err}") from err
        self._conn = conn
        self._cancelled = False
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            conn.settimeout(timeout)
            conn.sendall((json.dumps({"request": request, "result": result}) + "\n").encode())
            code: int | None = None
            for raw in conn.makefile("rb"):
                if deadline is not None:
                    conn.settimeout(max(deadline - time.monotonic(), 0.001))
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                if line.startswith(EXIT_MARK):
                    code = int(line.split()[-1])
                    break
                if line:
                    on_line(line)
            if code is None:
                if self._cancelled:
                    raise StepCancelled("the step was stopped")
                raise WarmRuntimeError("the warm runtime closed the connection without an exit code")
            return code
        finally:
            self._conn = None
            conn.close()
            inuse.close()

    def terminate(self) -> None:
        """Stop the step in flight: the server kills the step when its client hangs up."""
        conn = self._conn
        if conn is not None:
            self._cancelled = True
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def stop_all(newer_than: float | None = None) -> list[int]:
    """Stop every warm runtime of this user (started after ``newer_than``, a timestamp); return their pids."""
    stopped = []
    for pid_file in socket_dir().glob("*.pid"):
        try:
            if newer_than is not None and pid_file.stat().st_mtime < newer_than:
                continue
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            stopped.append(pid)
        except (OSError, ValueError):
            pass
        pid_file.unlink(missing_ok=True)
    return stopped
