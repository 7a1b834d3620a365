"""GroundTruthTrigger: fires on new outcome files or log lines; serialises for the triggerer."""

from __future__ import annotations

import asyncio

from airflow_mlops.triggers.quality import GroundTruthTrigger, truth_size


def test_serialize_round_trip():
    trigger = GroundTruthTrigger(log_dir="/l", feedback_root="s3://b/truth", since_bytes=5, poll_interval=2,
                                 deadline=9.0)
    path, kwargs = trigger.serialize()
    assert path == "airflow_mlops.triggers.quality.GroundTruthTrigger"
    assert GroundTruthTrigger(**kwargs).serialize() == (path, kwargs)


def test_fires_when_an_outcome_file_lands(tmp_path):
    log, truth = tmp_path / "log", tmp_path / "truth"
    log.mkdir()
    (log / "d.jsonl").write_text('{"ts": "x"}\n')
    size = truth_size(str(log), str(truth))
    assert size == len('{"ts": "x"}\n')

    async def run():
        trigger = GroundTruthTrigger(log_dir=str(log), feedback_root=str(truth), since_bytes=size, poll_interval=0.05)
        events = trigger.run()
        task = asyncio.ensure_future(events.__anext__())
        await asyncio.sleep(0.2)
        assert not task.done()
        truth.mkdir()
        (truth / "labels.csv").write_text("request_id,label\nr,1\n")
        (truth / "notes.txt").write_text("not counted")
        return await asyncio.wait_for(task, 5)

    event = asyncio.run(run())
    assert event.payload["status"] == "new_truth" and event.payload["bytes"] == size + len("request_id,label\nr,1\n")


def test_times_out_at_the_deadline(tmp_path):
    async def run():
        trigger = GroundTruthTrigger(log_dir="", feedback_root=str(tmp_path), since_bytes=0, poll_interval=0.01,
                                     deadline=1.0)
        return await trigger.run().__anext__()

    assert asyncio.run(run()).payload["status"] == "timeout"
