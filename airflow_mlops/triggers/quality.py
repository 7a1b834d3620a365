"""Wait, without holding a worker slot, for new ground truth (or new traffic) of a deployment."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_mlops.triggers.drift import log_size


def truth_size(log_dir: str, feedback_root: str) -> int:
    """Bytes of the prediction log (predictions and feedback lines) and of the outcome files."""
    from airflow_mlops.serving.quality import outcome_files

    total = log_size(log_dir) if log_dir else 0
    if feedback_root:
        for path, fs in outcome_files(feedback_root):
            try:
                total += int(fs.size(path) or 0)
            except OSError:  # moved away between the listing and the size
                continue
    return total


class GroundTruthTrigger(BaseTrigger):
    """Fire when the prediction log or the outcome files under ``feedback_root`` have grown past
    ``since_bytes`` (new predictions, feedback or labels), or at ``deadline``.

    Only sizes are read (in a thread); the quality check runs in a worker when the sensor resumes.
    Yields one event: ``status`` is ``new_truth`` (with ``bytes``) or ``timeout``.

    :param log_dir: the deployment's prediction log directory.
    :param feedback_root: where outcome files land (a path or an fsspec URL).
    :param since_bytes: the total size at the last check.
    :param poll_interval: seconds between looks (and so the least time between checks).
    :param deadline: a Unix time after which the wait ends with ``timeout``.
    """

    def __init__(self, log_dir: str, feedback_root: str, since_bytes: int, poll_interval: float = 60.0,
                 deadline: float = 0.0) -> None:
        super().__init__()
        self.log_dir = log_dir
        self.feedback_root = feedback_root
        self.since_bytes = since_bytes
        self.poll_interval = poll_interval
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("airflow_mlops.triggers.quality.GroundTruthTrigger",
                {"log_dir": self.log_dir, "feedback_root": self.feedback_root, "since_bytes": self.since_bytes,
                 "poll_interval": self.poll_interval, "deadline": self.deadline})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            await asyncio.sleep(self.poll_interval)
            size = await asyncio.to_thread(truth_size, self.log_dir, self.feedback_root)
            if size > self.since_bytes:
                yield TriggerEvent({"status": "new_truth", "bytes": size, "deadline": self.deadline})
                return
            if self.deadline and time.time() >= self.deadline:
                yield TriggerEvent({"status": "timeout", "bytes": size, "deadline": self.deadline})
                return
