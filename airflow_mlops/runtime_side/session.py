"""A warm runtime: imports the runtime's heavy libraries once, then forks a child per step.

    python -m airflow_mlops.runtime_side.session SOCKET --preload tensorflow,tfx.components --idle-timeout 600

Runs inside a runtime (standard library only, plus the ``--preload`` modules). Each client
connection carries one JSON line ``{"request": path, "result": path}``; the server forks a
*session* process which forks the *step* process (its own process group) with stdout and
stderr on the connection, runs :func:`airflow_mlops.runtime_side.entrypoint.main` there, and
ends the stream with ``EXIT_MARK <code>``. When the client goes away (task killed) the session
stops the step and every process below it, detached ones included (see :mod:`.reaper`).
The parent never runs a step and holds no threads, so every step starts from the same freshly imported state. It exits after ``--idle-timeout`` seconds
without a connection or running step, removing its socket.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import select
import signal
import socket
import sys
import time

from airflow_mlops.runtimes import reaper
from airflow_mlops.shared import EXIT_MARK

#: Seconds a cancelled step's processes get between SIGTERM and SIGKILL.
STOP_GRACE = 3.0


def _run_session(conn: socket.socket) -> int:
    """In the session process: read the request line, fork the step, relay its exit code."""
    reader = conn.makefile("rb")
    line = reader.readline()
    try:
        job = json.loads(line)
        argv = [job["request"], job["result"]]
    except (ValueError, KeyError, TypeError) as err:
        conn.sendall(f"bad request line: {err}\n{EXIT_MARK} 2\n".encode())
        return 2
    reaper.become_subreaper()  # a step's detached descendants (Horovod workers) stay findable
    step = os.fork()
    if step == 0:  # the step process
        os.setpgid(0, 0)
        fd = conn.fileno()
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        code = 1
        try:
            from airflow_mlops.runtime_side import entrypoint

            entrypoint.own_process_tree()
            code = entrypoint.main(argv)
        except BaseException:  # noqa: BLE001 - report and exit, never return into the server loop
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    # the step's end wakes the session at once (a pidfd is readable when its process exits):
    # polling here cost every step up to half a second between its end and its result
    exited = os.pidfd_open(step) if hasattr(os, "pidfd_open") else None
    while True:
        done, status = os.waitpid(step, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            try:
                conn.sendall(f"\n{EXIT_MARK} {code}\n".encode())
            except OSError:
                pass
            return 0
        readable, _, _ = select.select([conn] if exited is None else [conn, exited], [], [], 0.5)
        if conn in readable and not conn.recv(1, socket.MSG_PEEK):  # the client hung up: stop the step
            reaper.stop_descendants(grace=STOP_GRACE)  # the step and all below it, detached or not
            return 0


def serve(path: str, preload: list[str], idle_timeout: float) -> int:
    started = time.monotonic()
    for module in preload:
        importlib.import_module(module)
    print(f"warm runtime: preloaded {', '.join(preload) or 'nothing'} in {time.monotonic() - started:.1f} s", flush=True)
    tmp = f"{path}.{os.getpid()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(tmp)
    os.chmod(tmp, 0o600)
    listener.listen(16)
    os.replace(tmp, path)  # clients see the socket only once it accepts
    inode = os.stat(path).st_ino
    print(f"warm runtime: listening on {path} (pid {os.getpid()})", flush=True)
    sessions: set[int] = set()
    last_activity = time.monotonic()
    try:
        while True:
            for pid in list(sessions):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    sessions.discard(pid)
                    last_activity = time.monotonic()
            if not sessions and time.monotonic() - last_activity > idle_timeout:
                print(f"warm runtime: idle for {idle_timeout:.0f} s, exiting", flush=True)
                return 0
            if not os.path.exists(path) or os.stat(path).st_ino != inode:
                print("warm runtime: socket removed or replaced, exiting", flush=True)
                return 0
            readable, _, _ = select.select([listener], [], [], 1.0)
            if not readable:
                continue
            conn, _ = listener.accept()
            pid = os.fork()
            if pid == 0:
                listener.close()
                code = 1
                try:
                    code = _run_session(conn)
                finally:
                    os._exit(code)
            conn.close()
            sessions.add(pid)
            last_activity = time.monotonic()
    finally:
        listener.close()
        try:
            if os.stat(path).st_ino == inode:
                os.unlink(path)
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("socket")
    parser.add_argument("--preload", default="", help="comma-separated modules to import once")
    parser.add_argument("--idle-timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    return serve(args.socket, [m for m in args.preload.split(",") if m], args.idle_timeout)


if __name__ == "__main__":
    sys.exit(main())
