"""The model server's asyncio front (airflow_mlops.runtime_side.model_server.front) against a stub upstream on a Unix socket."""

from __future__ import annotations

import socket
import socketserver
import threading

import pytest

from airflow_mlops.runtime_side.model_server.front import Front, FrontLimits


class Upstream(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class Echo(socketserver.StreamRequestHandler):
    """Answers every whole request with its method, path and body length (as gunicorn would, then closes)."""

    def handle(self):
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += self.rfile.read(1)
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        body = self.rfile.read(length)
        method, path, _ = head.split(b"\r\n")[0].split(b" ")
        self.server.heads.append(head)
        answer = method + b" " + path + b" " + str(len(body)).encode()
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(answer), answer))


@pytest.fixture
def front(tmp_path):
    path = str(tmp_path / "up.sock")
    upstream = Upstream(path, Echo)
    upstream.heads = []
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    front = Front("127.0.0.1", port, path, FrontLimits(header_timeout=1, body_timeout=1, idle_timeout=1,
                                                      max_header_bytes=4096, max_body_bytes=1000))
    front.start_in_thread()
    front.upstream_server = upstream
    yield front
    upstream.shutdown()


def exchange(port: int, data: bytes, wait: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
        return answer


def test_whole_requests_pass_and_a_connection_is_kept_alive(front):
    request = b"POST /api/v1.0/predictions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    with socket.create_connection(("127.0.0.1", front.port), timeout=5) as sock:
        for _ in range(2):  # two requests over one connection
            sock.sendall(request)
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"POST /api/v1.0/predictions 5")
            assert b"Connection: keep-alive" in answer
    assert all(b"Connection: close" in head for head in front.upstream_server.heads)


@pytest.mark.parametrize(("data", "status", "message"), [
    (b"POST / HTTP/1.1\r\nHost: x\r\n", b"408", b"head did not arrive within 1 s"),
    (b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", b"408", b"body did not arrive within 1 s"),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"411", b"Content-Length, not chunked"),
    (b"POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n", b"413", b"at most 1000 bytes"),
    (b"POST / HTTP/1.1\r\nContent-Length: lots\r\n\r\n", b"400", b"Content-Length is not a number"),
    (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n", b"431", b"longer than 4096 bytes"),
])
def test_requests_that_cannot_be_whole_are_answered_and_closed(front, data, status, message):
    answer = exchange(front.port, data)
    assert answer.startswith(b"HTTP/1.1 " + status) and message in answer
    assert front.upstream_server.heads == []  # never reached the upstream


def test_fifty_slow_clients_do_not_hold_up_a_whole_request(front):
    slow = [socket.create_connection(("127.0.0.1", front.port)) for _ in range(50)]
    for sock in slow:
        sock.sendall(b"POST / HTTP/1.1\r\nX-Slow: 1\r\n")
    answer = exchange(front.port, b"GET /health/ping HTTP/1.0\r\n\r\n")  # answered while they all hang
    assert answer.endswith(b"GET /health/ping 0")
    for sock in slow:
        sock.close()


def test_an_upstream_that_is_gone_is_a_502(front):
    front.upstream_server.shutdown()
    front.upstream_server.server_close()
    import os

    os.unlink(front.upstream)
    answer = exchange(front.port, b"GET /health/ping HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 502") and b"not answering" in answer
