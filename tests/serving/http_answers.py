"""What a model server answered on one connection, read by llhttp (the tests' raw-socket HTTP cases)."""

from __future__ import annotations

import httptools


def responses(data: bytes) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """The final responses in ``data`` as ``(status, headers by lower-case name, body)``; 1xx are left out.
    Raises :class:`httptools.HttpParserError` when ``data`` is not HTTP."""
    found: list[list] = []

    class Collect:
        def on_message_begin(self):
            found.append([0, {}, b""])

        def on_header(self, name, value):
            found[-1][1][name.lower()] = value

        def on_headers_complete(self):
            found[-1][0] = parser.get_status_code()

        def on_body(self, body):
            found[-1][2] += body

    parser = httptools.HttpResponseParser(Collect())
    parser.feed_data(data)
    return [(status, headers, body) for status, headers, body in found if status >= 200]
