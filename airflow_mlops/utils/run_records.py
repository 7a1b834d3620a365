"""What each DAG run of a pipeline did, one JSON file per run, for people to read (the MLOps pages).

Standard library only. Layout under ``{state_dir}/runs/<pipeline>/``::

    <dag_id>.<run_id>.json     # {"dag_id", "run_id", "updated_at", "<task_id>": {what that task recorded}}

Each task adds its own section (ExampleGen the span, the Trainer its module file and hash, the
Evaluator its metrics and verdict, the ExampleValidator the anomalies it found, the Pusher the
version); a retry replaces its task's section. The files are a view: ML Metadata and the model
registry stay the sources of truth, and a record that cannot be written never fails a task.

:class:`ReportDir` lists a directory of such JSON reports (these records, drift reports) newest
first, reading only the page asked for, so a page stays fast with 10,000 reports.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_mlops.runtimes.contract import directory_lock, write_json_atomic

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def safe_name(text: str) -> str:
    """``text`` as a file name (what is not a letter, digit, ``_``, ``.`` or ``-`` becomes ``_``)."""
    return _UNSAFE.sub("_", text)


@dataclass(frozen=True)
class ReportPage:
    """One page of a report directory, newest first: the reports (each with its ``_name`` and ``_at``, the
    file's modification time) and the total."""

    reports: list[dict[str, Any]]
    total: int
    offset: int
    limit: int


#: directory → (its modification time, its reports newest first): a listing is reused until a report is
#: added or removed (10,000 reports are 10,000 stats; a page asks for the listing more than once)
_LISTINGS: dict[Path, tuple[int, list[tuple[float, str]]]] = {}


class ReportDir:
    """The ``*.json`` reports of one directory, newest (by modification time) first."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def _entries(self) -> list[tuple[float, str]]:
        try:
            stamp = self.directory.stat().st_mtime_ns
        except OSError:
            return []
        cached = _LISTINGS.get(self.directory)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        entries = self._list()
        # kept only when listed a second after the last change: a directory's time is coarse (a few ms), and a
        # report added in the same tick as the listing would not change it
        if time.time_ns() - stamp > 1_000_000_000:
            _LISTINGS[self.directory] = (stamp, entries)
        return entries

    def _list(self) -> list[tuple[float, str]]:
        try:
            with os.scandir(self.directory) as found:
                entries = []
                for entry in found:
                    if entry.name.endswith(".json") and not entry.name.startswith("."):
                        try:
                            entries.append((entry.stat().st_mtime, entry.name))
                        except FileNotFoundError:  # removed while listing
                            continue
        except (FileNotFoundError, NotADirectoryError):
            return []
        entries.sort(reverse=True)
        return entries

    def count(self) -> int:
        return len(self._entries())

    def read(self, name: str) -> dict[str, Any] | None:
        """Report ``name`` (its file name with or without ``.json``); None when absent or unreadable."""
        stem = name[:-5] if name.endswith(".json") else name
        if not stem or safe_name(stem) != stem:
            return None
        try:
            data = json.loads((self.directory / f"{stem}.json").read_text())
        except (OSError, ValueError) as err:
            log.warning("report %s/%s.json cannot be read: %s", self.directory, stem, err)
            return None
        return {**data, "_name": stem} if isinstance(data, dict) else None

    def page(self, offset: int = 0, limit: int = 50) -> ReportPage:
        entries = self._entries()
        chosen = entries[max(0, offset):max(0, offset) + max(0, limit)]
        reports = [{**r, "_at": at} for at, name in chosen if (r := self.read(name)) is not None]
        return ReportPage(reports=reports, total=len(entries), offset=offset, limit=limit)


class RunRecords:
    """The run records of one pipeline (``{state_dir}/runs/<pipeline>``)."""

    def __init__(self, state_dir: str | os.PathLike[str], pipeline: str) -> None:
        self.pipeline = pipeline
        self.directory = Path(state_dir) / "runs" / pipeline
        self.reports = ReportDir(self.directory)

    @staticmethod
    def pipelines(state_dir: str | os.PathLike[str]) -> list[str]:
        root = Path(state_dir) / "runs"
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []

    def name(self, dag_id: str, run_id: str) -> str:
        return safe_name(f"{dag_id}.{run_id}")

    def get(self, dag_id: str, run_id: str) -> dict[str, Any] | None:
        return self.reports.read(self.name(dag_id, run_id))

    def add(self, dag_id: str, run_id: str, task_id: str, section: dict[str, Any]) -> Path:
        """Set ``task_id``'s section of the run's record (under a lock: tasks of a run may finish together)."""
        path = self.directory / f"{self.name(dag_id, run_id)}.json"
        with directory_lock(self.directory):
            try:
                record = json.loads(path.read_text()) if path.exists() else {}
            except (OSError, ValueError):
                record = {}  # a damaged view is rebuilt from what the tasks record next
            record.update({"pipeline": self.pipeline, "dag_id": dag_id, "run_id": run_id, "updated_at": time.time(),
                           task_id: section})
            write_json_atomic(path, json.dumps(record, indent=2, sort_keys=True, default=str))
        return path


def record_task(state_dir: str | os.PathLike[str], pipeline: str, dag_id: str, run_id: str | None, task_id: str,
                section: dict[str, Any]) -> None:
    """Add a task's section to its run's record; log (never raise) when it cannot be written."""
    try:
        if not run_id:
            raise ValueError("the task has no run id")
        RunRecords(state_dir, pipeline).add(dag_id, run_id, task_id, section)
    except Exception as err:  # a view for people: it never fails the task
        log.warning("could not record what %s did for the MLOps pages: %s", task_id, err)
