"""Steps in the serving runtime: call a SavedModel directly, or a deployment through SeldonClient."""

from __future__ import annotations

import time
from typing import Any

from airflow_mlops.runtimes.contract import StepError


def direct_predict(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Predict ``params["records"]`` with the SavedModel at ``params["model_path"]`` in this process.

    The reference the deployed server must match. With ``repeat`` > 0, also time that many
    calls on the first ``batch`` records (latency of the bare model, for ``bench/``).
    """
    from airflow_mlops.runtime_side.model_server.model import BadRequest, check_types, load_version, predict_records

    loaded = load_version(0, params["model_path"])
    records = params["records"]
    try:
        check_types(records, loaded.spec)
        outputs = predict_records(loaded, records)  # the same code the server runs
    except BadRequest as err:
        raise StepError(str(err)) from None
    timings = []
    for _ in range(int(params.get("repeat", 0))):
        batch = records[: int(params.get("batch", 1))]
        started = time.perf_counter()
        predict_records(loaded, batch)
        timings.append((time.perf_counter() - started) * 1000)
    return {"outputs": outputs, "timings_ms": timings}


def client_predict(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Send ``records`` to the deployment at ``params["endpoint"]`` (host:port) with seldon-core's SeldonClient."""
    import numpy as np
    from seldon_core.seldon_client import SeldonClient
    from seldon_core.utils import seldon_message_to_json

    client = SeldonClient(microservice_endpoint=params["endpoint"])
    records = params["records"]
    if params.get("form", "ndarray") == "ndarray":
        names = params["names"]
        data = np.array([[r.get(n) for n in names] for r in records], dtype=object)
        result = client.microservice(method="predict", data=data, names=names, payload_type="ndarray")
    else:
        result = client.microservice(method="predict", json_data={"instances": records})
    response = seldon_message_to_json(result.response) if result.response is not None else None
    return {"success": bool(result.success), "msg": str(result.msg), "response": response}
