"""The model server's front door: an asyncio HTTP/1.1 layer that reads whole requests before gunicorn sees them.

gunicorn's threaded workers give a thread to each connection while they read its request, so
four clients that send a header a second (never finishing) take every thread of the model
server, and pings and predictions wait for as long as they stay. This layer (standard library
only, in the serving runtime) accepts the clients instead: one coroutine per connection costs
no thread, a request's head must arrive within ``header_timeout`` and its body within
``body_timeout`` (else the connection is closed, with a 408 where a request had begun), an idle
keep-alive connection is closed after ``idle_timeout``, and heads and bodies are bounded. Only
a complete request is passed on, over a Unix socket, to gunicorn, whose answer goes back to the
client as is (keep-alive kept where the client asked for it and the answer has a length).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass

log = logging.getLogger("airflow_mlops.runtime_side.model_server.front")

_REASONS = {400: "Bad Request", 408: "Request Timeout", 411: "Length Required", 413: "Payload Too Large",
            431: "Request Header Fields Too Large", 502: "Bad Gateway"}


@dataclass(frozen=True)
class FrontLimits:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 5.0
    upstream_timeout: float = 300.0
    max_header_bytes: int = 64 * 1024
    max_body_bytes: int = 256 * 1024 * 1024


def _answer(status: int, message: str) -> bytes:
    body = ('{"status": {"code": -1, "info": "%s", "reason": "%s", "status": 1}}'
            % (message.replace('"', "'"), _REASONS.get(status, "Error").upper().replace(" ", "_"))).encode()
    return (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


def _headers(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return lines[0], headers


class Front:
    """Listen on ``host:port``; pass each complete request to the gunicorn listening on ``upstream`` (a Unix socket)."""

    def __init__(self, host: str, port: int, upstream: str, limits: FrontLimits | None = None) -> None:
        self.host, self.port, self.upstream = host, port, upstream
        self.limits = limits or FrontLimits()
        self.loop: asyncio.AbstractEventLoop | None = None
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
        server = self.loop.run_until_complete(asyncio.start_server(
            self.handle, self.host, self.port, limit=self.limits.max_header_bytes, backlog=1024))
        log.info("front on %s:%s, requests passed to %s when whole", self.host, self.port, self.upstream)
        self.ready.set()
        try:
            self.loop.run_forever()
        finally:
            server.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        limits = self.limits
        first = True
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"),
                                                  limits.header_timeout if first else limits.idle_timeout)
                except TimeoutError:
                    if reader._buffer:  # noqa: SLF001 - a request had begun: say why it is closed
                        writer.write(_answer(408, f"the request head did not arrive within "
                                                  f"{limits.header_timeout:g} s"))
                    return
                except asyncio.LimitOverrunError:
                    writer.write(_answer(431, f"the request head is longer than {limits.max_header_bytes} bytes"))
                    return
                except asyncio.IncompleteReadError:
                    return  # the client went away
                first = False
                request_line, headers = _headers(head)
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    writer.write(_answer(411, "send the body with a Content-Length, not chunked"))
                    return
                try:
                    length = int(headers.get("content-length") or 0)
                except ValueError:
                    writer.write(_answer(400, "Content-Length is not a number"))
                    return
                if length < 0 or length > limits.max_body_bytes:
                    writer.write(_answer(413, f"the body may be at most {limits.max_body_bytes} bytes"))
                    return
                try:
                    body = await asyncio.wait_for(reader.readexactly(length), limits.body_timeout)
                except (TimeoutError, asyncio.IncompleteReadError):
                    writer.write(_answer(408, f"the request body did not arrive within {limits.body_timeout:g} s"))
                    return
                keep_alive = (request_line.endswith("HTTP/1.1") and headers.get("connection", "").lower() != "close")
                response, has_length = await self._pass_on(head, body)
                if not keep_alive or not has_length:
                    writer.write(response)
                    return
                writer.write(response)
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            try:
                await asyncio.wait_for(writer.drain(), 5)
            except (ConnectionError, OSError, TimeoutError):
                pass
            writer.close()

    async def _pass_on(self, head: bytes, body: bytes) -> tuple[bytes, bool]:
        """gunicorn's whole answer to one request (sent with ``Connection: close``) and whether it has a length."""
        lines = [line for line in head[:-4].split(b"\r\n") if not line.lower().startswith(b"connection:")]
        request = b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body
        try:
            reader, writer = await asyncio.open_unix_connection(self.upstream)
        except OSError as err:
            return _answer(502, f"the model server is not answering: {err}"), False
        try:
            writer.write(request)
            await writer.drain()
            response = await asyncio.wait_for(reader.read(), self.limits.upstream_timeout)
        except (TimeoutError, ConnectionError, OSError) as err:
            return _answer(502, f"the model server did not answer: {type(err).__name__}"), False
        finally:
            writer.close()
        head_end = response.find(b"\r\n\r\n")
        if head_end < 0:
            return _answer(502, "the model server's answer was cut short"), False
        status_line, headers = _headers(response[: head_end + 4])
        has_length = "content-length" in headers
        kept = [line for line in response[:head_end].split(b"\r\n") if not line.lower().startswith(b"connection:")]
        connection = b"Connection: keep-alive" if has_length else b"Connection: close"
        return b"\r\n".join([*kept, connection]) + response[head_end:], has_length
