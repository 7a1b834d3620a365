"""Model quality on live traffic: served predictions joined with the ground truth that arrived later.

The truth reaches the provider two ways, both keyed by the request id the model server returns
in ``meta.puid`` and writes to its prediction log:

- Seldon's feedback endpoint (``POST /api/v1.0/feedback``): the server appends a
  ``"kind": "feedback"`` line (the request id and one label per row) to its prediction log;
- outcome files under ``[mlops] feedback_root`` (any fsspec URL): ``*.csv`` with a header
  holding ``request_id`` and ``label`` (and ``row``, the row of a multi-row request, 0 when
  absent), or ``*.jsonl`` with those keys, as labelling systems deliver them, in batches.

Nothing is written to the prediction log or the outcome files here. What cannot be used is
counted, never fatal: malformed rows (with the first few places), labels of request ids the log
does not have (``unknown_ids``), labels given twice (the first kept: ``duplicates``), labels of
predictions outside the window (``outside_window``); a feedback line whose label count is not its
request's row count, or that holds more than ``MAX_FEEDBACK_LABELS``, is refused whole (malformed), and
so is an outcome row beyond its request's rows. Metrics are computed in plain Python, exactly
as TFMA defines them for the model type (standard library only; fsspec for remote outcome files).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from airflow_mlops.evaluation import DEFAULT_METRIC, METRICS, MODEL_TYPES, Metric
from airflow_mlops.serving.prediction_log import log_entries
from airflow_mlops.shared import DEFAULT_MAX_ROWS

#: Metrics the quality check computes, by model type (TFMA's names, as the blessing gate uses them).
QUALITY_METRICS = {
    "binary": ("AUC", "BinaryAccuracy", "Precision", "Recall"),
    "multiclass": ("SparseCategoricalAccuracy",),
    "regression": ("MeanSquaredError", "MeanAbsoluteError", "RootMeanSquaredError"),
}
#: How many places of malformed outcome rows a report names.
MAX_PLACES = 10
#: The most labels one feedback line of the prediction log may hold (the server's default row limit).
MAX_FEEDBACK_LABELS = DEFAULT_MAX_ROWS


class QualitySpecError(ValueError):
    """The quality check's arguments do not fit together or with the served model; the message says what to set."""


def check_quality_metric(model_type: str, metric: str | None) -> Metric:
    """The metric (default: the model type's gate metric) as the quality check computes it."""
    if model_type not in MODEL_TYPES:
        raise QualitySpecError(f"model_type must be one of {', '.join(MODEL_TYPES)}, got {model_type!r}")
    name = metric or DEFAULT_METRIC[model_type]
    if name not in QUALITY_METRICS[model_type]:
        raise QualitySpecError(f"metric {name!r} is not one the quality check computes for {model_type} models; "
                               f"use one of {', '.join(QUALITY_METRICS[model_type])}")
    return METRICS[name]


# ---------------------------------------------------------------------------------------------- the truth

@dataclass
class Labels:
    """Labels by ``(request_id, row)``, and what could not be used."""

    by_key: dict[tuple[str, int], Any] = field(default_factory=dict)
    received: int = 0
    duplicates: int = 0
    conflicting: int = 0
    malformed: int = 0
    places: list[str] = field(default_factory=list)
    files: int = 0

    def add(self, request_id: str, row: int, label: Any) -> None:
        self.received += 1
        key = (request_id, row)
        if key in self.by_key:
            self.duplicates += 1
            if self.by_key[key] != label:
                self.conflicting += 1
            return
        self.by_key[key] = label

    def bad(self, place: str, problem: str) -> None:
        self.malformed += 1
        if len(self.places) < MAX_PLACES:
            self.places.append(f"{place}: {problem}")


def _label(value: Any) -> Any:
    """A label from text (CSV) or JSON: a number when it reads as one, else the string; None when empty."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else None
    text = str(value).strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else None


def _outcome(labels: Labels, place: str, record: dict[str, Any]) -> None:
    request_id = str(record.get("request_id") or "").strip()
    label = _label(record.get("label"))
    raw_row = record.get("row")
    try:
        row = 0 if raw_row in (None, "") else int(str(raw_row).strip())
    except ValueError:
        labels.bad(place, f"row {raw_row!r} is not a whole number")
        return
    if not request_id:
        labels.bad(place, "no request_id")
    elif label is None:
        labels.bad(place, f"label {record.get('label')!r} is not a number or a class name")
    elif row < 0:
        labels.bad(place, f"row {row} is negative")
    else:
        labels.add(request_id, row, label)


def _outcome_text(labels: Labels, name: str, text: str) -> None:
    if name.endswith(".jsonl"):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                labels.bad(f"{name}:{number}", "not JSON")
                continue
            if not isinstance(record, dict):
                labels.bad(f"{name}:{number}", "not a JSON object")
                continue
            _outcome(labels, f"{name}:{number}", record)
        return
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"request_id", "label"} <= set(reader.fieldnames):
        labels.bad(name, f"the header {reader.fieldnames} has no request_id and label columns")
        return
    for record in reader:
        _outcome(labels, f"{name}:{reader.line_num}", record)


def outcome_files(root: str) -> list[tuple[str, Any]]:
    """``(name, fsspec file)`` of every ``*.csv`` and ``*.jsonl`` under ``root`` (a path or any fsspec URL)."""
    import fsspec

    fs, _, paths = fsspec.get_fs_token_paths(root)
    base = paths[0].rstrip("/") if paths else ""
    if not fs.exists(base):
        return []
    found = sorted(p for p in fs.find(base) if p.endswith((".csv", ".jsonl")))
    return [(p, fs) for p in found]


def read_labels(feedback_root: str | None, log_dir: str | None, rows_of: dict[str, int] | None = None) -> Labels:
    """Every label that has arrived: the feedback lines of the prediction log, then the outcome files
    (``rows_of``: the row count of each request the log answered; labels that do not fit it are refused)."""
    labels = Labels()
    rows_of = rows_of or {}
    if log_dir:
        for entry in log_entries(log_dir):
            if entry is None or entry.get("kind") != "feedback":
                continue
            rows = entry.get("labels")
            if not entry.get("request_id") or not isinstance(rows, list):
                labels.bad(f"{log_dir} feedback at {entry.get('ts')}", "no request_id or labels")
                continue
            place, expected = f"{log_dir} feedback {str(entry['request_id'])[:80]}", rows_of.get(entry["request_id"])
            if len(rows) > MAX_FEEDBACK_LABELS or (expected is not None and len(rows) != expected):
                labels.bad(place, f"{len(rows)} labels for a request of "
                                  f"{expected if expected is not None else 'at most %d' % MAX_FEEDBACK_LABELS} rows")
                continue
            for row, value in enumerate(rows):
                label = _label(value)
                if label is None:
                    labels.bad(f"{log_dir} feedback {entry['request_id']} row {row}", f"label {value!r} unusable")
                else:
                    labels.add(str(entry["request_id"]), row, label)
    if feedback_root:
        for path, fs in outcome_files(feedback_root):
            labels.files += 1
            try:
                with fs.open(path, "rb") as handle:
                    text = handle.read().decode("utf-8")
            except (OSError, UnicodeDecodeError) as err:
                labels.bad(path, f"unreadable: {err}")
                continue
            _outcome_text(labels, path, text)
    for key in [key for key in labels.by_key if key[0] in rows_of and key[1] >= rows_of[key[0]]]:
        del labels.by_key[key]
        labels.bad(f"outcome of {key[0][:80]} row {key[1]}", f"the request had {rows_of[key[0]]} row(s)")
    return labels


# ---------------------------------------------------------------------------------------------- the join

@dataclass(slots=True)
class Served:
    """One served row: when, by which version, what it predicted."""

    at: datetime
    version: int
    request_id: str
    row: int
    prediction: Any


def prediction_columns(names: list[str], prediction_key: str | None, vector: bool) -> list[int]:
    """The columns of a logged prediction row that hold the prediction. The server logs a vector output
    ``probs`` of width k as columns ``probs_0`` … ``probs_{k-1}``: a multi-class model's prediction is
    all of them (``vector``); otherwise one column: ``prediction_key``, else the first."""
    if not vector:
        if not prediction_key:
            return [0]
        if prediction_key in names:
            return [names.index(prediction_key)]
    else:
        first = names[0] if names else ""
        base = prediction_key or (first.rsplit("_", 1)[0] if re.fullmatch(r".+_\d+", first) else first)
        split = sorted((int(n.rsplit("_", 1)[1]), i) for i, n in enumerate(names)
                       if re.fullmatch(re.escape(base) + r"_\d+", n))
        if split:
            return [i for _, i in split]
        if base in names:
            return [names.index(base)]
    raise QualitySpecError(f"prediction_key {prediction_key!r} is not an output of the served model (its "
                           f"outputs: {', '.join(names) or 'none'}); leave it empty for the first")


def served_rows(log_dir: str, since: datetime | None, prediction_key: str | None,
                vector: bool = False) -> tuple[list[Served], dict[str, int], int]:
    """The rows the deployment answered since ``since`` (all when None), the request ids of the whole
    log (with each one's row count), and how many answered rows lacked a request id (served before ids existed); ``vector``: the
    prediction is every column of the output (a multi-class model's scores)."""
    rows: list[Served] = []
    ids: dict[str, int] = {}
    without_id = 0
    for entry in log_entries(log_dir):
        if entry is None or entry.get("kind") == "feedback" or "error" in entry:
            continue
        predictions = entry.get("predictions") or []
        rid = entry.get("request_id")
        if not rid:
            without_id += len(predictions)
            continue
        ids[rid] = len(predictions)
        try:
            if since is not None and entry["_at"] < since:
                continue
        except TypeError:  # a timestamp without a timezone: not one the server wrote
            continue
        columns = prediction_columns(entry.get("names") or [], prediction_key, vector)
        for i, values in enumerate(predictions):
            if not isinstance(values, list) or not values:
                value = values
            elif vector and len(columns) > 1:
                value = [values[c] for c in columns]
            else:
                value = values[columns[0]]
            rows.append(Served(entry["_at"], int(entry.get("model_version") or 0), rid, i, value))
    return rows, ids, without_id


# ---------------------------------------------------------------------------------------------- metrics

def _score(prediction: Any) -> float | None:
    """A scalar prediction (a one-element output counts as its element)."""
    if isinstance(prediction, list):
        prediction = prediction[0] if len(prediction) == 1 else None
    return float(prediction) if isinstance(prediction, (int, float)) and not isinstance(prediction, bool) else None


def _binary(label: Any) -> int | None:
    if isinstance(label, (int, float)) and label in (0, 1):
        return int(label)
    if isinstance(label, str) and label.lower() in ("true", "false"):
        return int(label.lower() == "true")
    return None


def auc(scores: list[float], labels: list[int]) -> float | None:
    """The ROC AUC (the Mann-Whitney statistic; ties count one half); None without both classes."""
    positives = sum(labels)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return None
    order = sorted(range(len(scores)), key=scores.__getitem__)
    rank_sum, i = 0.0, 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        average_rank = (i + j) / 2 + 1
        rank_sum += average_rank * sum(labels[order[k]] for k in range(i, j + 1))
        i = j + 1
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def compute_metric(model_type: str, metric: str, pairs: Iterable[tuple[Any, Any]]) -> tuple[float | None, int]:
    """``metric`` over ``(prediction, label)`` pairs; the value (None when undefined) and the rows used
    (pairs whose prediction or label does not fit the model type are left out)."""
    if model_type == "binary":
        scored = [(s, b) for p, y in pairs if (s := _score(p)) is not None and (b := _binary(y)) is not None]
        scores, labels = [s for s, _ in scored], [b for _, b in scored]
        if not scored:
            return None, 0
        if metric == "AUC":
            return auc(scores, labels), len(scored)
        predicted = [int(s >= 0.5) for s in scores]
        true_pos = sum(1 for p, y in zip(predicted, labels, strict=True) if p and y)
        if metric == "BinaryAccuracy":
            return sum(1 for p, y in zip(predicted, labels, strict=True) if p == y) / len(scored), len(scored)
        if metric == "Precision":
            return (true_pos / sum(predicted) if sum(predicted) else None), len(scored)
        if metric == "Recall":
            return (true_pos / sum(labels) if sum(labels) else None), len(scored)
    elif model_type == "multiclass":
        hits = total = 0
        for prediction, label in pairs:
            if not isinstance(prediction, list) or not prediction or not isinstance(label, (int, float)):
                continue
            total += 1
            hits += int(max(range(len(prediction)), key=prediction.__getitem__) == int(label))
        return (hits / total if total else None), total
    elif model_type == "regression":
        errors = [s - float(y) for p, y in pairs if (s := _score(p)) is not None and isinstance(y, (int, float))]
        if not errors:
            return None, 0
        if metric == "MeanAbsoluteError":
            return sum(abs(e) for e in errors) / len(errors), len(errors)
        mse = sum(e * e for e in errors) / len(errors)
        return (math.sqrt(mse) if metric == "RootMeanSquaredError" else mse), len(errors)
    raise QualitySpecError(f"metric {metric!r} is not computed for {model_type} models")


# ---------------------------------------------------------------------------------------------- the check

@dataclass(frozen=True)
class QualityGate:
    """When a version's quality counts as decayed.

    :param model_type: ``binary``, ``multiclass`` or ``regression``.
    :param metric: the metric (TFMA's name); default: the model type's gate metric.
    :param max_drop: how much worse than the value the version was blessed with is tolerated.
    :param floor: the worst acceptable value whatever the blessed one (None: no floor).
    :param min_labels: labelled rows a version needs before its quality is judged.
    """

    model_type: str = "binary"
    metric: str | None = None
    max_drop: float = 0.05
    floor: float | None = None
    min_labels: int = 100

    @property
    def spec(self) -> Metric:
        return check_quality_metric(self.model_type, self.metric)


def judge(gate: QualityGate, value: float | None, samples: int, blessed: float | None) -> dict[str, Any]:
    """``ok``, ``decayed`` (with the drop and why) or ``insufficient_labels`` for one version."""
    spec = gate.spec
    if samples < gate.min_labels or value is None:
        why = (f"{samples} labelled prediction(s), at least {gate.min_labels} are needed" if samples < gate.min_labels
               else f"{spec.name} is undefined on these {samples} rows (one class only)")
        return {"status": "insufficient_labels", "reason": why, "drop": None}
    drop = None if blessed is None else (blessed - value if spec.higher_is_better else value - blessed)
    reasons = []
    if drop is not None and drop > gate.max_drop:
        reasons.append(f"{spec.name} {value:.4f} is {drop:.4f} {'below' if spec.higher_is_better else 'above'} the "
                       f"{blessed:.4f} it was blessed with (tolerated: {gate.max_drop:g})")
    if gate.floor is not None and (value < gate.floor if spec.higher_is_better else value > gate.floor):
        reasons.append(f"{spec.name} {value:.4f} is {'below' if spec.higher_is_better else 'above'} the floor "
                       f"{gate.floor:g}")
    return {"status": "decayed" if reasons else "ok", "reason": "; ".join(reasons) or None, "drop": drop}


def _buckets(rows: list[tuple[Served, Any]], count: int) -> list[tuple[datetime, list[tuple[Served, Any]]]]:
    """``rows`` (sorted by time) cut into ``count`` spans of equal length: for the metric over time."""
    if not rows:
        return []
    start, end = rows[0][0].at, rows[-1][0].at
    width = max((end - start) / count, timedelta(seconds=1))
    cut: dict[int, list[tuple[Served, Any]]] = {}
    for pair in rows:
        cut.setdefault(min(int((pair[0].at - start) / width), count - 1), []).append(pair)
    return [(start + width * i + width / 2, cut[i]) for i in sorted(cut)]


def model_quality(log_dir: str, gate: QualityGate, *, blessed: dict[int, float | None],
                  feedback_root: str | None = None, minutes: float | None = None,
                  prediction_key: str | None = None, now: datetime | None = None, serving: int | None = None,
                  points: int = 12) -> dict[str, Any]:
    """Join the deployment's predictions of the window with the labels that arrived and judge each
    model version (``blessed``: version → the metric's value it was blessed with, None when unknown).

    The result: ``status`` (that of the version the deployment ``serving`` now, whose decay calls for
    retraining; without ``serving``: ``decayed`` if any version decayed, else ``ok`` if any is judged,
    else ``insufficient_labels``), ``versions`` (per version: value, samples, blessed value, drop,
    status, reason, ``series`` of the metric over the window), and the join's counts.
    """
    spec = gate.spec
    since = None if minutes is None else (now or datetime.now(timezone.utc)) - timedelta(minutes=minutes)
    rows, known_ids, without_id = served_rows(log_dir, since, prediction_key, vector=gate.model_type == "multiclass")
    labels = read_labels(feedback_root, log_dir, known_ids)
    in_window = {(r.request_id, r.row) for r in rows}
    joined: dict[int, list[tuple[Served, Any]]] = {}
    for served in rows:
        label = labels.by_key.get((served.request_id, served.row))
        if label is not None:
            joined.setdefault(served.version, []).append((served, label))
    unknown = sum(1 for key in labels.by_key if key[0] not in known_ids)
    outside = sum(1 for key in labels.by_key if key[0] in known_ids and key not in in_window)
    versions: dict[str, Any] = {}
    for version in sorted({r.version for r in rows}):
        pairs = sorted(joined.get(version, []), key=lambda pair: pair[0].at)
        value, used = compute_metric(gate.model_type, spec.name, [(s.prediction, y) for s, y in pairs])
        verdict = judge(gate, value, used, blessed.get(version))
        series = []
        for at, bucket in _buckets(pairs, points):
            point, n = compute_metric(gate.model_type, spec.name, [(s.prediction, y) for s, y in bucket])
            if point is not None:
                series.append({"at": at.isoformat(), "value": point, "samples": n})
        versions[str(version)] = {"version": version, "metric": spec.name, "value": value, "samples": used,
                                  "served_rows": sum(1 for r in rows if r.version == version),
                                  "blessed_value": blessed.get(version), **verdict, "series": series}
    statuses = [v["status"] for v in versions.values()]
    if serving is not None:
        status = versions[str(serving)]["status"] if str(serving) in versions else "insufficient_labels"
    else:
        status = "decayed" if "decayed" in statuses else "ok" if "ok" in statuses else "insufficient_labels"
    return {
        "status": status, "serving": serving, "metric": spec.name, "higher_is_better": spec.higher_is_better,
        "model_type": gate.model_type, "max_drop": gate.max_drop, "floor": gate.floor, "min_labels": gate.min_labels,
        "window_minutes": minutes, "versions": versions,
        "join": {"served_rows": len(rows), "rows_without_request_id": without_id, "labels_received": labels.received,
                 "labelled_rows": sum(len(p) for p in joined.values()), "unknown_ids": unknown,
                 "outside_window": outside, "duplicates": labels.duplicates, "conflicting_duplicates": labels.conflicting,
                 "malformed": labels.malformed, "malformed_places": labels.places, "outcome_files": labels.files},
    }


# ---------------------------------------------------------------------------------------------- the plot

def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def quality_svg(report: dict[str, Any], width: int = 640, height: int = 320) -> str:
    """The metric over time per model version, as an SVG line chart (a dashed line: the blessed value)."""
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    series = {k: v for k, v in report["versions"].items() if v["series"]}
    values = [p["value"] for v in series.values() for p in v["series"]]
    values += [v["blessed_value"] for v in series.values() if v.get("blessed_value") is not None]
    times = [datetime.fromisoformat(p["at"]) for v in series.values() for p in v["series"]]
    left, right, top, bottom = 60, 130, 30, 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           'font-size="11">', f'<text x="{left}" y="18" font-size="13">{_escape(report["metric"])} of the served '
           'predictions, per model version</text>']
    if not values:
        out.append(f'<text x="{left}" y="{height / 2}">no labelled predictions yet</text></svg>')
        return "\n".join(out)
    low, high = min(values), max(values)
    if high == low:
        low, high = low - 0.5, high + 0.5
    t0, t1 = min(times), max(times)
    span = max((t1 - t0).total_seconds(), 1.0)

    def x(at: datetime) -> float:
        return left + (at - t0).total_seconds() / span * (width - left - right)

    def y(value: float) -> float:
        return top + (high - value) / (high - low) * (height - top - bottom)

    out.append(f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#444"/>')
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#444"/>')
    for value in (low, (low + high) / 2, high):
        out.append(f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:.3f}</text>')
    out.append(f'<text x="{left}" y="{height - bottom + 16}">{t0:%Y-%m-%d %H:%M}</text>')
    out.append(f'<text x="{width - right}" y="{height - bottom + 16}" text-anchor="end">{t1:%H:%M} UTC</text>')
    for i, (name, version) in enumerate(sorted(series.items(), key=lambda kv: int(kv[0]))):
        colour = colours[i % len(colours)]
        points = " ".join(f"{x(datetime.fromisoformat(p['at'])):.1f},{y(p['value']):.1f}" for p in version["series"])
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        for p in version["series"]:  # each point marked: a version served for a moment is one point, not a line
            out.append(f'<circle cx="{x(datetime.fromisoformat(p["at"])):.1f}" cy="{y(p["value"]):.1f}" r="3" '
                       f'fill="{colour}"><title>v{_escape(name)}: {p["value"]:.4f} on {p["samples"]} rows</title>'
                       '</circle>')
        if version.get("blessed_value") is not None:
            level = y(version["blessed_value"])
            out.append(f'<line x1="{left}" y1="{level:.1f}" x2="{width - right}" y2="{level:.1f}" stroke="{colour}" '
                       'stroke-dasharray="4 3"/>')
        label = f"v{_escape(name)}: {version['status']}"
        out.append(f'<text x="{width - right + 8}" y="{top + 16 * i + 10}" fill="{colour}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out)


def write_report(report: dict[str, Any], directory: str | Path, stamp: str) -> dict[str, str]:
    """The report as ``quality-<stamp>.json`` and its plot as ``quality-<stamp>.svg`` in ``directory``."""
    from airflow_mlops.runtimes.contract import write_json_atomic

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, svg_path = folder / f"quality-{stamp}.json", folder / f"quality-{stamp}.svg"
    svg_path.write_text(quality_svg(report))
    write_json_atomic(json_path, json.dumps({**report, "plot": str(svg_path)}, indent=2, allow_nan=False))
    return {"report": str(json_path), "plot": str(svg_path)}

