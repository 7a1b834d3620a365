"""Stop a step's whole process tree, even the parts that left its process group (Linux, stdlib only).

Steps start processes of their own, and some of them leave the step's process group or
session on purpose: ``horovodrun`` starts each worker with ``setsid`` so that its own
signal handling works. Killing the step's process group then leaves the workers running
(training on, writing checkpoints) after their Airflow task was killed. So a process that
owns a step marks itself a *child subreaper* (orphans below it are re-parented to it, not
to init) and stops the step by walking its descendants in ``/proc``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def become_subreaper() -> bool:
    """Orphaned descendants of this process are re-parented to it (so they can be found)."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent exits."""
    parent = os.getppid()
    if not _prctl(_PR_SET_PDEATHSIG, int(sig)):
        return False
    if os.getppid() != parent:  # the parent was already gone before the request took effect
        os.kill(os.getpid(), sig)
    return True


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z"


def descendants(root: int) -> list[int]:
    """Pids of every living descendant of ``root`` (children first), read from ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat[stat.rindex(b")") + 2 :].split()
        if fields[0] == b"Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    queue = [root]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _reap_children() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def stop_descendants(root: int | None = None, grace: float = 3.0) -> int:
    """SIGTERM every descendant of ``root`` (default: this process), SIGKILL what is left after ``grace`` s.

    Returns how many processes were signalled. Children of this process are reaped.
    """
    root = os.getpid() if root is None else root
    pids = descendants(root)
    if not pids:
        return 0
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if root == os.getpid():
            _reap_children()
        if not descendants(root):
            return len(pids)
        time.sleep(0.05)
    left = descendants(root)
    for _ in range(200):  # a process may fork while we kill: repeat until nothing is left
        if not left:
            break
        _signal_all(left, signal.SIGKILL)
        if root == os.getpid():
            _reap_children()
        time.sleep(0.05)
        left = descendants(root)
    return len(pids)
