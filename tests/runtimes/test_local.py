from __future__ import annotations

import os
import sys
import time

import pytest

from airflow_mlops.runtimes.local import RuntimeInstall, RuntimeProcess, normalise_binds, rootfs_command, runtime_command


def test_normalise_binds_drops_nested_and_missing(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    binds = normalise_binds([str(tmp_path / "a" / "b"), str(tmp_path / "a"), str(tmp_path / "missing"), ""])
    assert binds == [str(tmp_path / "a")]


def test_normalise_binds_refuses_root():
    with pytest.raises(ValueError, match="refusing"):
        normalise_binds(["/"])


def test_rootfs_command_binds_each_path_at_the_same_place(tmp_path):
    data = "/etc"  # a directory outside /tmp, which is always bound
    cmd = rootfs_command("/srv/rootfs", ["python", "-c", "print(1)"], env={"A": "b c"}, binds=[data, str(tmp_path)])
    assert cmd[:5] == ["unshare", "--mount", "--propagation", "private", "--"]
    script = cmd[-1]
    assert f'mount --bind {data} "$R"{data}' in script
    assert 'mount --bind /tmp "$R"/tmp' in script
    assert f"{tmp_path}" not in script  # under /tmp: covered by the /tmp bind
    assert 'mount -t proc proc "$R/proc"' in script
    assert "exec chroot \"$R\" /usr/bin/env -i -C / 'A=b c' python -c 'print(1)'" in script


def test_venv_command_uses_the_venv_python(tmp_path):
    install = RuntimeInstall("x", "venv", tmp_path, "k")
    argv, env = runtime_command(install, ["python", "-m", "m"], env={"PYTHONPATH": "/p"})
    assert argv == [str(tmp_path / "bin" / "python"), "-m", "m"]
    assert env["PYTHONPATH"] == "/p" and env["VIRTUAL_ENV"] == str(tmp_path)


def test_rootfs_install_python_is_inside():
    install = RuntimeInstall("x", "rootfs", "/r", "k")  # type: ignore[arg-type]
    assert install.python == "/opt/runtime/bin/python"


def test_process_streams_lines_and_exit_code():
    lines: list[str] = []
    proc = RuntimeProcess([sys.executable, "-c", "import sys; print('a'); print('b', file=sys.stderr); sys.exit(3)"],
                          os.environ, lines.append).start()
    assert proc.wait() == 3
    assert sorted(lines) == ["a", "b"]


def test_terminate_kills_the_process_group(tmp_path):
    marker = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time;"
        f"c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        f"open({str(marker)!r}, 'w').write(str(c.pid)); print('started', flush=True); time.sleep(60)"
    )
    proc = RuntimeProcess([sys.executable, "-c", code], os.environ, lambda _: None).start()
    for _ in range(100):
        if marker.exists() and marker.read_text():
            break
        time.sleep(0.05)
    child = int(marker.read_text())
    proc.terminate(grace=2)
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the child of the runtime process survived terminate()")
