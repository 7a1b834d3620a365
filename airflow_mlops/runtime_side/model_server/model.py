"""The model class the seldon-core wrapper serves (runs in the ``serving`` runtime, never in Airflow).

It serves the SavedModel version named by the deployment's ``current.json`` and swaps
versions without a restart: a watcher thread notices a new pointer, loads that version
in the background, runs it once on an empty batch, and only then makes it the served
one, so requests never wait for a load and never see a half-loaded model. A version that
fails to load or to run is reported by ``/health/status`` and never served; the old one
keeps serving.

Requests (Seldon protocol, ``POST /api/v1.0/predictions``):

* ``{"data": {"names": [...], "ndarray": [[...], ...]}}``: one row per example;
* ``{"jsonData": {"instances": [{feature: value, ...}, ...]}}`` (or a list of records,
  or one record): raw features by name.

Each row becomes a ``tf.Example`` for the model's ``serving_default`` signature. When the
model ships ``assets.extra/feature_spec.json`` (the taxi module writes it), a missing
required feature or a value of the wrong type is a 400 naming the feature and the row.
Every answer carries a request id in ``meta.puid`` (the client's own ``meta.puid`` is kept;
otherwise a new one). Ground truth comes back later through Seldon's feedback endpoint
(``POST /api/v1.0/feedback`` with ``{"request": {"meta": {"puid": ...}}, "truth": {"data":
{"ndarray": [...]}}}``, one label per row of the request), or as outcome files (read by the
quality check, not by the server). Every request and its predictions, with the time, the
request id and the model version, and every feedback (``"kind": "feedback"``, the request id
and its labels) are appended to the prediction log that monitoring reads: ``<dir>/<YYYY-MM-DD>.jsonl`` for a local
directory, or objects ``<url>/<YYYY-MM-DD>/<host>-<pid>-<n>.jsonl`` on any fsspec location.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any

from airflow_mlops.shared import DEFAULT_MAX_ROWS, FEATURE_SPEC, quoted

log = logging.getLogger("airflow_mlops.serving")

#: The longest string label a feedback may carry (a class name, not a payload).
MAX_LABEL_CHARS = 200
#: Bytes of a feedback body per row the server takes (labels and the request's meta; a bigger one is a 413).
FEEDBACK_BYTES_PER_ROW = 100
#: Row counts of the latest predictions this process answered, kept to check a feedback's label count.
RECENT_PREDICTIONS = 100_000
#: The longest request id kept from a client (a longer one is refused: it is a key, not a payload).
MAX_REQUEST_ID = 128


class BadRequest(Exception):
    """A request the model cannot answer; turned into an HTTP 4xx naming what is wrong."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


def request_id(request: Any) -> str:
    """The client's ``meta.puid`` when it sent one, else a new id (pure: tested without TensorFlow)."""
    import uuid

    meta = request.get("meta") if isinstance(request, dict) else None
    given = meta.get("puid") if isinstance(meta, dict) else None
    if given in (None, ""):
        return uuid.uuid4().hex
    if not isinstance(given, str) or len(given) > MAX_REQUEST_ID or not given.isprintable():
        raise BadRequest(f"meta.puid must be a printable string of at most {MAX_REQUEST_ID} characters "
                         f"(the request id), got {quoted(given, 40)}")
    return given


def _label(i: int, row: Any) -> Any:
    label = row[0] if isinstance(row, list) and len(row) == 1 else row
    if isinstance(label, bool) or not isinstance(label, (int, float, str)):
        raise BadRequest(f"feedback.truth row {i}: {quoted(row)} is not a label (a number or a string)")
    if isinstance(label, str):
        # seldon-core's protobuf round trip turns NaN and infinities (1e309 too) into these strings
        if label.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
            raise BadRequest(f"feedback.truth row {i}: {quoted(label)} is not a finite number")
        if len(label) > MAX_LABEL_CHARS or not label.strip():
            raise BadRequest(f"feedback.truth row {i}: {quoted(label)} is not a label (a class name of 1 to "
                             f"{MAX_LABEL_CHARS} characters)")
    elif not math.isfinite(label):
        raise BadRequest(f"feedback.truth row {i}: {quoted(label)} is not a finite number")
    elif abs(label) > FLOAT32_MAX:
        raise BadRequest(f"feedback.truth row {i}: {quoted(label)} is beyond the float32 range the model computes in")
    return label


def _labels(truth: Any, max_rows: int = DEFAULT_MAX_ROWS) -> list[Any]:
    """One label per row from a Seldon message: ``data.ndarray`` (``[1, 0]`` or ``[[1], [0]]``), or
    ``jsonData`` (a list of labels, or ``{"labels": [...]}``); each finite, at most ``max_rows``."""
    if not isinstance(truth, dict):
        raise BadRequest("feedback.truth must be a Seldon message: {'data': {'ndarray': [label, ...]}}")
    if "data" in truth:
        data = truth["data"]
        rows = data.get("ndarray") if isinstance(data, dict) else None
        if rows is None and isinstance(data, dict) and isinstance(data.get("tensor"), dict):
            rows = data["tensor"].get("values")
    elif "jsonData" in truth:
        rows = truth["jsonData"].get("labels") if isinstance(truth["jsonData"], dict) else truth["jsonData"]
    else:
        raise BadRequest("feedback.truth has neither 'data' nor 'jsonData': send {'data': {'ndarray': [label, ...]}}")
    if not isinstance(rows, list) or not rows:
        raise BadRequest("feedback.truth holds no labels: send one label per row of the request, in data.ndarray")
    if len(rows) > max_rows:
        raise BadRequest(f"feedback.truth holds {len(rows)} labels; a request has at most {max_rows} rows, "
                         "send one label per row", status_code=413)
    return [_label(i, row) for i, row in enumerate(rows)]


def feedback_entry(feedback: Any, rows_of: dict[str, int] | None = None,
                   max_rows: int = DEFAULT_MAX_ROWS) -> dict[str, Any]:
    """What a Seldon feedback body says: ``{"request_id", "labels"}`` (pure: tested without TensorFlow).
    The id is the prediction's ``meta.puid``, sent back in ``request.meta`` (or ``response.meta``). The labels
    must be as many as the prediction's rows: those of the request sent back with it (``request.data`` or
    ``request.jsonData``), else those ``rows_of`` (request id → rows answered here) knows."""
    if not isinstance(feedback, dict):
        raise BadRequest("the feedback must be a JSON object with 'request' (its meta.puid) and 'truth'")
    found = None
    for part in ("request", "response"):
        meta = (feedback.get(part) or {}).get("meta") if isinstance(feedback.get(part), dict) else None
        if isinstance(meta, dict) and meta.get("puid"):
            found = meta["puid"]
            break
    if found is None:
        raise BadRequest("the feedback names no prediction: send the prediction's meta.puid (its request id) "
                         "as request.meta.puid")
    rid = request_id({"meta": {"puid": found}})
    labels = _labels(feedback.get("truth"), max_rows)
    sent = feedback.get("request")
    rows = (rows_of or {}).get(rid)
    if isinstance(sent, dict) and ("data" in sent or "jsonData" in sent):
        try:
            rows = len(rows_from_request(sent, max_rows))
        except BadRequest as err:
            raise BadRequest(f"feedback.request is not the prediction's request: {err}") from None
    if rows is not None and len(labels) != rows:
        raise BadRequest(f"the prediction {quoted(rid)} had {rows} row(s): send {rows} label(s), one per row "
                         f"(got {len(labels)})")
    return {"request_id": rid, "labels": labels}


def rows_from_request(request: Any, max_rows: int = DEFAULT_MAX_ROWS) -> list[dict[str, Any]]:
    """The request's examples as ``{feature: value}`` records (pure: tested without TensorFlow)."""
    if not isinstance(request, dict):
        raise BadRequest("the request must be a JSON object with 'data' or 'jsonData'")
    if "jsonData" in request:
        body = request["jsonData"]
        if isinstance(body, dict) and "instances" in body:
            body = body["instances"]
        records = [body] if isinstance(body, dict) else body
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise BadRequest("jsonData must be a record, a list of records, or {'instances': [records]}")
    elif "data" in request:
        data = request["data"]
        if not isinstance(data, dict) or "ndarray" not in data:
            raise BadRequest("data must hold 'ndarray' (rows of feature values) and 'names'")
        names, rows = data.get("names"), data["ndarray"]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise BadRequest("data.names must list the feature name of each column")
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise BadRequest("data.ndarray must be a list of rows (lists of values)")
        for i, row in enumerate(rows):
            if len(row) != len(names):
                raise BadRequest(f"row {i} has {len(row)} values, data.names has {len(names)}")
        records = [dict(zip(names, row, strict=True)) for row in rows]
    else:
        raise BadRequest("the request has neither 'data' nor 'jsonData'")
    if not records:
        raise BadRequest("the request has no rows (empty batch)")
    if len(records) > max_rows:
        raise BadRequest(f"the request has {len(records)} rows; at most {max_rows} are accepted", status_code=413)
    return records


FLOAT32_MAX = 3.4028234663852886e38
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def check_value(i: int, name: str, value: Any, kind: str | None) -> None:
    """One feature value against its kind (``float``, ``int``, ``string``; None: no feature spec, what the
    value itself says): a client mistake is a :class:`BadRequest` naming the row, the feature and the value."""
    where = f"row {i}: feature {quoted(name, 40)}"
    if isinstance(value, bool):
        raise BadRequest(f"{where}: a boolean is not a feature value (send 0/1 or a string)")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRequest(f"{where}: {value!r} is not a finite number")
    if kind == "float" or (kind is None and isinstance(value, float)):
        if not isinstance(value, (int, float)):
            raise BadRequest(f"{where} must be float, got {type(value).__name__} {quoted(value)}")
        if abs(value) > FLOAT32_MAX:
            raise BadRequest(f"{where}: {value!r} is beyond the float32 range the model computes in (+-3.4e38)")
    elif kind == "int" or (kind is None and isinstance(value, int)):
        # JSON numbers that went through a protobuf (SeldonClient's ndarray) arrive as 60.0
        if not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise BadRequest(f"{where} must be int, got {type(value).__name__} {quoted(value)}")
        if not INT64_MIN <= int(value) <= INT64_MAX:
            raise BadRequest(f"{where}: {quoted(value)} is beyond the int64 range")
    elif kind == "string" or (kind is None and isinstance(value, str)):
        if not isinstance(value, str):
            raise BadRequest(f"{where} must be string, got {type(value).__name__} {quoted(value)}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(f"{where}: the string is not valid Unicode (a lone surrogate escape such as \\ud800)") \
                from None
    else:
        raise BadRequest(f"{where}: unsupported value {quoted(value)} (send a number or a string)")


def check_types(records: list[dict[str, Any]], spec: dict[str, dict[str, Any]] | None) -> None:
    """Missing required, unknown and wrongly typed or out-of-range values, by name and row
    (``spec``: feature_spec.json; without one every value is still checked against what it is)."""
    for i, record in enumerate(records):
        if spec:
            unknown = sorted(name for name, value in record.items() if name not in spec and value is not None)
            if unknown:
                shown = ", ".join(quoted(n, 40) for n in unknown[:10]) + (" …" if len(unknown) > 10 else "")
                raise BadRequest(f"row {i}: unknown feature{'s' if len(unknown) > 1 else ''} "
                                 f"{shown}; the model reads: {', '.join(sorted(spec))}")
            for name, feature in spec.items():  # in the spec's order: the first problem of the row is named
                value = record.get(name)
                if value is None:
                    if feature.get("required"):
                        raise BadRequest(f"row {i}: feature {name!r} is missing (the model requires it)")
                    continue
                check_value(i, name, value, feature["dtype"])
        else:
            for name, value in record.items():
                if value is not None:
                    check_value(i, name, value, None)


def finite_or_none(values: list[float]) -> tuple[list[float | None], int]:
    """Model outputs as JSON can carry them: NaN and infinities become null; also how many did."""
    cleaned = [v if math.isfinite(v) else None for v in values]
    return cleaned, sum(v is None for v in cleaned)


def tf_error_summary(message: str) -> str:
    """The informative line of a TensorFlow error (which feature, which key), not its graph trace."""
    import re

    for pattern in (r"Feature: [^\n]*", r"Key: [^\n]*", r"Name: [^\n]*"):
        found = re.search(pattern, message)
        if found:
            return found.group(0).strip()
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[-1] if lines else "invalid input"


def _example(record: dict[str, Any], spec: dict[str, dict[str, Any]] | None):
    import tensorflow as tf

    features = {}
    for name, value in record.items():
        if value is None:
            continue
        kind = (spec or {}).get(name, {}).get("dtype")
        if spec is not None and kind is None:
            continue  # not a model input (a label, an id): ignored
        if kind == "float" or (kind is None and isinstance(value, float)):
            features[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
        elif kind == "int" or (kind is None and isinstance(value, int) and not isinstance(value, bool)):
            features[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
        elif isinstance(value, str):
            features[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        else:
            raise BadRequest(f"feature {quoted(name)}: unsupported value {quoted(value)}")
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


class _Loaded:
    def __init__(self, version: int, path: str, signature: Any, spec: dict[str, Any] | None) -> None:
        self.version, self.path, self.signature, self.spec = version, path, signature, spec
        self.loaded_at = time.time()


def load_version(version: int, path: str) -> _Loaded:
    """Load a SavedModel and run its serving signature once on an empty batch (a broken model fails here)."""
    import tensorflow as tf

    model = tf.saved_model.load(path)
    signature = model.signatures["serving_default"]
    signature._airflow_mlops_owner = model  # keep the loaded object (and its variables) alive
    spec_path = os.path.join(path, FEATURE_SPEC)
    spec = None
    if os.path.exists(spec_path):
        with open(spec_path) as handle:
            spec = json.load(handle)
    else:
        log.warning("model version %s has no %s: JSON values reach the model as they come (no type coercion; "
                    "an integer for a float feature is refused by TensorFlow)", version, FEATURE_SPEC)
    signature(examples=tf.constant([], dtype=tf.string))
    return _Loaded(version, path, signature, spec)


def predict_records(active: _Loaded, records: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Run the served signature on records; outputs by name, one value per record (the server and tests)."""
    import tensorflow as tf

    examples = [_example(r, active.spec) for r in records]
    try:
        result = active.signature(examples=tf.constant(examples, dtype=tf.string))
    except tf.errors.InvalidArgumentError as err:  # e.g. a feature the model requires is missing
        raise BadRequest(f"the model rejected the input: {tf_error_summary(err.message)}") from None
    outputs: dict[str, list[float]] = {}
    for key, tensor in result.items():
        values = tensor.numpy().reshape(len(records), -1)
        if values.shape[1] == 1:
            outputs[key] = [float(v) for v in values[:, 0]]
        else:
            for j in range(values.shape[1]):
                outputs[f"{key}_{j}"] = [float(v) for v in values[:, j]]
    return outputs


class RemotePredictionLog:
    """The prediction log on any fsspec location (``s3://…``, ``gs://…``, ``file://…``).

    Object stores cannot append, so each server process buffers its lines and writes them
    as a new object ``<url>/<YYYY-MM-DD>/<host>-<pid>-<n>.jsonl`` every ``flush_seconds``,
    every ``max_lines`` lines, and when it exits. Read the log with ``**/*.jsonl``.
    """

    def __init__(self, url: str, flush_seconds: float = 5.0, max_lines: int = 1000) -> None:
        import atexit
        import socket

        self.url = url.rstrip("/")
        self.flush_seconds = flush_seconds
        self.max_lines = max_lines
        self.pid = os.getpid()
        self._prefix = f"{socket.gethostname()}-{self.pid}"
        self._lines: list[tuple[datetime, str]] = []
        self._count = 0
        self._lock = threading.Lock()
        self._last = time.monotonic()
        threading.Thread(target=self._loop, name="prediction-log", daemon=True).start()
        atexit.register(self.flush)

    def add(self, at: datetime, line: str) -> None:
        with self._lock:
            self._lines.append((at, line))
            full = len(self._lines) >= self.max_lines
        if full:
            self.flush()

    def _loop(self) -> None:
        while True:
            time.sleep(self.flush_seconds)
            self.flush()

    def flush(self) -> None:
        import fsspec

        with self._lock:
            lines, self._lines = self._lines, []
        if not lines:
            return
        by_day: dict[str, list[str]] = {}
        for at, line in lines:
            by_day.setdefault(f"{at:%Y-%m-%d}", []).append(line)
        for day, day_lines in by_day.items():
            self._count += 1
            target = f"{self.url}/{day}/{self._prefix}-{self._count:06d}.jsonl"
            try:
                with fsspec.open(target, "w", auto_mkdir=True) as handle:
                    handle.write("\n".join(day_lines) + "\n")
            except Exception as err:  # noqa: BLE001 - a log outage must not fail predictions
                log.error("could not write %d prediction log lines to %s: %s", len(day_lines), target, err)


class TfxSavedModel:
    """Seldon user model: serves the version ``current.json`` names, swaps versions live.

    :param deployment_dir: the deployment's directory (holds ``current.json``).
    :param deployment: the deployment's name (in responses, metrics and the prediction log).
    :param prediction_log: directory of the prediction log; empty: no log.
    :param max_rows: largest accepted batch.
    :param poll_seconds: how often the pointer file is checked.
    """

    def __init__(self, deployment_dir: str, deployment: str = "", prediction_log: str = "",
                 max_rows: int = DEFAULT_MAX_ROWS, poll_seconds: float = 0.2) -> None:
        self.deployment_dir = deployment_dir
        self.deployment = deployment or os.path.basename(deployment_dir.rstrip("/"))
        self.prediction_log = prediction_log
        self.max_rows = int(max_rows)
        self.poll_seconds = float(poll_seconds)
        self._active: _Loaded | None = None
        self._error: dict[str, Any] | None = None
        self._pending: int | None = None
        self._lock = threading.Lock()
        self._log_lock = threading.Lock()
        self._watcher_pid: int | None = None
        self._seen_pointer: tuple[Any, Any] | None = None
        self._recent: OrderedDict[str, int] = OrderedDict()  # request id -> rows, of the latest predictions

    # -- version management -------------------------------------------------------------
    def _pointer(self) -> dict[str, Any] | None:
        try:
            with open(os.path.join(self.deployment_dir, "current.json")) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def _check_pointer(self) -> None:
        pointer = self._pointer()
        if not pointer:
            return
        key = (pointer.get("version"), pointer.get("path"))
        if key == self._seen_pointer:
            return
        self._seen_pointer = key
        version, path = int(pointer["version"]), str(pointer["path"])
        active = self._active
        if active is not None and (active.version, active.path) == (version, path):
            return  # pointed back at what is served (a failed deploy was undone); its error stays reported
        self._pending = version
        log.info("loading model version %s from %s", version, path)
        try:
            loaded = load_version(version, path)
        except Exception as err:  # noqa: BLE001 - any failure keeps the old version serving
            self._error = {"version": version, "path": path, "message": f"{type(err).__name__}: {err}"[:2000]}
            log.error("model version %s could not be loaded; still serving %s: %s", version,
                      self._active.version if self._active else "nothing", self._error["message"])
        else:
            with self._lock:
                previous, self._active, self._error = self._active, loaded, None
            log.info("now serving model version %s (was %s)", version, previous.version if previous else "none")
        finally:
            self._pending = None

    def _watch(self) -> None:
        while True:
            try:
                self._check_pointer()
            except Exception:  # noqa: BLE001 - the watcher must never die
                log.exception("model watcher")
            time.sleep(self.poll_seconds)

    def load(self) -> None:
        """Called by gunicorn in each worker: load the current version, then watch for new ones."""
        self._check_pointer()
        if self._watcher_pid != os.getpid():
            self._watcher_pid = os.getpid()
            threading.Thread(target=self._watch, name="model-watcher", daemon=True).start()

    @property
    def _remote_log(self) -> RemotePredictionLog:
        if getattr(self, "_remote", None) is None or self._remote.pid != os.getpid():
            self._remote = RemotePredictionLog(self.prediction_log)
        return self._remote

    # -- seldon hooks -------------------------------------------------------------------
    @property
    def version(self) -> int | None:
        """The model version answering now (None before one is loaded)."""
        active = self._active
        return active.version if active is not None else None

    def health_status(self) -> dict[str, Any]:
        from seldon_core.flask_utils import SeldonMicroserviceException

        active = self._active
        status = {"deployment": self.deployment, "version": active.version if active else None,
                  "path": active.path if active else None, "pending": self._pending, "error": self._error,
                  "pid": os.getpid()}
        if active is None:
            raise SeldonMicroserviceException(json.dumps(status), status_code=503, reason="MODEL_NOT_READY")
        return status

    def predict_raw(self, request: Any) -> dict[str, Any]:
        from seldon_core.flask_utils import SeldonMicroserviceException

        started = time.perf_counter()
        active = self._active
        if active is None:
            raise SeldonMicroserviceException("no model version is loaded yet", status_code=503,
                                              reason="MODEL_NOT_READY")
        rid = None
        try:
            rid = request_id(request)
            records = rows_from_request(request, self.max_rows)
            check_types(records, active.spec)
            outputs = predict_records(active, records)
        except BadRequest as err:
            self._log_error(active.version, err.status_code, str(err), started, rid)
            raise SeldonMicroserviceException(str(err), status_code=err.status_code, reason="BAD_REQUEST") from None
        except Exception as err:  # the model failed: a 500, logged for the health check
            self._log_error(active.version, 500, f"{type(err).__name__}: {err}", started, rid)
            raise
        names = sorted(outputs)
        non_finite = 0
        for name in names:  # NaN or an infinity never reaches a JSON body or the log: null, and counted
            outputs[name], count = finite_or_none(outputs[name])
            non_finite += count
        if non_finite:
            log.warning("model version %s gave %d non-finite output value(s): answered as null", active.version,
                        non_finite)
        rows = [[outputs[name][i] for name in names] for i in range(len(records))]
        with self._log_lock:
            self._recent[rid] = len(records)
            if len(self._recent) > RECENT_PREDICTIONS:
                self._recent.popitem(last=False)
        elapsed_ms = (time.perf_counter() - started) * 1000
        self._log(active.version, records, names, rows, elapsed_ms, rid)
        tags: dict[str, Any] = {"model_version": active.version, "deployment": self.deployment}
        version_tag = {"model_version": str(active.version)}
        if non_finite:
            tags["non_finite_outputs"] = non_finite
        return {
            "data": {"names": names, "ndarray": rows},
            "meta": {
                "puid": rid,
                "tags": tags,
                "metrics": [
                    {"type": "COUNTER", "key": "mlops_predictions", "value": len(records), "tags": version_tag},
                    {"type": "COUNTER", "key": "mlops_requests", "value": 1, "tags": version_tag},
                    {"type": "TIMER", "key": "mlops_prediction_ms", "value": elapsed_ms, "tags": version_tag},
                    {"type": "GAUGE", "key": "mlops_model_version", "value": active.version},
                ],
            },
        }

    def _log(self, version: int, records: list[dict[str, Any]], names: list[str], rows: list[list[float]],
             elapsed_ms: float, rid: str | None) -> None:
        self._write_log({"model_version": version, "request_id": rid, "instances": records, "names": names,
                         "predictions": rows, "ms": round(elapsed_ms, 3)})

    def _log_error(self, version: int, status: int, message: str, started: float, rid: str | None) -> None:
        """A failed request: its status and reason, no instances (the health check counts these)."""
        self._write_log({"model_version": version, "request_id": rid, "status": status, "error": message[:500],
                         "ms": round((time.perf_counter() - started) * 1000, 3)})

    def send_feedback_raw(self, feedback: Any) -> Any:
        """Seldon's feedback endpoint: the truth of an earlier prediction, by its request id, appended to the
        prediction log (``"kind": "feedback"``) for the quality check to join; a malformed one is a 400: labels
        not finite, or not one per row of the prediction (when this process answered it, or the request is sent
        back), or more than ``max_rows``."""
        from google.protobuf import json_format
        from seldon_core.flask_utils import SeldonMicroserviceException
        from seldon_core.utils import json_to_seldon_message

        body = feedback if isinstance(feedback, dict) else json_format.MessageToDict(feedback)
        try:
            entry = feedback_entry(body, self._recent, self.max_rows)
        except BadRequest as err:
            raise SeldonMicroserviceException(str(err), status_code=err.status_code, reason="BAD_REQUEST") from None
        self._write_log({"kind": "feedback", **entry})
        return json_to_seldon_message({"meta": {"puid": entry["request_id"],
                                                "tags": {"feedback": "recorded", "labels": len(entry["labels"])}}})

    def _write_log(self, entry: dict[str, Any]) -> None:
        if not self.prediction_log:
            return
        now = datetime.now(timezone.utc)
        # strict JSON: inputs are checked finite and outputs cleaned, so a NaN here is a bug, not a line of the log
        line = json.dumps({"ts": now.isoformat(), "deployment": self.deployment, **entry}, default=str,
                          allow_nan=False)
        if "://" in self.prediction_log:
            self._remote_log.add(now, line)
            return
        path = os.path.join(self.prediction_log, f"{now:%Y-%m-%d}.jsonl")
        try:
            os.makedirs(self.prediction_log, exist_ok=True)
            with self._log_lock:  # one write() per line in append mode: lines of workers never interleave
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, (line + "\n").encode())
                finally:
                    os.close(fd)
        except OSError as err:
            log.error("could not append to the prediction log %s: %s", path, err)
