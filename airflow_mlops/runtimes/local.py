"""Start a process inside a built runtime on this machine (standard library only).

A ``venv`` runtime is a virtualenv: its ``bin/python`` runs directly. A ``rootfs``
runtime is a Debian root filesystem: the process runs under ``chroot`` in a private
mount namespace (``unshare --mount``), with ``/proc``, ``/dev``, ``/sys``, ``/tmp`` and
each path the step reads or writes bind-mounted at the same path inside, so paths mean
the same thing on both sides. The mounts vanish with the namespace when the process ends.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Where a runtime's virtualenv lives inside its root filesystem.
ROOTFS_VENV = "/opt/runtime"
READY_FILE = "airflow-mlops-runtime.json"


@dataclass(frozen=True)
class RuntimeInstall:
    """A built runtime on disk.

    :param name: runtime name.
    :param isolation: ``venv`` or ``rootfs``.
    :param path: the virtualenv, or the root filesystem.
    :param key: the cache key it was built for.
    """

    name: str
    isolation: str
    path: Path
    key: str

    @property
    def python(self) -> str:
        """The runtime's Python, as seen by the process that runs in it."""
        if self.isolation == "rootfs":
            return f"{ROOTFS_VENV}/bin/python"
        return str(self.path / "bin" / "python")

    @property
    def site_root(self) -> Path:
        """The runtime's virtualenv as seen from the host."""
        if self.isolation == "rootfs":
            return self.path / ROOTFS_VENV.lstrip("/")
        return self.path

    def metadata(self) -> dict[str, Any]:
        return json.loads((self.path / READY_FILE).read_text())


def normalise_binds(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Absolute, existing, de-duplicated paths, dropping any path inside another one."""
    candidates = sorted({os.path.realpath(p) for p in paths if p and os.path.exists(p)})
    kept: list[str] = []
    for path in candidates:
        if path == "/":
            raise ValueError("refusing to bind-mount / into a runtime")
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return kept


def rootfs_command(
    root: str | os.PathLike[str],
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    binds: Iterable[str] = (),
    cwd: str = "/",
) -> list[str]:
    """The host command that runs ``argv`` inside root filesystem ``root``.

    Needs root (or an equivalent user namespace): ``unshare --mount`` and ``chroot``.
    """
    root = os.path.realpath(root)
    q = shlex.quote
    lines = [
        "set -e",
        f"R={q(root)}",
        'mount -t proc proc "$R/proc"',
        'mount --rbind /dev "$R/dev"',
        'mount --rbind /sys "$R/sys"',
    ]
    for host_file in ("/etc/hosts", "/etc/resolv.conf"):
        if os.path.exists(host_file):
            lines.append(f'touch "$R{host_file}" && mount --bind {q(host_file)} "$R{host_file}"')
    for path in normalise_binds(["/tmp", *binds]):
        if os.path.isdir(path):
            lines.append(f'mkdir -p "$R"{q(path)} && mount --bind {q(path)} "$R"{q(path)}')
        else:
            lines.append(
                f'mkdir -p "$(dirname "$R"{q(path)})" && touch "$R"{q(path)} && mount --bind {q(path)} "$R"{q(path)}'
            )
    env_args = " ".join(q(f"{k}={v}") for k, v in sorted(env.items()))
    lines.append(f'exec chroot "$R" /usr/bin/env -i -C {q(cwd)} {env_args} ' + " ".join(q(a) for a in argv))
    return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", "\n".join(lines)]


def runtime_command(
    install: RuntimeInstall,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    binds: Iterable[str] = (),
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run ``argv`` (``argv[0]`` = ``"python"``) in ``install``."""
    argv = [install.python if argv[0] == "python" else argv[0], *argv[1:]]
    if install.isolation == "rootfs":
        base_env = {"PATH": f"{ROOTFS_VENV}/bin:/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
        full_env = {**base_env, **env}
        return rootfs_command(install.path, argv, env=full_env, binds=binds), _host_env()
    bin_dir = str(install.path / "bin")
    full_env = {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "VIRTUAL_ENV": str(install.path),
        **env,
    }
    return argv, full_env


def _host_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LANG": "C.UTF-8"}


class RuntimeProcess:
    """A process started in a runtime whose merged stdout/stderr is passed line by line to ``on_line``.

    :meth:`terminate` stops the whole process group (the chroot and everything under it).
    """

    def __init__(self, command: Sequence[str], env: Mapping[str, str], on_line: Callable[[str], None]):
        self.command = list(command)
        self.env = dict(env)
        self.on_line = on_line
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> RuntimeProcess:
        self._proc = subprocess.Popen(
            self.command,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._pump, name="runtime-log", daemon=True)
        self._reader.start()
        return self

    def _pump(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for raw in iter(self._proc.stdout.readline, b""):
            self.on_line(raw.decode("utf-8", errors="replace").rstrip("\n"))

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def wait(self, timeout: float | None = None) -> int:
        assert self._proc is not None
        try:
            code = self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.terminate()
            raise
        if self._reader is not None:
            self._reader.join(timeout=10)
        return code

    def terminate(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL it after ``grace`` seconds."""
        if self._proc is None or self._proc.poll() is not None:
            return
        try:
            os.killpg(self._proc.pid, signal.SIGTERM)
            self._proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        except ProcessLookupError:
            pass
