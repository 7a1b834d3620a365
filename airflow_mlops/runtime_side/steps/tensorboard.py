"""Read what a training run wrote for TensorBoard (runs in the TFX runtime, which has tensorboard)."""

from __future__ import annotations

import os
from typing import Any

from airflow_mlops.runtimes.contract import StepError


def scalars(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Every scalar under ``params["logdir"]``: ``{"scalars": {tag: [[step, value], ...]}}``.

    Reads the event files as TensorBoard does (its ``EventAccumulator``), so what this returns
    is what ``tensorboard --logdir`` shows.
    """
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    logdir = params["logdir"]
    if not os.path.isdir(logdir):
        raise StepError(f"logdir {logdir!r} is not a directory")
    accumulator = event_accumulator.EventAccumulator(logdir, size_guidance={event_accumulator.TENSORS: 0,
                                                                             event_accumulator.SCALARS: 0})
    accumulator.Reload()
    tags = accumulator.Tags()
    found: dict[str, list[list[float]]] = {}
    for tag in tags.get("scalars", []):
        found[tag] = [[e.step, float(e.value)] for e in accumulator.Scalars(tag)]
    for tag in tags.get("tensors", []):  # TF 2 writes tf.summary.scalar as tensor events
        values = [[e.step, float(tensor_util.make_ndarray(e.tensor_proto))] for e in accumulator.Tensors(tag)]
        if values:
            found[tag] = values
    return {"logdir": logdir, "scalars": found}
