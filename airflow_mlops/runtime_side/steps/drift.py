"""Drift detection with Alibi Detect (runs in the ``drift`` runtime, never in Airflow).

``drift.detect`` compares a reference set of records (the training data of the served model)
with a window of served requests, feature by feature. Records are ``{feature: value}``
dicts; ``features`` says which are ``numeric`` and which ``categorical``. Encoding, in
:func:`encode`, never crashes on dirty data and reports what it met: numeric NaNs and missing
values are imputed with the reference median, categorical values are coded by the
reference's categories, with one code for values the reference never had (``unseen``) and
one for missing values. A window smaller than ``min_window`` is ``insufficient_data``: not
drift, not a failure.

The fitted detector is saved once per ``detector_dir`` (one per model version) with
``alibi_detect.saving.save_detector`` beside the encoding it was fitted with, and loaded
from there next time.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

from airflow_mlops.runtimes.contract import StepError
from airflow_mlops.shared import DETECTORS

CORRECTIONS = ("bonferroni", "fdr")
MISSING = "<missing>"
UNSEEN = "<unseen>"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _frame(records: list[dict[str, Any]], names: list[str]):
    import pandas as pd

    return pd.DataFrame.from_records(records, columns=names) if records else pd.DataFrame(columns=names)


def _clean(column, kind: str) -> bool:
    """Whether a column can take the vectorised path: no missing values, plain numbers where numeric."""
    from pandas.api import types

    if column.isna().any():
        return False
    if kind == "numeric":
        return types.is_numeric_dtype(column.dtype) and not types.is_bool_dtype(column.dtype) \
            and bool(_finite(column).all())
    return True


def _finite(column):
    import numpy as np

    return np.isfinite(column.to_numpy(dtype=np.float64))


def fit_encoding(reference: list[dict[str, Any]], features: dict[str, str],
                 frame=None) -> tuple[dict[str, Any], dict[str, str]]:
    """Medians of numeric features and category lists of categorical ones, from the reference.

    A feature with no usable value in the reference (always empty in the training data) cannot
    be compared: it is left out of the encoding and returned in the second dict, with the reason.
    """
    import numpy as np

    frame = _frame(reference, list(features)) if frame is None else frame
    encoding: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name, kind in features.items():
        column = frame[name]
        if kind == "numeric":
            if _clean(column, kind):
                values = np.sort(column.to_numpy(dtype=np.float64))
            else:
                values = np.sort(np.array([v for v in map(_number, column.tolist()) if v is not None]))
            if not len(values):
                skipped[name] = "no numeric value in the reference"
                continue
            encoding[name] = {"kind": "numeric", "median": float(values[len(values) // 2])}
        elif kind == "categorical":
            present = column[column.notna()] if not _clean(column, kind) else column
            seen = sorted({str(v) for v in present.unique().tolist()})
            if not seen:
                skipped[name] = "no value in the reference"
                continue
            encoding[name] = {"kind": "categorical", "categories": [*seen, UNSEEN, MISSING]}
        else:
            raise StepError(f"feature {name!r}: kind must be 'numeric' or 'categorical', got {kind!r}")
    if not encoding:
        raise StepError(f"no feature has a value in the reference ({len(frame)} records): nothing to compare")
    return encoding, skipped


def encode(records: list[dict[str, Any]], encoding: dict[str, Any], frame=None):
    """A float matrix (one column per feature, in ``encoding`` order) and a report of what was imputed.

    ``frame``: the records as a DataFrame when the caller has one (columns are read by name).

    Clean columns (no missing value; plain finite numbers where numeric) are encoded by
    vectorised pandas/numpy operations; a column with anything else goes value by value
    through the rules of the module docstring, and what was imputed is counted.
    """
    import numpy as np

    names = list(encoding)
    frame = _frame(records, names) if frame is None else frame
    matrix = np.zeros((len(frame), len(names)), dtype=np.float32)
    issues: dict[str, dict[str, int]] = {}
    for j, name in enumerate(names):
        spec = encoding[name]
        column = frame[name]
        counts = {"missing": 0, "not_a_number": 0, "unseen_category": 0}
        if spec["kind"] == "numeric":
            if _clean(column, "numeric"):
                matrix[:, j] = column.to_numpy(dtype=np.float64)
            else:
                for i, record in enumerate(records):
                    raw = record.get(name)
                    value = _number(raw)
                    if value is None:
                        counts["missing" if raw is None else "not_a_number"] += 1
                        value = spec["median"]
                    matrix[i, j] = value
        else:
            index = {c: k for k, c in enumerate(spec["categories"])}
            if _clean(column, "categorical"):
                codes = column.astype(str).map(index)
                unseen = codes.isna()
                counts["unseen_category"] = int(unseen.sum())
                matrix[:, j] = codes.fillna(index[UNSEEN]).to_numpy(dtype=np.float64)
            else:
                for i, record in enumerate(records):
                    raw = record.get(name)
                    if raw is None:
                        counts["missing"] += 1
                        code = index[MISSING]
                    else:
                        code = index.get(str(raw))
                        if code is None:
                            counts["unseen_category"] += 1
                            code = index[UNSEEN]
                    matrix[i, j] = code
        issues[name] = {k: v for k, v in counts.items() if v}
    return matrix, {k: v for k, v in issues.items() if v}


def _make_detector(kind: str, x_ref, encoding: dict[str, Any], p_val: float, correction: str):
    from alibi_detect import cd

    categorical = {j: None for j, spec in enumerate(encoding.values()) if spec["kind"] == "categorical"}
    if kind == "TabularDrift":
        return cd.TabularDrift(x_ref, p_val=p_val, categories_per_feature=categorical, correction=correction)
    if kind == "KSDrift":
        return cd.KSDrift(x_ref, p_val=p_val, correction=correction)
    if kind == "CVMDrift":
        return cd.CVMDrift(x_ref, p_val=p_val, correction=correction)
    if kind == "ChiSquareDrift":
        return cd.ChiSquareDrift(x_ref, p_val=p_val, correction=correction)
    if kind == "MMDDrift":
        return cd.MMDDrift(x_ref, p_val=p_val, backend="pytorch", n_permutations=100)
    if kind == "LSDDDrift":
        return cd.LSDDDrift(x_ref, p_val=p_val, backend="pytorch", n_permutations=100)
    raise StepError(f"detector must be one of {DETECTORS}, got {kind!r}")


def read_records(path: str) -> list[dict[str, Any]]:
    """Records from a JSON-lines file; a line that is not a JSON object is named, with the file."""
    out = []
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as err:
                raise StepError(f"{path}, line {number}: not JSON ({err})") from None
            if not isinstance(record, dict):
                raise StepError(f"{path}, line {number}: expected a JSON object, got {type(record).__name__}")
            out.append(record)
    return out


def _window(params: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The window's records, given inline (``window``) or read from ``prediction_log``."""
    if "window" in params:
        return params["window"], {}
    from airflow_mlops.serving.prediction_log import read_window

    size, minutes = params.get("window_size"), params.get("window_minutes")
    found = read_window(params["prediction_log"], last_n=int(size) if size else None,
                        minutes=float(minutes) if minutes else None, model_version=params.get("model_version"))
    return found["records"], {"window_first": found["first"], "window_last": found["last"],
                              "window_requests": found["requests"], "log_lines_skipped": found["skipped_lines"]}


def plot(x_ref, x_win, encoding: dict[str, Any], names: list[str], path: str, title: str,
         notes: dict[str, str] | None = None) -> str:
    """A PNG of the named features' distributions, reference vs window (matplotlib, no pyplot state).

    ``notes``: a line per feature for its panel's title (e.g. its p-value).
    """
    import numpy as np
    from matplotlib.figure import Figure

    columns = list(encoding)
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    figure = Figure(figsize=(4.2 * cols, 3.2 * rows + 0.4), layout="constrained")
    figure.suptitle(title)
    for k, name in enumerate(names):
        axes = figure.add_subplot(rows, cols, k + 1)
        j, spec = columns.index(name), encoding[name]
        ref, win = x_ref[:, j], x_win[:, j]
        if spec["kind"] == "numeric":
            low, high = np.percentile(np.concatenate([ref, win]), [0.5, 99.5])
            bins = np.linspace(low, high if high > low else low + 1, 40)
            axes.hist(ref, bins=bins, density=True, alpha=0.55, label="reference (training)")
            axes.hist(win, bins=bins, density=True, alpha=0.55, label="window (served)")
        else:
            categories = spec["categories"]
            ref_freq = np.bincount(ref.astype(int), minlength=len(categories)) / max(len(ref), 1)
            win_freq = np.bincount(win.astype(int), minlength=len(categories)) / max(len(win), 1)
            shown = np.argsort(-(ref_freq + win_freq))[:12]
            positions = np.arange(len(shown))
            axes.bar(positions - 0.2, ref_freq[shown], width=0.4, label="reference (training)")
            axes.bar(positions + 0.2, win_freq[shown], width=0.4, label="window (served)")
            axes.set_xticks(positions, [categories[i][:14] for i in shown], rotation=45, ha="right", fontsize=7)
        axes.set_title(f"{name} ({notes[name]})" if notes and name in notes else name, fontsize=10)
        axes.legend(fontsize=7)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    figure.savefig(path, dpi=80)
    return path


def detect(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Compare a window of served records with the reference (see the module docstring).

    The window: ``window`` (records), or ``prediction_log`` (a directory) with ``window_size``
    (last N records) or ``window_minutes`` and ``model_version``. The reference, needed only
    when no fitted detector is saved: ``reference`` (records) or ``reference_file`` (JSON lines).
    Other params: ``features`` ({name: numeric|categorical}), ``detector`` (TabularDrift),
    ``p_val`` (0.05), ``correction`` (bonferroni), ``min_window`` (50), ``detector_dir``
    (reuse/save the fitted detector and the encoded reference there), ``report_png`` (write the
    drifted features' distributions there when drift is found).
    """
    kind = params.get("detector") or "TabularDrift"
    p_val = float(params.get("p_val", 0.05))
    correction = params.get("correction") or "bonferroni"
    if kind not in DETECTORS:
        raise StepError(f"detector must be one of {DETECTORS}, got {kind!r}")
    if correction not in CORRECTIONS:
        raise StepError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    if not 0 < p_val < 1:
        raise StepError(f"p_val must be in (0, 1), got {p_val}")
    features: dict[str, str] = params["features"]
    started = time.monotonic()
    window, window_info = _window(params)
    read_seconds = time.monotonic() - started
    base = {"detector": kind, "p_val": p_val, "correction": correction, "window_size": len(window),
            "model_version": params.get("model_version"), "features": {}, **window_info}
    min_window = int(params.get("min_window", 50))
    if len(window) < min_window:
        return {**base, "status": "insufficient_data", "is_drift": False,
                "message": f"{len(window)} requests in the window; at least {min_window} are needed"}

    alibi_seconds = 0.0
    detector, encoding, reused, x_ref = None, None, False, None
    directory = params.get("detector_dir")
    if directory and os.path.exists(os.path.join(directory, "encoding.json")):
        from alibi_detect.saving import load_detector

        with open(os.path.join(directory, "encoding.json")) as handle:
            saved = json.load(handle)
        if saved.get("detector") == kind and saved.get("features") == features and saved.get("p_val") == p_val \
                and saved.get("correction") == correction:
            load_started = time.monotonic()
            encoding, detector, reused = saved["encoding"], load_detector(os.path.join(directory, "detector")), True
            alibi_seconds += time.monotonic() - load_started
    if detector is None:
        if "reference" in params:
            reference = params["reference"]
        elif params.get("reference_file"):
            read_started = time.monotonic()
            reference = read_records(params["reference_file"])
            read_seconds += time.monotonic() - read_started
        else:
            raise StepError("no fitted detector saved and no reference given (reference or reference_file)")
        frame = _frame(reference, list(features))  # built once: fitting and encoding both read it
        encoding, skipped = fit_encoding(reference, features, frame)
        x_ref, _ = encode(reference, encoding, frame)
        fit_started = time.monotonic()
        detector = _make_detector(kind, x_ref, encoding, p_val, correction)
        alibi_seconds = time.monotonic() - fit_started
        base["reference_size"] = len(reference)
        if directory:
            import numpy as np
            from alibi_detect.saving import save_detector

            os.makedirs(directory, exist_ok=True)
            save_detector(detector, os.path.join(directory, "detector"))
            np.save(os.path.join(directory, "reference.npy"), x_ref)
            with open(os.path.join(directory, "encoding.json"), "w") as handle:
                json.dump({"detector": kind, "features": features, "p_val": p_val, "correction": correction,
                           "encoding": encoding, "skipped": skipped, "reference_size": len(reference)}, handle,
                          indent=2)
    else:
        base["reference_size"] = saved.get("reference_size")
        skipped = saved.get("skipped", {})
    window_frame = _frame(window, list(encoding))  # built once: encoding and the unserved check read it
    unserved = [n for n in encoding if window_frame[n].isna().all()]
    x_win, issues = encode(window, encoding, window_frame)
    predict_started = time.monotonic()
    prediction = detector.predict(x_win)["data"]
    alibi_seconds += time.monotonic() - predict_started
    names = list(encoding)
    per_feature = {}
    p_vals, distances = prediction.get("p_val"), prediction.get("distance")
    feature_level = hasattr(p_vals, "__len__") and len(p_vals) == len(names)
    threshold = float(prediction.get("threshold", p_val))
    for j, name in enumerate(names):
        entry: dict[str, Any] = {"kind": encoding[name]["kind"]}
        if feature_level:
            entry["p_val"] = float(p_vals[j])
            entry["distance"] = float(distances[j])
            entry["drift"] = bool(float(p_vals[j]) < threshold)
        per_feature[name] = entry
    result = {
        **base, "status": "ok", "is_drift": bool(prediction["is_drift"]), "threshold": threshold,
        "features": per_feature, "drifted_features": [n for n, e in per_feature.items() if e.get("drift")],
        "data_issues": issues, "detector_reused": reused,
        "skipped_features": skipped,  # not compared: no value in the training data
        "unserved_features": unserved,  # in the model's features, never in a served request of the window
        "alibi_seconds": round(alibi_seconds, 3),  # Alibi Detect's own calls: construct or load, predict
        "read_seconds": round(read_seconds, 3),  # reading the window (and the reference, when fitting)
    }
    if not feature_level:  # MMD/LSDD test the joint distribution: one p-value
        result["p_val_joint"] = float(p_vals)
        result["distance_joint"] = float(distances)
    saved_ref = os.path.join(directory or "", "reference.npy")
    if result["is_drift"] and params.get("report_png") and (x_ref is not None or os.path.exists(saved_ref)):
        if x_ref is None:
            import numpy as np

            x_ref = np.load(saved_ref)
        shown = result["drifted_features"] or names
        result["report_png"] = plot(
            x_ref, x_win, encoding, shown[:9], params["report_png"],
            f"drift in model version {params.get('model_version')}: {len(window)} served records vs "
            f"{len(x_ref)} training records ({kind})",
            {n: f"p = {e['p_val']:.2g}, distance {e['distance']:.3g}" for n, e in per_feature.items() if "p_val" in e})
    result["seconds"] = round(time.monotonic() - started, 3)
    return result
