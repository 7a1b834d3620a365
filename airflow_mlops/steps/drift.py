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

DETECTORS = ("TabularDrift", "KSDrift", "CVMDrift", "ChiSquareDrift", "MMDDrift", "LSDDDrift")
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


def fit_encoding(reference: list[dict[str, Any]], features: dict[str, str]) -> dict[str, Any]:
    """Medians of numeric features and category lists of categorical ones, from the reference."""
    encoding: dict[str, Any] = {}
    for name, kind in features.items():
        if kind == "numeric":
            values = sorted(v for v in (_number(r.get(name)) for r in reference) if v is not None)
            if not values:
                raise StepError(f"reference feature {name!r} has no numeric value")
            encoding[name] = {"kind": "numeric", "median": values[len(values) // 2]}
        elif kind == "categorical":
            seen = sorted({str(r[name]) for r in reference if r.get(name) is not None})
            encoding[name] = {"kind": "categorical", "categories": [*seen, UNSEEN, MISSING]}
        else:
            raise StepError(f"feature {name!r}: kind must be 'numeric' or 'categorical', got {kind!r}")
    return encoding


def encode(records: list[dict[str, Any]], encoding: dict[str, Any]):
    """A float matrix (one column per feature, in ``encoding`` order) and a report of what was imputed."""
    import numpy as np

    names = list(encoding)
    matrix = np.zeros((len(records), len(names)), dtype=np.float32)
    issues: dict[str, dict[str, int]] = {}
    for j, name in enumerate(names):
        spec = encoding[name]
        counts = {"missing": 0, "not_a_number": 0, "unseen_category": 0}
        if spec["kind"] == "numeric":
            for i, record in enumerate(records):
                raw = record.get(name)
                value = _number(raw)
                if value is None:
                    counts["missing" if raw is None else "not_a_number"] += 1
                    value = spec["median"]
                matrix[i, j] = value
        else:
            index = {c: k for k, c in enumerate(spec["categories"])}
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


def detect(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Compare ``params["window"]`` records with ``params["reference"]`` (see the module docstring).

    Other params: ``features`` ({name: numeric|categorical}), ``detector`` (TabularDrift),
    ``p_val`` (0.05), ``correction`` (bonferroni), ``min_window`` (50), ``detector_dir``
    (reuse/save the fitted detector there), ``model_version``.
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
    window: list[dict[str, Any]] = params["window"]
    base = {"detector": kind, "p_val": p_val, "correction": correction, "window_size": len(window),
            "model_version": params.get("model_version"), "features": {}}
    if len(window) < int(params.get("min_window", 50)):
        return {**base, "status": "insufficient_data", "is_drift": False,
                "message": f"{len(window)} requests in the window; at least {params.get('min_window', 50)} are needed"}

    started = time.monotonic()
    alibi_seconds = 0.0
    detector, encoding, reused = None, None, False
    directory = params.get("detector_dir")
    if directory and os.path.exists(os.path.join(directory, "encoding.json")):
        from alibi_detect.saving import load_detector

        with open(os.path.join(directory, "encoding.json")) as handle:
            saved = json.load(handle)
        if saved.get("detector") == kind and saved.get("features") == features and saved.get("p_val") == p_val \
                and saved.get("correction") == correction:
            encoding, detector, reused = saved["encoding"], load_detector(os.path.join(directory, "detector")), True
    if detector is None:
        reference: list[dict[str, Any]] = params["reference"]
        encoding = fit_encoding(reference, features)
        x_ref, _ = encode(reference, encoding)
        fit_started = time.monotonic()
        detector = _make_detector(kind, x_ref, encoding, p_val, correction)
        alibi_seconds = time.monotonic() - fit_started
        base["reference_size"] = len(reference)
        if directory:
            from alibi_detect.saving import save_detector

            os.makedirs(directory, exist_ok=True)
            save_detector(detector, os.path.join(directory, "detector"))
            with open(os.path.join(directory, "encoding.json"), "w") as handle:
                json.dump({"detector": kind, "features": features, "p_val": p_val, "correction": correction,
                           "encoding": encoding}, handle, indent=2)
    x_win, issues = encode(window, encoding)
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
        "data_issues": issues, "detector_reused": reused, "seconds": round(time.monotonic() - started, 3),
        "alibi_seconds": round(alibi_seconds, 3),  # the detector's own construction and predict calls
    }
    if not feature_level:  # MMD/LSDD test the joint distribution: one p-value
        result["p_val_joint"] = float(p_vals)
        result["distance_joint"] = float(distances)
    return result
