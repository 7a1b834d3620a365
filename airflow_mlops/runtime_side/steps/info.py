"""A cheap step that reports what a runtime has: used by the runtime listing and tests."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from typing import Any


def runtime_info(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Return the Python version, the C library and the versions of ``params["packages"]``.

    ``params["sleep"]`` seconds are spent first, printing a line a second (to test log
    streaming and cancellation); ``params["exit"]`` ends the process with that code instead
    of returning (to test a runtime that dies without a result); ``params["detach_pid_file"]``
    first starts a process that leaves the step's session and whose parent exits (as Horovod's
    workers do), and writes its pid there (to test that stopping a step stops it too);
    ``params["temp_file"]`` leaves a file in a new ``tempfile.mkdtemp()`` directory, as TFX
    does, and returns its path as ``temp_file`` (to test that the step's temporary directory
    is removed); ``params["read_file"]`` is read and returned as ``file_text`` (to test which host
    paths a step sees). ``tempdir`` is the step's temporary directory.
    """
    import os
    import subprocess
    import tempfile
    import time

    if params.get("detach_pid_file"):
        orphan = (
            "import os, sys, time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    open(sys.argv[1] + '.tmp', 'w').write(str(os.getpid()))\n"
            "    os.replace(sys.argv[1] + '.tmp', sys.argv[1])\n"
            "    time.sleep(300)\n"
        )
        subprocess.run([sys.executable, "-c", orphan, params["detach_pid_file"]], check=True)

    temp_file = None
    if params.get("temp_file"):
        temp_file = os.path.join(tempfile.mkdtemp(), "left-behind.txt")
        with open(temp_file, "w") as handle:
            handle.write("a step's temporary file\n")
        print(f"runtime.info: temporary file {temp_file}", flush=True)
    for second in range(int(params.get("sleep", 0))):
        print(f"runtime.info: sleeping, {second + 1} s", flush=True)
        time.sleep(1)
    if "exit" in params:
        os._exit(int(params["exit"]))
    file_text = None
    if params.get("read_file"):
        with open(params["read_file"]) as handle:
            file_text = handle.read()
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
        "pid": os.getpid(),
        "file_text": file_text,
        "preloaded": sorted(m for m in ("tensorflow", "tfx") if m in sys.modules),
        "tempdir": tempfile.gettempdir(),
        "temp_file": temp_file,
    }
