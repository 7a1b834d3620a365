"""Wait, without holding a worker slot, until a deployment serves a model version."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class SeldonDeploymentTrigger(BaseTrigger):
    """Poll a local model server's ``/health/status`` until it serves ``version`` (any version when None).

    Yields one event: ``status`` is ``success`` (with ``version``), ``failed`` (the version
    failed to load: ``message``) or ``timeout``.

    :param url: the server's base URL.
    :param version: the model version to wait for, or None.
    :param poll_interval: seconds between polls.
    :param timeout: seconds before giving up.
    """

    def __init__(self, url: str, version: int | None = None, poll_interval: float = 2.0,
                 timeout: float = 600.0) -> None:
        super().__init__()
        self.url = url
        self.version = version
        self.poll_interval = poll_interval
        self.timeout = timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("airflow_mlops.triggers.seldon.SeldonDeploymentTrigger",
                {"url": self.url, "version": self.version, "poll_interval": self.poll_interval,
                 "timeout": self.timeout})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_mlops.serving.local import server_status

        deadline = time.monotonic() + self.timeout
        while True:
            status = await asyncio.to_thread(server_status, self.url)  # a short HTTP call, off the event loop
            if status:
                if status.get("version") is not None and self.version in (None, status["version"]):
                    yield TriggerEvent({"status": "success", "version": status["version"], "url": self.url})
                    return
                error = status.get("error") or {}
                if self.version is not None and error.get("version") == self.version:
                    yield TriggerEvent({"status": "failed", "version": self.version, "url": self.url,
                                        "message": error.get("message", "")})
                    return
            if time.monotonic() >= deadline:
                yield TriggerEvent({"status": "timeout", "version": self.version, "url": self.url,
                                    "message": f"no answer serving version {self.version} within {self.timeout:.0f} s"})
                return
            await asyncio.sleep(self.poll_interval)
