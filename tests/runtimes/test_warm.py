"""Warm runtimes with a real (small) virtualenv runtime and the real server."""

from __future__ import annotations

import os
import threading
import time

import pytest

from airflow_mlops.runtimes.builder import ensure_runtime
from airflow_mlops.runtimes.contract import StepRequest, StepResult, write_json_atomic
from airflow_mlops.runtimes.specs import RuntimeSpec
from airflow_mlops.runtimes.warm import StepCancelled, WarmRuntime, WarmRuntimeError
from tests.runtimes.processes import alive, wait_for_pid_file, wait_until_dead

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def small_install(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("warm")
    lock = tmp / "small.txt"
    lock.write_text("six==1.17.0\n")
    spec = RuntimeSpec(name="small", description="", lock_file=str(lock))
    return ensure_runtime(spec, tmp / "cache", isolation="venv", log=lambda _: None)


@pytest.fixture
def warm(small_install, tmp_path):
    server = WarmRuntime(small_install, base_binds=[REPO, str(tmp_path)],
                         env={"PYTHONPATH": REPO, "PYTHONUNBUFFERED": "1"}, preload=["json"], idle_timeout=60)
    yield server
    server.stop()


def request(tmp_path, name, **params):
    req, res = tmp_path / f"{name}.req.json", tmp_path / f"{name}.res.json"
    request = StepRequest(step="runtime.info", params=params, scratch_dir=str(tmp_path / f"{name}.tmp"))
    write_json_atomic(req, request.to_json())
    return str(req), str(res)


def test_steps_run_in_forked_children_of_one_server(warm, tmp_path):
    pid = warm.ensure_started(log=lambda _: None)
    assert warm.ensure_started(log=lambda _: None) == pid  # reused, not restarted
    lines: list[str] = []
    step_pids = []
    for n in range(2):
        req, res = request(tmp_path, f"r{n}", packages=["six"], sleep=1)
        assert warm.run(req, res, lines.append) == 0
        outputs = StepResult.read(res).outputs
        assert outputs["packages"] == {"six": "1.17.0"}
        step_pids.append(outputs["pid"])
    assert len(set(step_pids)) == 2 and pid not in step_pids
    assert "runtime.info: sleeping, 1 s" in lines  # streamed from the step process
    assert warm.pid() == pid


def test_step_that_dies_reports_its_exit_code(warm, tmp_path):
    warm.ensure_started(log=lambda _: None)
    req, res = request(tmp_path, "die", exit=3)
    assert warm.run(req, res, lambda _: None) == 3
    assert not os.path.exists(res)
    req, res = request(tmp_path, "after")
    assert warm.run(req, res, lambda _: None) == 0  # the server survived


def test_terminate_stops_the_step_not_the_server(warm, tmp_path):
    pid = warm.ensure_started(log=lambda _: None)
    req, res = request(tmp_path, "long", sleep=60)
    started = threading.Event()
    codes = []

    def on_line(line):
        started.set()

    def run():
        try:
            warm.run(req, res, on_line)
        except StepCancelled as err:
            codes.append(err)

    runner = threading.Thread(target=run)
    t0 = time.monotonic()
    runner.start()
    assert started.wait(20)
    warm.terminate()
    runner.join(30)
    assert not runner.is_alive() and time.monotonic() - t0 < 30
    assert len(codes) == 1 and isinstance(codes[0], StepCancelled)
    assert warm.pid() == pid


def test_a_cancelled_step_leaves_no_temporary_directory(warm, tmp_path):
    warm.ensure_started(log=lambda _: None)
    req, res = request(tmp_path, "temp", sleep=60, temp_file=True)
    paths: list[str] = []
    sleeping = threading.Event()

    def on_line(line):
        if "temporary file" in line:
            paths.append(line.rsplit(" ", 1)[1])
        if "sleeping" in line:
            sleeping.set()

    runner = threading.Thread(target=lambda: pytest.raises(StepCancelled, warm.run, req, res, on_line))
    runner.start()
    assert sleeping.wait(20)
    assert len(paths) == 1 and os.path.exists(paths[0])
    warm.terminate()
    runner.join(30)
    assert not runner.is_alive()
    step_tmp = os.path.dirname(os.path.dirname(paths[0]))
    deadline = time.monotonic() + 10  # the client returns at once; the step cleans up as it stops
    while os.path.exists(step_tmp) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(step_tmp), f"the cancelled step's temporary directory {step_tmp} was left behind"


def test_terminate_stops_detached_descendants_of_the_step(warm, tmp_path):
    """Like Horovod's workers: a process that left the step's session and lost its parent."""
    warm.ensure_started(log=lambda _: None)
    pid_file = tmp_path / "orphan.pid"
    req, res = request(tmp_path, "detach", sleep=60, detach_pid_file=str(pid_file))
    runner = threading.Thread(target=lambda: pytest.raises(StepCancelled, warm.run, req, res, lambda _: None))
    runner.start()
    orphan = wait_for_pid_file(pid_file)
    assert alive(orphan)
    warm.terminate()
    runner.join(30)
    assert not runner.is_alive()
    assert wait_until_dead(orphan), "a detached process of the cancelled step is still running"


def test_timeout(warm, tmp_path):
    warm.ensure_started(log=lambda _: None)
    req, res = request(tmp_path, "slow", sleep=30)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        warm.run(req, res, lambda _: None, timeout=2)
    assert time.monotonic() - t0 < 10


def test_idle_server_exits_and_removes_its_socket(small_install, tmp_path):
    server = WarmRuntime(small_install, base_binds=[REPO], env={"PYTHONPATH": REPO}, preload=[], idle_timeout=1)
    pid = server.ensure_started(log=lambda _: None)
    for _ in range(100):
        if server.pid() is None:
            break
        time.sleep(0.1)
    assert server.pid() is None and not server.socket_path.exists()
    # gone, or a zombie until its parent (here: this test process) reaps it
    status = f"/proc/{pid}/status"
    assert not os.path.exists(status) or "\nState:\tZ" in open(status).read()


def test_server_that_cannot_start_is_reported(small_install, tmp_path):
    server = WarmRuntime(small_install, base_binds=[REPO], env={"PYTHONPATH": REPO},
                         preload=["no_such_module_anywhere"], idle_timeout=5)
    with pytest.raises(WarmRuntimeError, match="No module named 'no_such_module_anywhere'"):
        server.ensure_started(log=lambda _: None)


def test_distinct_settings_get_distinct_servers(small_install):
    a = WarmRuntime(small_install, base_binds=[REPO], env={"A": "1"}, preload=[])
    b = WarmRuntime(small_install, base_binds=[REPO], env={"A": "2"}, preload=[])
    assert a.socket_path != b.socket_path
    assert len(str(a.socket_path)) < 100  # AF_UNIX paths are limited to 108 bytes


def test_a_change_of_the_provider_code_starts_a_new_server(small_install, tmp_path, monkeypatch):
    """A server imported the code of its start; edited or upgraded code must not run in it."""
    from airflow_mlops.runtimes import warm as warm_module

    def make():
        return WarmRuntime(small_install, base_binds=[REPO], env={"PYTHONPATH": REPO}, preload=[], idle_timeout=60)

    before = make().socket_path
    assert make().socket_path == before
    monkeypatch.setattr(warm_module, "code_fingerprint", lambda: "changed")
    assert make().socket_path != before


@pytest.fixture
def own_socket_dir(monkeypatch):
    """A socket directory of the test's own: the bound counts only these servers, not others on the machine."""
    import shutil
    import tempfile

    from airflow_mlops.runtimes import warm as warm_module

    path = tempfile.mkdtemp(prefix="wm-", dir="/tmp")  # short: socket paths are limited to 108 bytes
    monkeypatch.setattr(warm_module, "socket_dir", lambda: __import__("pathlib").Path(path))
    yield path
    warm_module.stop_all()
    shutil.rmtree(path, ignore_errors=True)


def _server(install, tmp_path, name, limit):
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    return WarmRuntime(install, base_binds=[REPO, str(folder)], env={"PYTHONPATH": REPO, "PYTHONUNBUFFERED": "1"},
                       preload=["json"], idle_timeout=60, max_running=limit)


def test_at_most_n_servers_run_and_the_least_recently_used_idle_one_makes_room(small_install, tmp_path,
                                                                               own_socket_dir):
    from airflow_mlops.runtimes.warm import RuntimeLimitReached, ServerGone

    a, b, c = (_server(small_install, tmp_path, n, limit=2) for n in "abc")
    pid_a, pid_b = a.ensure_started(log=lambda _: None), b.ensure_started(log=lambda _: None)
    time.sleep(1.1)  # file times have a resolution to respect
    req, res = request(tmp_path, "a1")
    assert a.run(req, res, lambda _: None) == 0  # a is now the more recently used
    lines: list[str] = []
    pid_c = c.ensure_started(log=lines.append)
    wait_until_dead(pid_b)
    assert alive(pid_a) and alive(pid_c) and b.pid() is None
    assert any("stopped warm runtime small-" in line and "max_warm_runtimes" in line for line in lines)
    with pytest.raises(ServerGone):  # a client of the stopped server learns it before any step ran
        b.run(*request(tmp_path, "b1"), lambda _: None)

    # a server running a step is never stopped: with a busy and c the least recently used, c makes room
    time.sleep(1.1)
    busy = threading.Thread(target=a.run, args=(*request(tmp_path, "a2", sleep=4), lambda _: None))
    busy.start()
    time.sleep(1.5)
    pid_b = b.ensure_started(log=lambda _: None)
    wait_until_dead(pid_c)
    assert alive(pid_a) and alive(pid_b)
    # one allowed, and it is busy: no room, the caller runs the step elsewhere
    with pytest.raises(RuntimeLimitReached, match="each is running a step"):
        _server(small_install, tmp_path, "d", limit=1).ensure_started(log=lambda _: None)
    busy.join()
