"""Event-driven ingest: an event when a new ``span-<N>/`` lands under a data directory (local or fsspec)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

SPAN_DIR = re.compile(r"^span-(\d+)$")
#: The asset state key holding the newest span announced (survives triggerer restarts).
WATERMARK = "last_announced_span"


def span_listing(data_root: str) -> dict[int, tuple[tuple[str, int], ...]]:
    """Each ``span-<N>`` under ``data_root`` with its data files (name, size), hidden files left out;
    ``{}`` when ``data_root`` does not exist (yet)."""
    import fsspec

    fs, _, paths = fsspec.get_fs_token_paths(data_root)
    base = paths[0].rstrip("/") if paths else ""
    if not fs.exists(base):
        return {}
    spans: dict[int, tuple[tuple[str, int], ...]] = {}
    for entry in fs.ls(base, detail=True):
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        match = SPAN_DIR.match(name)
        if not match or entry.get("type") != "directory":
            continue
        files = []
        for path, info in sorted(fs.find(entry["name"], detail=True).items()):
            if not path.rsplit("/", 1)[-1].startswith((".", "_")):
                files.append((path, int(info.get("size") or 0)))
        spans[int(match.group(1))] = tuple(files)
    return spans


class NewSpanTrigger(BaseEventTrigger):
    """Fire once per new ``span-<N>/`` under ``data_root``, when it holds data and has stopped changing.

    For an ``AssetWatcher``: the Asset it watches gets an event (extra: ``span``, ``data_root``) and
    the DAGs scheduled on that Asset run, with no DAG run polling for data. A span counts once its
    data files (not hidden, not ``_``-prefixed: a ``_SUCCESS`` marker or a ``_tmp`` upload is ignored)
    are non-empty and unchanged over two looks ``poll_interval`` apart, so a span still being copied
    is not announced half-written. The newest span announced is kept in the Asset's state store (it
    survives a triggerer restart: no span is announced twice, and one that landed meanwhile is
    announced when the triggerer is back). Spans are announced oldest first.

    :param data_root: the directory the spans land in (a path or any fsspec URL).
    :param poll_interval: seconds between two looks at ``data_root``.
    :param announce_existing: on the first start (nothing announced yet), also announce the spans
        already there; by default they count as seen and only later spans are announced.
    """

    def __init__(self, data_root: str, poll_interval: float = 60.0, announce_existing: bool = False) -> None:
        super().__init__()
        self.data_root = data_root
        self.poll_interval = poll_interval
        self.announce_existing = announce_existing
        self._watermark: int | None = None  # without a state store (tests, a deferral): this instance only

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("airflow_mlops.triggers.spans.NewSpanTrigger",
                {"data_root": self.data_root, "poll_interval": self.poll_interval,
                 "announce_existing": self.announce_existing})

    async def _get_watermark(self) -> int | None:
        if self.asset_state_store is not None:
            value = await self.asset_state_store.aget(WATERMARK)
            return int(value) if isinstance(value, (int, float, str)) and str(value).lstrip("-").isdigit() else None
        return self._watermark

    async def _set_watermark(self, span: int) -> None:
        self._watermark = span
        if self.asset_state_store is not None:
            await self.asset_state_store.aset(WATERMARK, span)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        watermark = await self._get_watermark()
        if watermark is None:
            existing = await asyncio.to_thread(span_listing, self.data_root)
            watermark = -1 if self.announce_existing or not existing else max(existing)
            await self._set_watermark(watermark)
            self.log.info("watching %s for spans after span %s", self.data_root, watermark)
        previous: dict[int, tuple[tuple[str, int], ...]] = {}
        while True:
            listing = await asyncio.to_thread(span_listing, self.data_root)
            for span in sorted(s for s in listing if s > watermark):
                files = listing[span]
                if not files or not any(size > 0 for _, size in files) or previous.get(span) != files:
                    break  # not there yet, or still changing: look again (and keep the order of spans)
                yield TriggerEvent({"span": span, "data_root": self.data_root,
                                    "files": len(files), "bytes": sum(size for _, size in files)})
                watermark = span
                await self._set_watermark(span)  # after the event is queued: a crash re-announces, never loses
            previous = listing
            await asyncio.sleep(self.poll_interval)
