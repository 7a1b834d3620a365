"""What the MLOps pages show, read from the files the operators write (Airflow side; no ML library).

Every reader here takes what one page needs and no more: report directories are listed by
modification time and only the requested page is parsed (:class:`~airflow_mlops.utils.run_records.ReportDir`),
model versions are paged before their run records are read, and the prediction log is read from
its tail. Deployments are read through :class:`~airflow_mlops.serving.backends.DeploymentBackend`,
so the pages show either backend without asking which one runs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import MlopsException
from airflow_mlops.utils.model_registry import REGISTRY_DIR, ModelRegistryError, ModelVersion
from airflow_mlops.utils.run_records import ReportDir, RunRecords, safe_name
from airflow_mlops.utils.schema_store import ReferenceSchemaStore

if TYPE_CHECKING:
    from airflow_mlops.hooks.seldon import SeldonHook
    from airflow_mlops.serving.backends import DeploymentResult

log = logging.getLogger(__name__)

PAGE_SIZE = 50
#: bytes read from the end of each prediction log file for the health chart
HEALTH_TAIL_BYTES = 4 * 1024 * 1024
#: deployment → (the version it serves, that version's model root)
Served = dict[str, tuple[int | None, Path | None]]


# -- model versions ---------------------------------------------------------------------
@dataclass
class VersionRow:
    """A pushed model version with what its run recorded (training, evaluation, approval)."""

    record: ModelVersion
    run: dict[str, Any] | None
    served_by: list[str] = field(default_factory=list)

    @property
    def evaluation(self) -> dict[str, Any]:
        return section(self.run, "Evaluator")

    @property
    def training(self) -> dict[str, Any]:
        return section(self.run, "HorovodTrainer")

    @property
    def transform(self) -> dict[str, Any]:
        return section(self.run, "Transform")


def section(run: dict[str, Any] | None, component: str) -> dict[str, Any]:
    """The section of a run record written by a task of ``component`` (whatever its task id)."""
    for value in (run or {}).values():
        if isinstance(value, dict) and value.get("component") == component:
            return value
    return {}


def gate_value(run: dict[str, Any] | None, which: str = "candidate") -> float | None:
    """The gating metric's value for the candidate (or the baseline) in a run's evaluation."""
    evaluation = section(run, "Evaluator")
    key = (evaluation.get("gate") or {}).get("key")
    value = ((evaluation.get("metrics") or {}).get(which) or {}).get(key) if key else None
    return value if isinstance(value, (int, float)) else None


class PageData:
    """The readers of the MLOps pages, over one provider's settings (``hook``: a SeldonHook)."""

    def __init__(self, hook: SeldonHook) -> None:
        self.hook = hook
        self.state_dir: Path = hook.runtime_hook.state_dir

    # pipelines and their model stores
    def model_roots(self) -> dict[str, Path]:
        """pipeline → the directory of its pushed versions (the default ones, and those deployments name)."""
        roots: dict[str, Path] = {}
        base = self.state_dir / "models"
        if base.is_dir():
            for entry in sorted(base.iterdir()):
                if (entry / ".registry").is_dir():
                    roots[entry.name] = entry
        for name in RunRecords.pipelines(self.state_dir):
            roots.setdefault(name, base / name)
        return roots

    def pipelines(self) -> list[str]:
        names = set(self.model_roots())  # those of the run records included
        store = self.state_dir / "schemas"
        if store.is_dir():
            names |= {p.name for p in store.iterdir() if p.is_dir()}
        return sorted(names)

    @staticmethod
    def served(deployments: list[DeploymentResult]) -> Served:
        """deployment → (the version it serves, that version's model root): what :meth:`versions` matches."""
        return {d.name: (d.version, Path(d.model_path).parent if d.model_path else None) for d in deployments}

    @staticmethod
    def version_numbers(root: Path) -> list[int]:
        """The versions recorded under model root ``root``, newest first (their records are not read)."""
        return sorted((int(p.stem) for p in (root / REGISTRY_DIR).glob("*.json") if p.stem.isdigit()), reverse=True)

    def _rows(self, pipeline: str, root: Path, numbers: list[int], served: Served | None,
              unreadable: str) -> list[VersionRow]:
        """The rows of versions ``numbers``, each with its run record and the deployments serving it.
        A record that cannot be read is left out with a warning (``unreadable="skip"``) or raised."""
        records = RunRecords(self.state_dir, pipeline)
        names = sorted(os.listdir(records.directory)) if records.directory.is_dir() else []
        registry_dir = root / REGISTRY_DIR
        rows = []
        for number in numbers:
            path = registry_dir / f"{number}.json"
            try:
                record = ModelVersion.from_dict(json.loads(path.read_text()))
            except (OSError, ValueError, TypeError) as err:
                if unreadable != "skip":
                    raise ModelRegistryError(f"model version record {path} cannot be read: {err}") from None
                log.warning("model version record %s cannot be read: %s", path, err)
                continue
            run = None
            if record.run_id:
                suffix = f".{safe_name(record.run_id)}.json"
                run = next((records.reports.read(n) for n in names if n.endswith(suffix)), None)
            by = [name for name, (version, model_root) in (served or {}).items()
                  if version == record.version and model_root == root]
            rows.append(VersionRow(record, run, by))
        return rows

    def versions(self, pipeline: str, offset: int = 0, limit: int = PAGE_SIZE,
                 served: Served | None = None) -> tuple[list[VersionRow], int]:
        """A page of ``pipeline``'s pushed versions, newest first, each with its run record and the deployments
        serving it (``served``: :meth:`served`); and their number."""
        root = self.model_roots().get(pipeline)
        if root is None:
            return [], 0
        numbers = self.version_numbers(root)
        return self._rows(pipeline, root, numbers[offset:offset + limit], served, "skip"), len(numbers)

    def version(self, pipeline: str, version: int, served: Served | None = None) -> VersionRow:
        root = self.model_roots().get(pipeline)
        if root is None:
            raise LookupError(f"pipeline {pipeline!r} has no pushed model")
        if not (root / REGISTRY_DIR / f"{int(version)}.json").is_file():
            raise LookupError(f"pipeline {pipeline!r} has no model version {version}")
        return self._rows(pipeline, root, [int(version)], served, "raise")[0]

    def runs(self, pipeline: str, offset: int = 0, limit: int = 20):
        """The newest run records of ``pipeline`` (training and ingest runs, blessed or not)."""
        return RunRecords(self.state_dir, pipeline).reports.page(offset, limit)

    # deployments
    def deployment_names(self) -> list[str]:
        return self.hook.deployments.names()

    def deployment(self, name: str) -> DeploymentResult:
        return self.hook.deployments.describe(name)

    def deployments(self) -> tuple[list[DeploymentResult], list[str]]:
        """Every deployment as the backend describes it, and what could not be read (as text)."""
        found, errors = [], []
        try:
            names = self.deployment_names()
        except MlopsException as err:
            return [], [f"the deployments cannot be listed: {err}"]
        for name in names:
            try:
                found.append(self.deployment(name))
            except MlopsException as err:
                errors.append(f"{name}: {err}")
        return found, errors

    def quality_dir(self, name: str) -> Path:
        return self.state_dir / "quality" / safe_name(name)

    def quality_report(self, name: str) -> dict[str, Any] | None:
        reports = ReportDir(self.quality_dir(name)).page(0, 1).reports
        return reports[0] if reports else None

    # drift
    def drift_dir(self, name: str) -> Path:
        return self.state_dir / "drift" / safe_name(name) / "reports"

    def drift_deployments(self) -> list[tuple[str, int]]:
        root = self.state_dir / "drift"
        if not root.is_dir():
            return []
        return [(p.name, ReportDir(p / "reports").count()) for p in sorted(root.iterdir())
                if (p / "reports").is_dir()]

    def drift_reports(self, name: str, offset: int = 0, limit: int = PAGE_SIZE):
        return ReportDir(self.drift_dir(name)).page(offset, limit)

    def drift_report(self, name: str, report: str) -> dict[str, Any] | None:
        return ReportDir(self.drift_dir(name)).read(report)

    # data validation
    def schema(self, pipeline: str) -> dict[str, Any] | None:
        """The current reference schema of ``pipeline``: version, origin and features (type, presence, domain)."""
        store = ReferenceSchemaStore(self.state_dir / "schemas")
        try:
            current = store.current(pipeline)
        except (OSError, ValueError) as err:
            return {"error": f"the reference schema of {pipeline} cannot be read: {err}"}
        if current is None:
            return None
        try:
            text = current.schema_file.read_text()
        except OSError as err:
            return {"error": f"{current.schema_file} cannot be read: {err}"}
        return {"version": current.version, "meta": current.meta, "file": str(current.schema_file),
                "versions": store.versions(pipeline), "features": schema_table(text)}


# -- the prediction log as a chart --------------------------------------------------------
Entry = tuple[float, bool, float | None]  # when (epoch s), failed, latency (ms)
#: log file → (inode, bytes parsed, its entries): a log only grows, so a page parses only what was added
_LOG_CACHE: dict[Path, tuple[int, int, list[Entry]]] = {}
#: entries kept per log file (the chart shows the end of the log)
MAX_ENTRIES = 100_000


def _parse(data: bytes) -> list[Entry]:
    entries = []
    for line in data.decode(errors="replace").splitlines():
        try:
            entry = json.loads(line)
            if entry.get("kind") == "feedback":
                continue
            at = datetime.fromisoformat(entry["ts"]).timestamp()
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        ms = entry.get("ms")
        entries.append((at, "error" in entry, float(ms) if isinstance(ms, (int, float)) else None))
    return entries


def _log_entries(path: Path, max_bytes: int) -> list[Entry]:
    """The entries of one log file: its last ``max_bytes`` the first time, then what was appended since."""
    info = path.stat()
    cached = _LOG_CACHE.get(path)
    if cached is not None and cached[0] == info.st_ino and cached[1] <= info.st_size:
        inode, parsed, entries = cached
        start = parsed
    else:
        inode, entries, start = info.st_ino, [], max(0, info.st_size - max_bytes)
    if start == info.st_size:
        return entries
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(info.st_size - start)
    if cached is None or start != cached[1]:  # a tail: its first line is cut, unless it starts the file
        if start > 0:
            data = data[data.find(b"\n") + 1:] if b"\n" in data else b""
            start = info.st_size - len(data)
    complete = data.rfind(b"\n") + 1  # a line being written is read next time
    entries = (entries + _parse(data[:complete]))[-MAX_ENTRIES:]
    _LOG_CACHE[path] = (inode, start + complete, entries)
    return entries


def health_series(log_dir: str | os.PathLike[str] | None, buckets: int = 30,
                  max_bytes: int = HEALTH_TAIL_BYTES) -> dict[str, Any]:
    """Requests, error rate and p99 latency (ms) over time, from the end of the prediction log.

    Returns ``{"points": [{"at", "requests", "error_rate", "p99_ms"}], "requests", "since", "until"}``;
    feedback lines and unreadable lines are left out. The first read of a log file takes its last
    ``max_bytes``; later reads parse only the lines added since.
    """
    from airflow_mlops.serving.prediction_log import log_files

    if not log_dir or not Path(log_dir).is_dir():
        return {"points": [], "requests": 0}
    entries: list[Entry] = []
    for path in log_files(Path(log_dir)):
        try:
            entries.extend(_log_entries(path, max_bytes))
        except OSError:
            continue
    if not entries:
        return {"points": [], "requests": 0}
    entries.sort()
    first, last = entries[0][0], entries[-1][0]
    width = max((last - first) / buckets, 1e-6)
    bins: list[list[Entry]] = [[] for _ in range(buckets)]
    for entry in entries:
        bins[min(buckets - 1, int((entry[0] - first) / width))].append(entry)
    points = []
    for i, items in enumerate(bins):
        if not items:
            continue
        latencies = sorted(ms for _, _, ms in items if ms is not None)
        p99 = latencies[min(len(latencies) - 1, max(0, math.ceil(0.99 * len(latencies)) - 1))] if latencies else None
        points.append({"at": first + (i + 0.5) * width, "requests": len(items),
                       "error_rate": sum(1 for _, failed, _ in items if failed) / len(items), "p99_ms": p99})
    return {"points": points, "requests": len(entries), "since": first, "until": last}


# -- schema.pbtxt (text protobuf) as a table ---------------------------------------------
_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|([A-Za-z_][A-Za-z0-9_.]*)\s*:?\s*(\{)|([A-Za-z_][A-Za-z0-9_.]*)\s*:\s*'
                    r'("(?:[^"\\]|\\.)*"|[^\s{}]+)|(\}))', re.S)


def parse_text_proto(text: str) -> dict[str, list[Any]]:
    """A text-format protobuf message as ``{field: [values]}`` (messages nested the same way)."""
    stack: list[dict[str, list[Any]]] = [{}]
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            if text[pos:].strip():
                raise ValueError(f"cannot parse the schema near {text[pos:pos + 40]!r}")
            break
        pos = match.end()
        comment, opened, brace, name, value, closed = match.groups()
        if comment:
            continue
        if opened:
            child: dict[str, list[Any]] = {}
            stack[-1].setdefault(opened, []).append(child)
            stack.append(child)
        elif name:
            if value.startswith('"'):
                value = json.loads(value) if "\\" not in value else value[1:-1].encode().decode("unicode_escape")
            stack[-1].setdefault(name, []).append(value)
        elif closed:
            if len(stack) == 1:
                raise ValueError("unbalanced '}' in the schema")
            stack.pop()
    return stack[0]


def schema_table(text: str) -> list[dict[str, Any]]:
    """One row per feature of a TFMD schema: name, type, presence, shape, domain (values or range)."""
    message = parse_text_proto(text)
    domains = {d.get("name", [""])[0]: d.get("value", []) for d in message.get("string_domain", [])}
    rows = []
    for feature in message.get("feature", []):
        name = feature.get("name", ["?"])[0]
        domain: Any = ""
        if "domain" in feature:
            values = domains.get(feature["domain"][0], [])
            domain = {"name": feature["domain"][0], "values": values}
        elif "string_domain" in feature:
            domain = {"values": feature["string_domain"][0].get("value", [])}
        for kind in ("int_domain", "float_domain", "bool_domain"):
            if kind in feature:
                spec = feature[kind][0]
                domain = {"min": spec.get("min", [None])[0], "max": spec.get("max", [None])[0], "kind": kind}
        presence = (feature.get("presence") or [{}])[0]
        shape = (feature.get("shape") or [{}])[0]
        rows.append({"name": name, "type": feature.get("type", ["?"])[0],
                     "min_fraction": (presence.get("min_fraction") or [None])[0],
                     "dims": [d.get("size", ["?"])[0] for d in shape.get("dim", [])] if shape else None,
                     "domain": domain})
    return rows


def when(epoch: float | None) -> str:
    """An epoch time as ``YYYY-MM-DD HH:MM:SS UTC``."""
    if not epoch:
        return ""
    return datetime.fromtimestamp(float(epoch), tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
