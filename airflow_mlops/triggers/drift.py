"""Wait, without holding a worker slot, for new traffic in a deployment's prediction log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_mlops.serving.prediction_log import log_files


def log_size(log_dir: str) -> int:
    """Total bytes of the prediction log's ``*.jsonl`` files (local and object-store layouts)."""
    total = 0
    for path in log_files(log_dir):
        try:
            total += path.stat().st_size
        except OSError:  # rotated away between the listing and the stat
            continue
    return total


class PredictionLogTrigger(BaseTrigger):
    """Fire when the prediction log in ``log_dir`` has grown past ``since_bytes``, or at ``deadline``.

    Only file sizes are read (in a thread, off the event loop); the drift check itself runs
    in the drift runtime when the sensor resumes, never in the triggerer. Yields one event:
    ``status`` is ``new_traffic`` (with ``log_bytes``) or ``timeout``.

    :param log_dir: the deployment's prediction log directory.
    :param since_bytes: the log's size at the last check.
    :param poll_interval: seconds between looks at the log (and so the least time between checks).
    :param deadline: a Unix time after which the wait ends with ``timeout``.
    """

    def __init__(self, log_dir: str, since_bytes: int, poll_interval: float = 60.0, deadline: float = 0.0) -> None:
        super().__init__()
        self.log_dir = log_dir
        self.since_bytes = since_bytes
        self.poll_interval = poll_interval
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("airflow_mlops.triggers.drift.PredictionLogTrigger",
                {"log_dir": self.log_dir, "since_bytes": self.since_bytes, "poll_interval": self.poll_interval,
                 "deadline": self.deadline})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            await asyncio.sleep(self.poll_interval)
            size = await asyncio.to_thread(log_size, self.log_dir)
            if size > self.since_bytes:
                yield TriggerEvent({"status": "new_traffic", "log_bytes": size, "deadline": self.deadline})
                return
            if self.deadline and time.time() >= self.deadline:
                yield TriggerEvent({"status": "timeout", "log_bytes": size, "deadline": self.deadline})
                return
