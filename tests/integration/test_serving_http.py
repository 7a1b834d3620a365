"""The real model server (seldon-core's app under gunicorn, behind the llhttp front) against a hostile HTTP client.

Raw sockets, so that what reaches the server is exactly what is written here: request smuggling
(conflicting lengths, ``Transfer-Encoding`` beside ``Content-Length``), bare-LF and obs-fold
heads, a request target too long for gunicorn, ``Expect: 100-continue``, chunked bodies, a 1 MB
value in an error message, feedback that would poison the quality check, and a bounded fuzz of
the HTTP layer (60 s). One server for the module, deployed from the model trained once per run.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httptools
import pytest

from airflow_mlops.serving.backends import DeployRequest

from ..serving.http_answers import responses
from .conftest import TAXI_MODEL, copy_of_trained_taxi_model
from .test_serving import prediction_log_lines, records

pytestmark = pytest.mark.integration
NAME = "it-http"
PREDICT = b"/api/v1.0/predictions"
FEEDBACK = b"/api/v1.0/feedback"
#: The front's defaults on the real server: a head within 10 s, a body within 30 s.
HEAD_SECONDS, BODY_SECONDS = 10, 30


@pytest.fixture(scope="module")
def state(tmp_path_factory, airflow_home, taxi_csv, trained_taxi_model):
    root = tmp_path_factory.mktemp("http")
    st = copy_of_trained_taxi_model(trained_taxi_model, root, airflow_home, taxi_csv)
    dep = st["hook"].deployments.deploy(DeployRequest(NAME, str(st["state_dir"] / "models" / TAXI_MODEL), 1))
    st["port"] = int(dep.url.rsplit(":", 1)[1])
    yield st
    st["hook"].deployments.undeploy(NAME)


def exchange(state, data: bytes, *, close_after: bool = False, wait: float = HEAD_SECONDS + 5) -> bytes:
    """Send ``data`` on a new connection; everything answered until the server closes it (or ``wait`` passes)."""
    with socket.create_connection(("127.0.0.1", state["port"]), timeout=wait) as sock:
        sock.sendall(data)
        if close_after:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            answer += chunk
        return answer


def predict_body(state, count: int = 2) -> bytes:
    return json.dumps({"jsonData": {"instances": records(state, 0, count)}}).encode()


def post(path: bytes, body: bytes, *headers: bytes) -> bytes:
    lines = [b"POST " + path + b" HTTP/1.1", b"Host: model", b"Content-Type: application/json", *headers]
    if not any(h.lower().startswith((b"content-length", b"transfer-encoding")) for h in headers):
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def still_serving(state) -> None:
    got = responses(exchange(state, post(PREDICT, predict_body(state, 1), b"Connection: close")))
    assert [status for status, _, _ in got] == [200], got


def test_a_request_hidden_in_a_body_by_two_lengths_is_never_answered(state):
    """The issue's case: Content-Length 49 then 0, the 49 bytes being a second request. A front that takes the
    last length answered twice (the hidden request ran); behind a proxy that takes the first, that is smuggling."""
    hidden = b"GET /health/status HTTP/1.1\r\nHost: model\r\n\r\n"
    for lengths in ((len(hidden), 0), (0, len(hidden))):
        data = post(b"/health/ping", hidden, *(b"Content-Length: %d" % n for n in lengths))
        got = responses(exchange(state, data))
        assert [status for status, _, _ in got] == [400], got
        assert b"Duplicate Content-Length" in got[0][2]
    still_serving(state)


@pytest.mark.parametrize("data, message", [
    (post(PREDICT, b"0\r\n\r\n", b"Content-Length: 5", b"Transfer-Encoding: chunked"), b"can't be present with"),
    (post(PREDICT, b"{}", b"Content-Length: -1"), b"Invalid character in Content-Length"),
    (post(PREDICT, b"{}", b"Content-Length: 2", b"X-Folded: a", b" b"), b"Unexpected whitespace"),
    (post(PREDICT, b"{}").replace(b"\r\n", b"\n"), b"Expected CRLF after version"),
])
def test_smuggling_shapes_are_a_400_at_once(state, data, message):
    started = time.monotonic()
    got = responses(exchange(state, data))  # bare LF used to hang 10 s, then a 408
    assert time.monotonic() - started < 5
    assert [status for status, _, _ in got] == [400] and message in got[0][2], got
    assert got[0][1][b"connection"] == b"close"


def test_a_long_request_target_is_a_4xx_never_a_502(state):
    """gunicorn takes request lines up to 4,094 bytes by default; the front used to pass longer ones on and
    answer its reset as a 502. Now gunicorn takes what the front takes, and the front says 414 beyond."""
    long_path = b"/" + b"p" * 5000
    got = responses(exchange(state, b"GET " + long_path + b" HTTP/1.1\r\nHost: model\r\nConnection: close\r\n\r\n"))
    assert got[0][0] == 404 and len(got[0][2]) < 1000, got  # the path named, cut
    got = responses(exchange(state, b"GET /" + b"p" * 9000 + b" HTTP/1.1\r\nHost: model\r\n\r\n"))
    assert got[0][0] == 414 and b"longer than 8000 bytes" in got[0][2], got


def test_expect_100_continue_and_a_chunked_body_are_served(state):
    body = predict_body(state)
    with socket.create_connection(("127.0.0.1", state["port"]), timeout=30) as sock:
        sock.sendall(post(PREDICT, b"", b"Content-Length: %d" % len(body), b"Expect: 100-continue"))
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        answer = b""
        while not responses(answer):
            answer += sock.recv(65536)
    assert responses(answer)[0][0] == 200
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:])) + b"0\r\n\r\n"
    got = responses(exchange(state, post(PREDICT, chunked, b"Transfer-Encoding: chunked", b"Connection: close")))
    assert got[0][0] == 200 and len(json.loads(got[0][2])["data"]["ndarray"]) == 2


def test_a_megabyte_value_is_not_echoed_back(state):
    record = {**records(state, 0, 1)[0], "fare": "x" * 1_000_000}
    got = responses(exchange(state, post(PREDICT, json.dumps({"jsonData": record}).encode(), b"Connection: close")))
    assert got[0][0] == 400 and len(got[0][2]) < 1000, (got[0][0], len(got[0][2]))
    assert b"(1000000 characters)" in got[0][2]


def predict_id(state, count: int) -> str:
    got = responses(exchange(state, post(PREDICT, predict_body(state, count), b"Connection: close")))
    assert got[0][0] == 200
    return json.loads(got[0][2])["meta"]["puid"]


def feedback(rid: str, labels_json: bytes) -> bytes:
    return post(FEEDBACK, b'{"request": {"meta": {"puid": "%s"}}, "truth": {"data": {"ndarray": %s}}}'
                % (rid.encode(), labels_json), b"Connection: close")


def test_feedback_that_would_poison_the_quality_check_is_refused_and_never_logged(state):
    two = predict_id(state, 2)
    cases = [(b"[NaN, 1]", 400, b"row 0: 'NaN' is not a finite number"),
             (b"[1e309, 1]", 400, b"row 0: 'Infinity' is not a finite number"),
             (b"[1, 0, 1]", 400, b"had 2 row(s): send 2 label(s), one per row (got 3)")]
    for labels, status, message in cases:
        got = responses(exchange(state, feedback(two, labels)))
        assert got[0][0] == status and message in got[0][2], got
    started = time.monotonic()
    many = feedback(predict_id(state, 1), b"[" + b",".join([b"1"] * 1_000_000) + b"]")
    got = responses(exchange(state, many))
    assert got[0][0] == 413 and b"a feedback body may be at most" in got[0][2], got
    assert time.monotonic() - started < 5  # refused before seldon-core parses it (it took 11 s)
    got = responses(exchange(state, feedback(two, b"[1, 0]")))
    assert got[0][0] == 200, got
    logged = [entry for entry in prediction_log_lines(state, NAME) if entry.get("kind") == "feedback"]
    assert [(entry["request_id"], entry["labels"]) for entry in logged] == [(two, [1, 0])]


# ------------------------------------------------------------------------------------------------ the fuzz

def fuzz_case(rng: random.Random, body: bytes) -> tuple[bytes, bool]:
    """One request (``Connection: close`` kept intact right after its request line, so a second response is
    always wrong) with its head's other lines and its body mutated; and whether to half-close after sending."""
    method = rng.choice([b"POST"] * 6 + [b"GET", b"HEAD", b"PUT", b"OPTIONS", b"DELETE", b"post", b"P\x00ST"])
    target = rng.choice([PREDICT] * 6 + [FEEDBACK, b"/health/ping", b"/metrics", b"*", b"http://x/" + PREDICT[1:],
                                         b"/" + b"t" * rng.choice([4090, 4100, 7990, 8100]), b"/%00", b"/\xff"])
    version = rng.choice([b"HTTP/1.1"] * 8 + [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1x", b"", b"HTTP/0.9"])
    length = len(body)
    pool = [
        b"Host: model", b"Host: model", b"Host: other", b"Content-Type: application/json",
        b"Content-Length: %d" % length, b"Content-Length: %d" % length, b"Content-Length: %d" % max(0, length - 7),
        b"Content-Length: %d" % (length + 3), b"Content-Length: -1", b"Content-Length: +%d" % length,
        b"Content-Length: 0x10", b"Content-Length:  %d " % length, b"Content-Length: %d, %d" % (length, length),
        b"Content-Length: 99999999999999999999999", b"Content-Length: %d" % (200 * 1024 * 1024),
        b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked, gzip", b"Transfer-Encoding: identity",
        b"Transfer-Encoding:  chunked", b"Transfer-Encoding: xchunked", b"Transfer-Encoding\x0b: chunked",
        b" folded continuation", b"\tfolded", b"Content-Length : 5", b"X Y: z", b": no name", b"NoColon",
        b"X-Nul: a\x00b", b"X-CR: a\rb", b"X-High: \xff\xfe", b"X-Long: " + b"L" * rng.choice([9000, 70000]),
        b"Expect: 100-continue", b"Expect: 200-ok", b"Connection: keep-alive", b"Upgrade: h2c",
        b"Connection: Upgrade", b"Accept: */*", b"X-Empty:",
    ]
    headers = rng.sample(pool, rng.randint(0, 6))
    if rng.random() < 0.1:
        headers += [b"X-Many-%d: 1" % i for i in range(rng.choice([50, 150]))]
    payload = body
    if any(h.lower().startswith(b"transfer-encoding") for h in headers) and rng.random() < 0.7:
        cut = rng.randrange(len(body) + 1)
        payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:cut], body[cut:]) if p) + b"0\r\n\r\n"
    roll = rng.random()
    if roll < 0.15:
        payload = payload[: rng.randrange(len(payload) + 1)]
    elif roll < 0.3:
        payload += rng.randbytes(rng.randint(1, 40))
    elif roll < 0.4:
        payload = bytes(b ^ 0xFF if rng.random() < 0.01 else b for b in payload)
    start = method + b" " + target + (b" " + version if version else b"")
    head = b"\r\n".join([start, b"Connection: close", *headers]) + b"\r\n\r\n"
    tail_start = len(start) + len(b"\r\nConnection: close")
    if rng.random() < 0.15:  # other line endings, after the intact first two lines
        tail = head[tail_start:].replace(b"\r\n", rng.choice([b"\n", b"\r", b"\r\r\n", b"\n\r"]), rng.randint(1, 3))
        head = head[:tail_start] + tail
    if rng.random() < 0.05:  # flip a byte of the head past the first two lines
        at = rng.randrange(tail_start, len(head))
        head = head[:at] + bytes([rng.randrange(256)]) + head[at + 1:]
    return head + payload, rng.random() < 0.9


def run_case(state, data: bytes, close_after: bool) -> dict:
    started = time.monotonic()
    try:
        answer = exchange(state, data, close_after=close_after, wait=HEAD_SECONDS + BODY_SECONDS + 10)
    except OSError as err:  # a reset can destroy an answer before it is read
        answer, problem = b"", f"the connection failed: {type(err).__name__}"
    else:
        problem = None
    elapsed = time.monotonic() - started
    try:
        got = responses(answer)
    except httptools.HttpParserError as err:
        got, problem = [], f"the answer is not HTTP: {err}: {answer[:200]!r}"
    return {"statuses": [status for status, _, _ in got], "seconds": elapsed, "problem": problem,
            "answer": answer[:300], "data": data[:300]}


#: The fuzz's clients, and the least time each spends on a case (at most ~80 cases a second in all).
CLIENTS, PACE = 8, 0.1


def test_fuzzed_http_heads_never_get_a_5xx_a_hang_or_a_second_response(state):
    """60 s of mutated requests from 8 clients at once (up to ~4,800 cases): every answer is valid HTTP, none is 5xx, none comes
    later than the front's timeouts allow, a connection never answers twice (each case is one request with
    ``Connection: close``), and the server still serves afterwards."""
    rng = random.Random(20261207)
    body = predict_body(state)
    deadline = time.monotonic() + 60
    results: list[dict] = []
    lock = threading.Lock()

    def client(seed: int) -> None:
        own = random.Random(seed)
        while time.monotonic() < deadline:
            began = time.monotonic()
            data, close_after = fuzz_case(own, body)
            result = run_case(state, data, close_after)
            with lock:
                results.append(result)
            time.sleep(max(0.0, PACE - (time.monotonic() - began)))  # the suite's other tests share the cores

    with ThreadPoolExecutor(CLIENTS) as pool:
        for future in [pool.submit(client, rng.randrange(1 << 30)) for _ in range(CLIENTS)]:
            future.result()
    failures = [r for r in results if r["problem"] or len(r["statuses"]) > 1
                or any(s >= 500 for s in r["statuses"]) or r["seconds"] > HEAD_SECONDS + BODY_SECONDS + 5]
    statuses = sorted({s for r in results for s in r["statuses"]})
    kinds = Counter((tuple(r["statuses"]), r["problem"] or r["answer"].rsplit(b'"info": ', 1)[-1][:60])
                    for r in failures)
    assert not failures, f"{len(failures)} of {len(results)} cases failed: {kinds.most_common(8)}, e.g. {failures[:2]}"
    assert len(results) >= 1000 and {200, 400} <= set(statuses), (len(results), statuses)
    still_serving(state)
