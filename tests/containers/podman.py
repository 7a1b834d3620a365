"""podman for the container tests: this project's settings (``containers.conf`` beside this file) and
whether containers run on this machine at all (:func:`unavailable`: the reason they do not)."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

CONF = Path(__file__).with_name("containers.conf")
INSTALL_HINT = "install podman, buildah and runc (Debian: apt-get install podman buildah runc; `make container-tools`)"


def env() -> dict[str, str]:
    """The environment podman runs with here: this project's containers.conf."""
    return {**os.environ, "CONTAINERS_CONF": str(CONF)}


def podman(*args: str, input: bytes | None = None, check: bool = True, timeout: float | None = None,
           capture: bool = True, stdin: Any = None) -> subprocess.CompletedProcess:
    """Run ``podman args...``; its output as text (``input`` as bytes gives bytes back)."""
    result = subprocess.run(["podman", *args], env=env(), input=input, stdin=stdin, timeout=timeout,
                            capture_output=capture, text=input is None and stdin is None)
    if check and result.returncode:
        err = result.stderr if isinstance(result.stderr, str) else (result.stderr or b"").decode(errors="replace")
        raise subprocess.CalledProcessError(result.returncode, ["podman", *args], result.stdout, err)
    return result


def image_exists(ref: str) -> bool:
    return podman("image", "exists", ref, check=False).returncode == 0


def inspect(ref: str, kind: str = "container") -> dict[str, Any]:
    return json.loads(podman(kind, "inspect", ref).stdout)[0]


@functools.cache
def unavailable() -> str | None:
    """Why containers cannot run here (None: they can)."""
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed: {INSTALL_HINT}"
    try:
        info = podman("info", "--format", "json", timeout=60)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        return f"podman does not work here ({INSTALL_HINT}): {getattr(err, 'stderr', '') or err}"[:600]
    data = json.loads(info.stdout)
    if data.get("host", {}).get("ociRuntime", {}).get("name") != "runc":
        return f"podman does not use runc with {CONF}: {data.get('host', {}).get('ociRuntime')}"
    return None
