"""Read a window of the prediction log written by the model server (standard library only)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any


def log_files(log_dir: str | Path) -> list[Path]:
    """The log's ``*.jsonl`` files: ``<dir>/*.jsonl`` (local) and ``<dir>/*/*.jsonl`` (object-store layout)."""
    root = Path(log_dir)
    return sorted([*root.glob("*.jsonl"), *root.glob("*/*.jsonl")]) if root.is_dir() else []


def log_entries(log_dir: str | Path) -> Iterator[dict[str, Any] | None]:
    """Every line of the log as a dict with its ``ts`` parsed into ``_at``; None for an unreadable line."""
    for path in log_files(log_dir):
        for line in path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
                entry["_at"] = datetime.fromisoformat(entry["ts"])
            except (ValueError, KeyError, TypeError):
                yield None
                continue
            yield entry


def read_window(log_dir: str | Path, *, last_n: int | None = None, minutes: float | None = None,
                model_version: int | None = None) -> dict[str, Any]:
    """The last ``last_n`` requests' instances, or those of the last ``minutes``, oldest first.

    Reads ``<dir>/*.jsonl`` and ``<dir>/*/*.jsonl`` (the local and the object-store layouts).
    Returns ``{"records", "requests", "first", "last", "skipped_lines"}``; unreadable lines are
    counted, never fatal. ``model_version`` keeps only requests that version answered.
    """
    entries, skipped = [], 0
    for entry in log_entries(log_dir):
        if entry is None:
            skipped += 1
        elif "error" not in entry and entry.get("kind") != "feedback" \
                and model_version in (None, entry.get("model_version")):
            entries.append(entry)  # not failed requests (the health check reads those), nor other versions'
    entries.sort(key=lambda e: e["_at"])
    if minutes is not None:
        since = datetime.now(timezone.utc) - timedelta(minutes=minutes)
        entries = [e for e in entries if e["_at"] >= since]
    records: list[dict[str, Any]] = []
    first = None
    for entry in reversed(entries):  # newest first, so last_n counts the most recent instances
        first = entry["ts"]
        for instance in reversed(entry.get("instances") or []):
            records.append(instance)
        if last_n is not None and len(records) >= last_n:
            break
    records = records[:last_n] if last_n is not None else records
    records.reverse()
    return {"records": records, "requests": len(entries), "skipped_lines": skipped,
            "first": first if records else None, "last": entries[-1]["ts"] if entries else None}
