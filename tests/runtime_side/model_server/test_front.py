"""The model server's asyncio front (airflow_mlops.runtime_side.model_server.front) against a stub upstream on a Unix socket."""

from __future__ import annotations

import socket
import socketserver
import threading
import time

import pytest

from airflow_mlops.runtime_side.model_server.front import Front, FrontLimits

from ...serving.http_answers import responses as answers


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
        self.server.bodies.append(body)
        self.server.hold.wait(30)  # a test holds the upstream's answers here
        answer = method + b" " + path + b" " + str(len(body)).encode()
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(answer), answer))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def make_front(tmp_path):
    """A front (test limits: 1 s timeouts, 4 KiB heads, 1000-byte bodies, unless given) on the Echo upstream."""
    upstreams = []

    def make(**limits):
        path = str(tmp_path / f"up{len(upstreams)}.sock")
        upstream = Upstream(path, Echo)
        upstream.heads, upstream.bodies, upstream.hold = [], [], threading.Event()
        upstream.hold.set()
        threading.Thread(target=upstream.serve_forever, daemon=True).start()
        upstreams.append(upstream)
        settings = {"header_timeout": 1, "body_timeout": 1, "idle_timeout": 1, "max_header_bytes": 4096,
                    "max_body_bytes": 1000, "max_buffered_bytes": 1000, **limits}
        front = Front("127.0.0.1", free_port(), path, FrontLimits(**settings))
        front.start_in_thread()
        front.upstream_server = upstream
        return front

    yield make
    for upstream in upstreams:
        upstream.hold.set()
        upstream.shutdown()


@pytest.fixture
def front(make_front):
    return make_front()


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
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", b"408", b"body did not arrive within 1 s"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", b"413", b"at most 1000 bytes"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n", b"400", b"Invalid character in Content-Length"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n", b"431", b"longer than 4096 bytes"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000, b"431", b"longer than 4096 bytes"),  # never ends
    (b"POST / HTTP/1.1\r\nHost: x\r\n\r\n", b"411", b"POST needs a body sent with a Content-Length"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + b"100\r\n" + b"a" * 256 + b"\r\n" * 1
     + b"400\r\n" + b"a" * 1024 + b"\r\n0\r\n\r\n", b"413", b"at most 1000 bytes"),
])
def test_requests_that_cannot_be_whole_are_answered_and_closed(front, data, status, message):
    answer = exchange(front.port, data)
    assert answer.startswith(b"HTTP/1.1 " + status) and message in answer
    assert front.upstream_server.heads == []  # never reached the upstream


def test_fifty_slow_clients_do_not_hold_up_a_whole_request(front):
    slow = [socket.create_connection(("127.0.0.1", front.port)) for _ in range(50)]
    for sock in slow:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
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


def responses(data: bytes) -> list[tuple[int, bytes]]:
    """The final responses (status, body) in what a connection answered."""
    return [(status, body) for status, _, body in answers(data)]


def answering(raw: bytes) -> type[socketserver.StreamRequestHandler]:
    """An upstream that reads a request's head only, never its body, and answers ``raw``."""
    class FromTheHead(socketserver.StreamRequestHandler):
        def handle(self):
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            self.wfile.write(raw)

    return FromTheHead


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(("data", "message"), [
    # RFC 9112 section 6.3: lengths that two parsers could read differently are a 400, and the connection closes
    (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nContent-Length: 0\r\n\r\n" % len(SMUGGLED) + SMUGGLED,
     b"Duplicate Content-Length"),
    (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED,
     b"Duplicate Content-Length"),
    (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0, %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED,
     b"Invalid character in Content-Length"),
    (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
     b"Transfer-Encoding can't be present with Content-Length"),
    (b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + SMUGGLED,
     b"Content-Length can't be present with Transfer-Encoding"),
    (b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     b"Transfer-Encoding"),
    (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", b"Invalid character in Content-Length"),
    (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", b"Invalid character in Content-Length"),
    (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello", b"Invalid character in Content-Length"),
    (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello", b"Invalid header field char"),
    (b"POST /a HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n", b"Unexpected whitespace"),  # obs-fold
    (b"POST /a HTTP/1.1\nHost: x\nContent-Length: 0\n\n", b"Expected CRLF after version"),  # bare LF: at once, no 408
    (b"POST /a HTTP/1.1\r\nHost: x\nContent-Length: 0\r\n\r\n", b"Missing expected CR after header value"),
    (b"POST /a HTTP/1.1\r\nHost: x\rContent-Length: 0\r\n\r\n", b"Missing expected LF after header value"),
    (b"GET /a HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", b"Invalid header value char"),
    (b"GET /a HTTP/1.1\r\n\r\n", b"exactly one Host header (this one has 0)"),
    (b"GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", b"exactly one Host header (this one has 2)"),
    (b"get /a HTTP/1.1\r\nHost: x\r\n\r\n", b"Invalid method"),
])
def test_ambiguous_requests_are_a_400_answered_once_and_closed(make_front, data, message):
    front = make_front(header_timeout=10)  # a hang would show: the answer must come at once
    started = time.monotonic()
    answer = exchange(front.port, data, wait=5)
    assert time.monotonic() - started < 3
    assert responses(answer) == [(400, responses(answer)[0][1])], answer  # one answer, not one per "request"
    assert message in answer and b"Connection: close" in answer
    assert front.upstream_server.heads == []  # nothing reached the model server


@pytest.mark.parametrize(("data", "status", "message"), [
    (b"GET /" + b"a" * 8001 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, b"longer than 8000 bytes"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n", 431,
     b"more than 100 header fields"),
    (b"GET / HTTP/0.9\r\n\r\n", 400, b"HTTP/0.9 is not supported"),
    (b"GET /\r\n\r\n", 400, b"HTTP/0.9 is not supported"),
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 400, b"HTTP/2.0 is not supported"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx", 417, b"only 100-continue"),
    (b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + SMUGGLED, 400,
     b"Transfer-Encoding 'gzip, chunked' is not supported"),
    (b"CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n", 405, b"CONNECT is not supported"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\n{}", 400,
     b"upgrade with a body"),
])
def test_what_the_front_does_not_take_is_a_4xx_naming_it(make_front, data, status, message):
    front = make_front(max_header_bytes=64 * 1024)
    answer = exchange(front.port, data)
    assert responses(answer) == [(status, responses(answer)[0][1])], answer
    assert message in answer
    assert front.upstream_server.heads == []


def test_the_requests_before_a_malformed_one_are_answered_then_it_is_refused(front):
    answer = exchange(front.port, b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n")
    assert [status for status, _ in responses(answer)] == [200, 200, 400]
    assert [body for _, body in responses(answer)[:2]] == [b"GET /1 0", b"GET /2 0"]


def test_a_chunked_body_is_passed_on_whole_with_its_length(front):
    answer = exchange(front.port, b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                                  b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n")
    assert responses(answer) == [(200, b"POST /c 11")]
    head = front.upstream_server.heads[0]
    assert b"Content-Length: 11" in head and b"chunked" not in head.lower() and b"Connection: close" in head
    assert front.upstream_server.bodies == [b"hello world"]


def test_expect_100_continue_is_answered_before_the_body_is_sent(front):
    with socket.create_connection(("127.0.0.1", front.port), timeout=5) as sock:
        sock.sendall(b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"  # the client waits for this before its body
        sock.sendall(b"hello")
        assert responses(sock.recv(65536)) == [(200, b"POST /e 5")]
    assert b"expect" not in front.upstream_server.heads[0].lower()


def test_expect_100_continue_with_a_body_too_large_gets_the_413_instead(front):
    answer = exchange(front.port, b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n")
    assert b"100 Continue" not in answer and responses(answer)[0][0] == 413


def test_the_bytes_held_across_connections_are_bounded_then_a_503_with_retry_after(make_front):
    front = make_front(buffer_wait=1)
    upstream = front.upstream_server
    upstream.hold.clear()  # the upstream keeps the first request (800 bytes held) until told
    first = socket.create_connection(("127.0.0.1", front.port), timeout=10)
    first.sendall(b"POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 800\r\n\r\n" + b"a" * 800)
    deadline = time.monotonic() + 5
    while not upstream.bodies and time.monotonic() < deadline:
        time.sleep(0.05)
    answer = exchange(front.port, b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 800\r\n\r\n" + b"b" * 800)
    assert responses(answer)[0][0] == 503 and b"Retry-After: 1" in answer, answer
    assert b"holds 800 bytes of requests (at most 1000)" in answer
    small = socket.create_connection(("127.0.0.1", front.port), timeout=10)  # 800 + 100 fit: passed on
    small.sendall(b"POST /3 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"c" * 100)
    upstream.hold.set()
    assert responses(first.recv(65536)) == [(200, b"POST /1 800")]
    assert responses(small.recv(65536)) == [(200, b"POST /3 100")]
    first.close()
    small.close()
    answer = exchange(front.port, b"POST /4 HTTP/1.1\r\nHost: x\r\nContent-Length: 800\r\n\r\n" + b"d" * 800)
    assert responses(answer) == [(200, b"POST /4 800")]
    assert front.buffers.peak <= 1000
    deadline = time.monotonic() + 5
    while front.buffers.used and time.monotonic() < deadline:
        time.sleep(0.05)
    assert front.buffers.used == 0


def test_an_answer_without_a_length_gets_one_and_the_connection_stays_alive(make_front, tmp_path):
    front = make_front()
    front.upstream_server.RequestHandlerClass = answering(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"
                                                          b"until close")
    with socket.create_connection(("127.0.0.1", front.port), timeout=5) as sock:
        for _ in range(2):
            sock.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = sock.recv(65536)
            assert responses(answer) == [(200, b"until close")]
            assert b"Content-Length: 11" in answer and b"Connection: keep-alive" in answer


def test_limits_that_could_never_take_a_body_are_refused():
    with pytest.raises(ValueError, match="could never be taken"):
        FrontLimits(max_body_bytes=2000, max_buffered_bytes=1000)


def test_an_answer_given_before_the_body_was_read_reaches_the_client(make_front):
    """gunicorn's app may refuse a request from its head (a 413) and close without reading a large body: the
    front's write then breaks, and the answer must still be passed on (it used to be a 502: BrokenPipeError)."""
    front = make_front(max_body_bytes=8 << 20, max_buffered_bytes=16 << 20)
    front.upstream_server.RequestHandlerClass = answering(
        b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo much")
    body = b"x" * (6 << 20)
    answer = exchange(front.port, b"POST /f HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    assert responses(answer) == [(413, b"too much")]


def test_an_upstream_that_closes_with_the_body_unread_still_gets_its_answer_through(make_front):
    front = make_front()
    front.upstream_server.RequestHandlerClass = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    answer = exchange(front.port, b"POST /h HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n" + b"b" * 900)
    assert responses(answer) == [(200, b"ok")]
