"""Schema policy applied when an inferred schema becomes a pipeline's reference (TFX runtime)."""

from __future__ import annotations

import os
from typing import Any

from airflow_mlops.runtimes.contract import StepError


def relax_schema(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Copy ``schema_file`` to ``dest``, tolerating rare unseen categorical values.

    A schema inferred from one span lists only the categories that span happened to
    contain; TFDV then flags any new value, however rare. With
    ``max_unseen_category_fraction`` = f, each feature with a string domain gets
    ``distribution_constraints.min_domain_mass = 1 - f``: unseen values are an anomaly only
    when they make up more than f of the examples (0 keeps the schema strict).
    """
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    fraction = float(params.get("max_unseen_category_fraction", 0.0))
    if not 0.0 <= fraction < 1.0:
        raise StepError(f"max_unseen_category_fraction must be in [0, 1), got {fraction}")
    source, dest = params["schema_file"], params["dest"]
    try:
        with open(source) as handle:
            schema = text_format.Parse(handle.read(), schema_pb2.Schema())
    except (OSError, text_format.ParseError) as err:
        raise StepError(f"cannot read schema {source}: {err}") from None
    relaxed = []
    if fraction > 0:
        for feature in schema.feature:
            if feature.WhichOneof("domain_info") in ("domain", "string_domain"):
                feature.distribution_constraints.min_domain_mass = 1.0 - fraction
                relaxed.append(feature.name)
    tmp = f"{dest}.tmp"
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    with open(tmp, "w") as handle:
        handle.write(text_format.MessageToString(schema))
    os.replace(tmp, dest)
    return {"schema_file": dest, "relaxed_features": relaxed, "max_unseen_category_fraction": fraction}
