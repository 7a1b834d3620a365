"""The model server's front door: an asyncio HTTP/1.1 layer that reads whole requests before gunicorn sees them.

gunicorn's threaded workers give a thread to each connection while they read its request, so
four clients that send a header a second (never finishing) take every thread of the model
server, and pings and predictions wait for as long as they stay. This layer (in the serving
runtime) accepts the clients instead: one coroutine per connection costs no thread.

Requests are parsed by llhttp (Node.js's HTTP parser, through ``httptools``, as uvicorn does),
which refuses what could be read two ways (RFC 9112 §6.3, the request-smuggling cases): two
different ``Content-Length`` values, ``Transfer-Encoding`` beside ``Content-Length``, a length
that is not a decimal number, obs-fold and bare-LF line endings; each is a 400 and the connection
is closed. What this layer adds is the policy around the parser:

* a request's head must arrive within ``header_timeout`` and its body within ``body_timeout``
  (else a 408 and the connection closes); an idle keep-alive connection closes after
  ``idle_timeout``;
* a request target over ``max_target_bytes`` is a 414, a head over ``max_header_bytes`` or with
  more than ``max_header_fields`` fields a 431, a body over ``max_body_bytes`` a 413, a body with
  neither length nor chunked framing on a method that carries one a 411, an HTTP/1.1 request
  without exactly one ``Host`` a 400; so are an HTTP version other than 1.0 and 1.1 and a
  ``Transfer-Encoding`` other than ``chunked`` (RFC 9110 allows 505 and 501: a client's choice is
  answered as a client error, and the server answers no client a 5xx but a 502 or a 503);
* the bytes of requests held at once (read here, or passed on and not yet answered) are bounded
  by ``max_buffered_bytes`` across all connections: a request that does not fit waits up to
  ``buffer_wait`` seconds without its body being read (TCP holds the client back), then gets a
  503 with ``Retry-After``; a request's declared length is held whole (bodies held in part could
  wait for each other for ever);
* a connection closed after a refusal lingers up to ``linger`` seconds, dropping what the client
  still sends, so that the answer is read rather than lost to a reset;
* ``Expect: 100-continue`` is answered once the request is admitted.

Only a whole request is passed on, re-written with a ``Content-Length`` (a chunked body is
decoded) and ``Connection: close``, over a Unix socket to gunicorn; gunicorn's answer is parsed
too and goes back with a ``Content-Length``, keeping the connection alive where the client asked.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import httptools

from airflow_mlops.shared import quoted

log = logging.getLogger("airflow_mlops.runtime_side.model_server.front")

_REASONS = {400: "Bad Request", 405: "Method Not Allowed", 408: "Request Timeout", 411: "Length Required",
            413: "Payload Too Large", 414: "URI Too Long", 417: "Expectation Failed",
            431: "Request Header Fields Too Large", 502: "Bad Gateway", 503: "Service Unavailable"}
#: Hop-by-hop and framing headers: the front frames what it passes on (RFC 9110 §7.6.1).
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te",
                         b"trailer", b"upgrade", b"content-length", b"expect"})
_WITH_BODY = frozenset({b"POST", b"PUT", b"PATCH"})


@dataclass(frozen=True)
class FrontLimits:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 5.0
    upstream_timeout: float = 300.0
    max_target_bytes: int = 8000  # gunicorn is told to take request lines up to 8190 bytes
    max_header_bytes: int = 64 * 1024
    max_header_fields: int = 100
    max_body_bytes: int = 32 * 1024 * 1024
    max_buffered_bytes: int = 64 * 1024 * 1024
    buffer_wait: float = 10.0
    linger: float = 2.0

    def __post_init__(self) -> None:
        if self.max_body_bytes > self.max_buffered_bytes:
            raise ValueError(f"max_body_bytes ({self.max_body_bytes}) is more than max_buffered_bytes "
                             f"({self.max_buffered_bytes}): such a body could never be taken")


class Refusal(Exception):
    """A request answered by the front itself, and the connection closed."""

    def __init__(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers

    def answer(self) -> bytes:
        reason = _REASONS.get(self.status, "Error")
        body = ('{"status": {"code": -1, "info": "%s", "reason": "%s", "status": 1}}'
                % (self.message.replace("\\", "\\\\").replace('"', "'"),
                   reason.upper().replace(" ", "_"))).encode()
        extra = "".join(f"{name}: {value}\r\n" for name, value in self.headers)
        return (f"HTTP/1.1 {self.status} {reason}\r\nContent-Type: application/json\r\n{extra}"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


def _answer(status: int, message: str) -> bytes:
    return Refusal(status, message).answer()


@dataclass
class _Request:
    started: float = field(default_factory=time.monotonic)
    target: bytearray = field(default_factory=bytearray)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    head_bytes: int = 0
    method: bytes = b""
    version: str = ""
    keep_alive: bool = False
    head_done_at: float | None = None
    length: int | None = None  # the Content-Length; None when chunked or without a body
    expect_continue: bool = False
    body: bytearray = field(default_factory=bytearray)
    complete: bool = False
    held: int = 0  # bytes of the shared buffer budget this request holds


class _Connection:
    """llhttp's callbacks for one client connection: the requests it completed, the one it is reading."""

    def __init__(self, limits: FrontLimits) -> None:
        self.limits = limits
        self.parser = httptools.HttpRequestParser(self)
        self.current: _Request | None = None
        self.done: deque[_Request] = deque()
        self.refusal: Refusal | None = None
        self.raw_head_bytes = 0

    # llhttp callbacks (a Refusal raised here stops the parser)
    def on_message_begin(self) -> None:
        self.current = _Request()
        self.raw_head_bytes = 0

    def on_url(self, part: bytes) -> None:
        request = self.current
        request.target += part
        if len(request.target) > self.limits.max_target_bytes:
            raise Refusal(414, f"the request target is longer than {self.limits.max_target_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self.current
        request.headers.append((name, value))
        request.head_bytes += len(name) + len(value) + 4
        if len(request.headers) > self.limits.max_header_fields:
            raise Refusal(431, f"the request has more than {self.limits.max_header_fields} header fields")
        if request.head_bytes + len(request.target) > self.limits.max_header_bytes:
            raise Refusal(431, f"the request head is longer than {self.limits.max_header_bytes} bytes")

    def on_headers_complete(self) -> None:
        request, parser, limits = self.current, self.parser, self.limits
        request.head_done_at = time.monotonic()
        request.method = parser.get_method()
        request.version = parser.get_http_version()
        request.keep_alive = parser.should_keep_alive() and request.version == "1.1"
        if request.version not in ("1.0", "1.1"):
            raise Refusal(400, f"HTTP/{request.version} is not supported: send HTTP/1.1")
        names = [name.lower() for name, _ in request.headers]
        if request.version == "1.1" and names.count(b"host") != 1:
            raise Refusal(400, "an HTTP/1.1 request needs exactly one Host header "
                               f"(this one has {names.count(b'host')})")
        values = {name.lower(): value for name, value in request.headers}
        chunked = b"transfer-encoding" in values
        if chunked and values[b"transfer-encoding"].strip().lower() != b"chunked":
            raise Refusal(400, f"Transfer-Encoding {quoted(values[b'transfer-encoding'])} is not supported: "
                               "send the body with a Content-Length or as chunked alone")
        if b"content-length" in values:
            request.length = int(values[b"content-length"])  # llhttp accepts only one decimal length
            if request.length > limits.max_body_bytes:
                raise Refusal(413, f"the body may be at most {limits.max_body_bytes} bytes "
                                   f"(Content-Length is {request.length})")
        elif not chunked and request.method in _WITH_BODY and not parser.should_upgrade():
            raise Refusal(411, f"{request.method.decode()} needs a body sent with a Content-Length "
                               "(or Transfer-Encoding: chunked)")
        expect = values.get(b"expect")
        if expect is not None:
            if expect.strip().lower() != b"100-continue":
                raise Refusal(417, f"Expect: {quoted(expect)} is not supported (only 100-continue)")
            request.expect_continue = request.version == "1.1"

    def on_body(self, data: bytes) -> None:
        request = self.current
        request.body += data
        if len(request.body) > self.limits.max_body_bytes:
            raise Refusal(413, f"the body may be at most {self.limits.max_body_bytes} bytes")

    def on_message_complete(self) -> None:
        self.current.complete = True
        self.done.append(self.current)
        self.current = None

    def feed(self, data: bytes) -> None:
        """Parse ``data``; what cannot be parsed becomes ``refusal`` (answered after the whole requests before it)."""
        reading_head = self.current is not None and self.current.head_done_at is None
        completed = len(self.done)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as err:
            context = err.__context__
            self.refusal = context if isinstance(context, Refusal) else Refusal(400, f"malformed request: {context}")
        except httptools.HttpParserError as err:
            self.refusal = Refusal(400, f"malformed request: {err}")
        except httptools.HttpParserUpgrade:
            # llhttp stops after the head of a CONNECT or an Upgrade request (the message counted whole): serve a
            # body-less one without the upgrade (HTTP/1.1 may ignore it) and close; refuse the others
            request = self.done[-1]
            framed = request.length or any(name.lower() == b"transfer-encoding" for name, _ in request.headers)
            if request.method == b"CONNECT" or framed:
                self.done.pop()
                self.refusal = (Refusal(405, "CONNECT is not supported") if request.method == b"CONNECT" else
                                Refusal(400, "a protocol upgrade with a body is not supported: send plain HTTP/1.1"))
            request.keep_alive = False
            return
        if self.refusal is None and self.current is not None and self.current.head_done_at is None:
            # llhttp keeps a header's value until its line ends: count what a head that has not ended sent
            if reading_head:
                self.raw_head_bytes += len(data)
            elif len(self.done) == completed:
                self.raw_head_bytes = len(data)  # this head began in ``data``
            if self.raw_head_bytes > self.limits.max_header_bytes:
                self.refusal = Refusal(431, f"the request head is longer than {self.limits.max_header_bytes} bytes")

    def pending(self) -> list[_Request]:
        """The requests whose heads are read (the whole ones and the one being read)."""
        requests = list(self.done)
        if self.current is not None and self.current.head_done_at is not None and self.refusal is None:
            requests.append(self.current)
        return requests


class _Buffers:
    """The bytes of requests the server holds at once, across connections (used on the front's event loop only)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used, self.peak = limit, 0, 0
        self.freed = asyncio.Condition()

    async def take(self, count: int, wait: float) -> bool:
        async with self.freed:
            try:
                await asyncio.wait_for(self.freed.wait_for(lambda: self.used + count <= self.limit), wait)
            except TimeoutError:
                return False
            self.used += count
            self.peak = max(self.peak, self.used)
            return True

    async def give(self, count: int) -> None:
        if count:
            async with self.freed:
                self.used -= count
                self.freed.notify_all()


class Front:
    """Listen on ``host:port``; pass each complete request to the gunicorn listening on ``upstream`` (a Unix socket)."""

    def __init__(self, host: str, port: int, upstream: str, limits: FrontLimits | None = None) -> None:
        self.host, self.port, self.upstream = host, port, upstream
        self.limits = limits or FrontLimits()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.buffers: _Buffers | None = None
        self.ready = threading.Event()

    def start_in_thread(self) -> threading.Thread:
        """Serve from a daemon thread (in the gunicorn master, before it forks its workers)."""
        thread = threading.Thread(target=self._run, name="model-server-front", daemon=True)
        thread.start()
        if not self.ready.wait(30):
            raise RuntimeError(f"the model server's front did not listen on {self.host}:{self.port}")
        return thread

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.buffers = _Buffers(self.limits.max_buffered_bytes)
        server = self.loop.run_until_complete(asyncio.start_server(self.handle, self.host, self.port, backlog=1024))
        log.info("front on %s:%s, requests passed to %s when whole", self.host, self.port, self.upstream)
        self.ready.set()
        try:
            self.loop.run_forever()
        finally:
            server.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(self.limits)
        try:
            await self._serve(connection, reader, writer)
        except (ConnectionError, OSError):
            pass
        finally:
            for request in [*connection.done, *([connection.current] if connection.current else [])]:
                await self.buffers.give(request.held)
                request.held = 0
            try:
                await asyncio.wait_for(writer.drain(), 5)
                await self._linger(reader, writer)
            except (ConnectionError, OSError, TimeoutError):
                pass
            writer.close()

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Close gently: end our side, then read and drop what the client still sends (for at most ``linger``
        seconds; nothing is kept) so that the kernel does not answer it with a reset, which can destroy the
        answer just sent before the client reads it: a client sending a body refused from its head (a 413,
        a 503) gets its answer (a "lingering close", as nginx does)."""
        if reader.at_eof() or not writer.can_write_eof():
            return
        writer.write_eof()
        deadline = time.monotonic() + self.limits.linger
        while (left := deadline - time.monotonic()) > 0:
            if not await asyncio.wait_for(reader.read(1 << 20), left):
                return

    async def _serve(self, connection: _Connection, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        limits, first = self.limits, True
        while True:
            waiting_since = time.monotonic()
            while not connection.done and connection.refusal is None:
                request = connection.current
                if request is None:
                    deadline = waiting_since + (limits.header_timeout if first else limits.idle_timeout)
                elif request.head_done_at is None:
                    deadline = request.started + limits.header_timeout
                else:
                    deadline = request.head_done_at + limits.body_timeout
                try:
                    data = await asyncio.wait_for(reader.read(65536), max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    if request is not None:  # a request had begun: say why it is closed
                        what, seconds = (("head", limits.header_timeout) if request.head_done_at is None
                                         else ("body", limits.body_timeout))
                        writer.write(_answer(408, f"the request {what} did not arrive within {seconds:g} s"))
                    return
                if not data:
                    return  # the client went away
                connection.feed(data)
                if not await self._admit(connection, writer):
                    return
            while connection.done:
                request = connection.done.popleft()
                try:
                    response, has_length = await self._pass_on(request)
                finally:
                    await self.buffers.give(request.held)
                    request.held = 0
                writer.write(response)
                await writer.drain()
                if not (request.keep_alive and has_length):
                    return
            if connection.refusal is not None:
                writer.write(connection.refusal.answer())
                return
            first = False

    async def _admit(self, connection: _Connection, writer: asyncio.StreamWriter) -> bool:
        """Hold buffer budget for every request whose head is read (and for a chunked body as it grows)."""
        for request in connection.pending():
            need = max(request.length or 0, len(request.body)) - request.held
            if need > 0:
                if not await self.buffers.take(need, self.limits.buffer_wait):
                    writer.write(Refusal(503, f"the model server holds {self.buffers.used} bytes of requests (at "
                                              f"most {self.limits.max_buffered_bytes}); send this one again shortly",
                                         (("Retry-After", "1"),)).answer())
                    return False
                request.held += need
            if request.expect_continue and not request.complete:
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.expect_continue = False
        return True

    async def _pass_on(self, request: _Request) -> tuple[bytes, bool]:
        """gunicorn's whole answer to one request (sent with ``Connection: close``) and whether it has a length."""
        lines = [b"%s %s HTTP/%s" % (request.method, bytes(request.target), request.version.encode())]
        lines += [name + b": " + value for name, value in request.headers if name.lower() not in _HOP_BY_HOP]
        lines += [b"Content-Length: %d" % len(request.body), b"Connection: close"]
        loop = asyncio.get_running_loop()
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.setblocking(False)
        answer = _UpstreamAnswer()

        async def send() -> None:
            try:
                await loop.sock_sendall(upstream, b"\r\n".join(lines) + b"\r\n\r\n")
                await loop.sock_sendall(upstream, request.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # gunicorn answered before it read the whole body (the app's 413): that answer is read below

        sender = None
        try:
            try:
                await loop.sock_connect(upstream, self.upstream)
            except OSError as err:
                return _answer(502, f"the model server is not answering: {err}"), False
            sender = asyncio.ensure_future(send())  # the answer is read while the body is sent
            deadline = time.monotonic() + self.limits.upstream_timeout
            while not answer.complete:
                try:
                    data = await asyncio.wait_for(loop.sock_recv(upstream, 1 << 20),
                                                  max(0.0, deadline - time.monotonic()))
                except ConnectionResetError:
                    break  # gunicorn closed leaving some of the body unread (e.g. a HEAD's): its answer came first
                if not data:
                    break
                answer.feed(data)
        except (TimeoutError, ConnectionError, OSError, httptools.HttpParserError) as err:
            return _answer(502, f"the model server did not answer: {type(err).__name__}"), False
        finally:
            if sender is not None:
                sender.cancel()
            upstream.close()
        if not answer.complete and not (answer.head_done and (request.method == b"HEAD" or answer.close_delimited)):
            return _answer(502, "the model server's answer was cut short"), False
        return answer.message(keep_alive=request.keep_alive, head=request.method == b"HEAD"), True


class _UpstreamAnswer:
    """gunicorn's answer, parsed by llhttp."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.head_done = self.complete = self.close_delimited = False

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_done = True
        names = {name.lower() for name, _ in self.headers}
        self.close_delimited = not names & {b"content-length", b"transfer-encoding"}

    def on_body(self, data: bytes) -> None:
        self.body += data

    def on_message_complete(self) -> None:
        self.complete = True

    def feed(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def message(self, *, keep_alive: bool, head: bool) -> bytes:
        status = self.parser.get_status_code()
        kept = [name + b": " + value for name, value in self.headers
                if name.lower() not in _HOP_BY_HOP or (head and name.lower() == b"content-length")]
        if not head:
            kept.append(b"Content-Length: %d" % len(self.body))
        kept.append(b"Connection: keep-alive" if keep_alive else b"Connection: close")
        return b"\r\n".join([b"HTTP/1.1 %d %s" % (status, self.reason), *kept]) + b"\r\n\r\n" + bytes(self.body)
