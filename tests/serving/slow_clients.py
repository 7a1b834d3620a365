"""Slow clients for the model server's tests and benchmark: loopback only, bounded in time.

Each of ``count`` connections sends a request line, then one header a second, and never finishes
its request; they stop by themselves after ``seconds`` (or when the ``with`` block ends).
"""

from __future__ import annotations

import socket
import threading
import time


class SlowClients:
    def __init__(self, host: str, port: int, count: int, seconds: float = 20.0) -> None:
        self.sockets = [socket.create_connection((host, port), timeout=5) for _ in range(count)]
        self.deadline = time.monotonic() + seconds
        self.thread = threading.Thread(target=self._drip, daemon=True)

    def _drip(self) -> None:
        for sock in self.sockets:
            sock.sendall(b"POST /api/v1.0/predictions HTTP/1.1\r\nHost: slow\r\n")
        while time.monotonic() < self.deadline:
            for sock in self.sockets:
                try:
                    sock.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    pass
            time.sleep(1)

    def __enter__(self) -> SlowClients:
        self.thread.start()
        time.sleep(1.5)  # every connection has begun its request
        return self

    def __exit__(self, *exc: object) -> None:
        self.deadline = 0
        self.thread.join(5)
        for sock in self.sockets:
            sock.close()
