"""PredictionLogTrigger: fires on new traffic or at its deadline, and never blocks the event loop."""

from __future__ import annotations

import asyncio
import time

from airflow_mlops.triggers.drift import PredictionLogTrigger, log_size


async def first_event(trigger, during=None):
    async def collect():
        async for event in trigger.run():
            return event.payload

    task = asyncio.create_task(collect())
    if during:
        await during()
    return await asyncio.wait_for(task, timeout=10)


def test_serializes_to_primitives(tmp_path):
    trigger = PredictionLogTrigger(log_dir=str(tmp_path), since_bytes=10, poll_interval=1.5, deadline=123.0)
    path, kwargs = trigger.serialize()
    assert path == "airflow_mlops.triggers.drift.PredictionLogTrigger"
    assert PredictionLogTrigger(**kwargs).serialize() == (path, kwargs)


def test_new_traffic_fires_while_the_loop_keeps_running(tmp_path):
    (tmp_path / "2026-11-27.jsonl").write_text('{"a": 1}\n')
    trigger = PredictionLogTrigger(log_dir=str(tmp_path), since_bytes=log_size(str(tmp_path)), poll_interval=0.05,
                                   deadline=time.time() + 60)
    ticks = []

    async def traffic_later():
        for _ in range(5):  # the event loop is free while the trigger waits
            ticks.append(time.monotonic())
            await asyncio.sleep(0.02)
        (tmp_path / "server").mkdir()
        (tmp_path / "server" / "part.jsonl").write_text('{"b": 2}\n')  # object-store layout counts too

    payload = asyncio.run(first_event(trigger, traffic_later))
    assert payload["status"] == "new_traffic" and payload["log_bytes"] == 18 and len(ticks) == 5


def test_deadline_gives_timeout(tmp_path):
    trigger = PredictionLogTrigger(log_dir=str(tmp_path / "missing"), since_bytes=0, poll_interval=0.05,
                                   deadline=time.time() + 0.2)
    assert asyncio.run(first_event(trigger))["status"] == "timeout"
