"""A cheap step that reports what a runtime has: used by the runtime listing and tests."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from typing import Any


def runtime_info(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Return the Python version, the C library and the versions of ``params["packages"]``."""
    versions: dict[str, str | None] = {}
    for name in params.get("packages", []):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "executable": sys.executable,
        "libc": " ".join(platform.libc_ver()),
        "packages": versions,
    }
