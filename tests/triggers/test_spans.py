"""NewSpanTrigger: one event per new span, once it holds data and stopped changing; a watermark that survives."""

from __future__ import annotations

import asyncio

import fsspec
import pytest

from airflow_mlops.triggers.spans import WATERMARK, NewSpanTrigger, span_listing


class StateStore:
    """The triggerer's per-Asset state store, as the trigger sees it (aget/aset)."""

    def __init__(self, **values):
        self.values = dict(values)

    async def aget(self, key, default=None):
        return self.values.get(key, default)

    async def aset(self, key, value):
        self.values[key] = value


def land(root, span, text="a,b\n1,2\n", name="data.csv"):
    folder = root / f"span-{span}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


async def events(trigger, count, after=None, timeout=5.0):
    """The first ``count`` events; ``after(n)`` runs once the n-th look at the directory is under way."""
    found = []

    async def collect():
        async for event in trigger.run():
            found.append(event.payload)
            if len(found) == count:
                return

    task = asyncio.ensure_future(collect())
    if after:
        await after()
    try:
        await asyncio.wait_for(task, timeout)
    except TimeoutError:
        task.cancel()
    return found


def test_spans_already_there_count_as_seen_and_new_ones_are_announced_oldest_first(tmp_path):
    land(tmp_path, 1)
    store = StateStore()
    trigger = NewSpanTrigger(data_root=str(tmp_path), poll_interval=0.05)
    trigger.asset_state_store = store

    async def later():
        await asyncio.sleep(0.2)
        land(tmp_path, 3)
        land(tmp_path, 2)

    found = asyncio.run(events(trigger, 3, later, timeout=0.8))  # a third never comes
    assert [e["span"] for e in found] == [2, 3] and found[0]["data_root"] == str(tmp_path)
    # kept once the triggerer has queued the event and asks for the next (a crash before: announced again)
    assert store.values[WATERMARK] == 3


def test_a_restarted_trigger_announces_nothing_twice_and_what_landed_meanwhile(tmp_path):
    for span in (1, 2, 3):
        land(tmp_path, span)
    trigger = NewSpanTrigger(data_root=str(tmp_path), poll_interval=0.05)
    trigger.asset_state_store = StateStore(**{WATERMARK: 2})  # the triggerer was down when span 3 landed
    assert [e["span"] for e in asyncio.run(events(trigger, 2, timeout=0.6))] == [3]


def test_a_span_being_copied_waits_until_it_holds_data_and_stops_changing(tmp_path):
    trigger = NewSpanTrigger(data_root=str(tmp_path / "landing"), poll_interval=0.1)  # not there yet: no error

    async def copy():
        await asyncio.sleep(0.15)
        (tmp_path / "landing" / "span-1").mkdir(parents=True)
        (tmp_path / "landing" / "span-1" / "_COPYING").write_text("x")  # a marker, not data
        await asyncio.sleep(0.3)
        (tmp_path / "landing" / "span-1" / "part-0.csv").write_text("a,b\n")
        await asyncio.sleep(0.05)
        (tmp_path / "landing" / "span-1" / "part-0.csv").write_text("a,b\n1,2\n3,4\n")

    found = asyncio.run(events(trigger, 1, copy))
    assert found == [{"span": 1, "data_root": str(tmp_path / "landing"), "files": 1, "bytes": 12}]


def test_announce_existing_and_an_fsspec_location():
    fs = fsspec.filesystem("memory")
    fs.pipe("/landing/span-4/a.csv", b"a\n1\n")
    fs.pipe("/landing/span-x/a.csv", b"a\n1\n")
    fs.pipe("/landing/notes.txt", b"x")
    assert list(span_listing("memory:///landing")) == [4]
    trigger = NewSpanTrigger(data_root="memory:///landing", poll_interval=0.05, announce_existing=True)
    assert [e["span"] for e in asyncio.run(events(trigger, 1))] == [4]


@pytest.mark.parametrize("kwargs", [{"data_root": "/d"}, {"data_root": "s3://b/x", "poll_interval": 5.0,
                                                          "announce_existing": True}])
def test_serialize_round_trip(kwargs):
    path, serialized = NewSpanTrigger(**kwargs).serialize()
    assert path == "airflow_mlops.triggers.spans.NewSpanTrigger"
    assert NewSpanTrigger(**serialized).serialize() == (path, serialized)
