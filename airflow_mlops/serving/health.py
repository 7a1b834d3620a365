"""Serving health from the prediction log (a time window) and the server's ``/metrics`` (standard library only).

The prediction log has one line per request: answered requests with their latency (``ms``),
failed ones with their HTTP ``status`` and ``error``. ``/metrics`` (Prometheus text, written
by seldon-core's metrics) has the server's totals since it started: ``mlops_requests_total``,
``mlops_request_errors_total`` by status and the ``mlops_prediction_ms`` latency histogram
(seconds, despite the name: seldon-core divides TIMER values by 1000).
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from airflow_mlops.serving.prediction_log import log_entries


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def window_health(log_dir: str | Path, minutes: float) -> dict[str, Any]:
    """Requests, failures by status, error rate and latency (p50/p99 ms) of the last ``minutes``."""
    since = datetime.now(timezone.utc) - timedelta(minutes=minutes)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    requests = 0
    for entry in log_entries(log_dir):
        try:
            if entry is None or entry["_at"] < since or entry.get("kind") == "feedback":
                continue
        except TypeError:  # a timestamp without a timezone: not one the server wrote
            continue
        requests += 1
        if "error" in entry:
            status = str(entry.get("status", 500))
            errors[status] = errors.get(status, 0) + 1
        elif isinstance(entry.get("ms"), (int, float)):
            latencies.append(float(entry["ms"]))
    failed = sum(errors.values())
    return {"source": "prediction_log", "minutes": minutes, "requests": requests, "errors": errors,
            "error_rate": failed / requests if requests else None,
            "p50_ms": _percentile(latencies, 50), "p99_ms": _percentile(latencies, 99)}


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)")


def parse_metrics(text: str) -> dict[str, Any]:
    """Totals and a p99 estimate (upper bucket bound, ms) from the server's Prometheus text."""
    requests, count = 0.0, 0.0
    errors: dict[str, int] = {}
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match or line.startswith("#"):
            continue
        name, labels, value = match["name"], match["labels"] or "", float(match["value"])
        if name == "mlops_requests_total":
            requests += value
        elif name == "mlops_request_errors_total":
            status = re.search(r'status="([^"]*)"', labels)
            key = status.group(1) if status else "unknown"
            errors[key] = errors.get(key, 0) + int(value)
        elif name == "mlops_prediction_ms_bucket":
            bound = re.search(r'le="([^"]*)"', labels)
            if bound:
                buckets[float(bound.group(1))] = buckets.get(float(bound.group(1)), 0.0) + value
        elif name == "mlops_prediction_ms_count":
            count += value
    p99: float | None = None
    if count:
        for upper in sorted(buckets):
            if buckets[upper] >= 0.99 * count:
                p99 = upper * 1000
                break
    total = requests + sum(errors.values())  # mlops_requests counts answered requests only
    return {"source": "metrics", "requests": int(total), "errors": errors,
            "error_rate": sum(errors.values()) / total if total else None, "p99_ms": p99}


def breaches(figures: dict[str, Any], max_error_rate: float | None, max_p99_ms: float | None) -> list[str]:
    """What exceeds its threshold, in words (empty: healthy)."""
    found = []
    rate, p99 = figures.get("error_rate"), figures.get("p99_ms")
    if max_error_rate is not None and rate is not None and rate > max_error_rate:
        found.append(f"error rate {rate:.1%} > {max_error_rate:.1%} ({sum(figures['errors'].values())} of "
                     f"{figures['requests']} requests failed: {figures['errors']}; {figures['source']})")
    if max_p99_ms is not None and p99 is not None and p99 > max_p99_ms:
        found.append(f"p99 latency {p99:.1f} ms > {max_p99_ms:g} ms ({figures['source']})")
    return found
