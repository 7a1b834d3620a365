"""Read a window of the prediction log written by the model server (standard library only)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any


def read_window(log_dir: str | Path, *, last_n: int | None = None, minutes: float | None = None,
                model_version: int | None = None) -> dict[str, Any]:
    """The last ``last_n`` requests' instances, or those of the last ``minutes``, oldest first.

    Reads ``<dir>/*.jsonl`` and ``<dir>/*/*.jsonl`` (the local and the object-store layouts).
    Returns ``{"records", "requests", "first", "last", "skipped_lines"}``; unreadable lines are
    counted, never fatal. ``model_version`` keeps only requests that version answered.
    """
    root = Path(log_dir)
    files = sorted([*root.glob("*.jsonl"), *root.glob("*/*.jsonl")]) if root.is_dir() else []
    entries, skipped = [], 0
    for path in files:
        for line in path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
                entry["_at"] = datetime.fromisoformat(entry["ts"])
            except (ValueError, KeyError, TypeError):
                skipped += 1
                continue
            if "error" in entry or (model_version is not None and entry.get("model_version") != model_version):
                continue  # failed requests (the health check reads those) and other versions' traffic
            entries.append(entry)
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
