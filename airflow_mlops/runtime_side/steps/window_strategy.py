"""The provider's TFX resolver strategies: a training window, and the served model as the Evaluator's
baseline (import TFX: run in the TFX runtime only)."""

from __future__ import annotations

import logging
from typing import Any

from tfx.dsl.components.common import resolver

from airflow_mlops.runtime_side.steps.training_window import VALIDATED, Candidate, choose_window
from airflow_mlops.runtimes.contract import RejectedInput

log = logging.getLogger("airflow_mlops.tfx")


def _int_property(artifact: Any, name: str) -> int | None:
    if artifact.has_custom_property(name):
        return int(artifact.get_int_custom_property(name))
    value = getattr(artifact, name, None) if name == "span" else None
    return int(value) if isinstance(value, int) else None


class TrainingWindowStrategy(resolver.ResolverStrategy):
    """Resolve ``examples`` to the validated spans of the window (see :mod:`.training_window`)."""

    def __init__(self, last_spans: int | None = None, since_span: int | None = None) -> None:
        self.last_spans = last_spans
        self.since_span = since_span

    def resolve_artifacts(self, store: Any, input_dict: dict[str, list[Any]]) -> dict[str, list[Any]] | None:
        artifacts = {a.id: a for a in input_dict.get("examples") or []}
        candidates = [Candidate(a.id, _int_property(a, "span"), _int_property(a, VALIDATED) == 1)
                      for a in artifacts.values()]
        chosen = choose_window(candidates, self.last_spans, self.since_span)
        if not chosen:
            raise RejectedInput(
                f"the training window (last {self.last_spans or 'all'} spans, since span {self.since_span or 0}) "
                f"holds no validated span: the pipeline's ingested spans are "
                f"{sorted({c.span for c in candidates if c.span is not None})}, validated "
                f"{sorted({c.span for c in candidates if c.validated and c.span is not None})}: ingest and "
                "validate the spans first (mlops_ingest), or widen the window")
        log.info("training window: spans %s (examples artifacts %s)", [c.span for c in chosen],
                 [c.artifact_id for c in chosen])
        return {"examples": [artifacts[c.artifact_id] for c in chosen]}


class ArtifactIdStrategy(resolver.ResolverStrategy):
    """Resolve ``model`` to the one artifact ``artifact_id`` (the model a deployment serves) among the
    pipeline's models; one that is not there is refused, naming what to do."""

    def __init__(self, artifact_id: int) -> None:
        self.artifact_id = int(artifact_id)

    def resolve_artifacts(self, store: Any, input_dict: dict[str, list[Any]]) -> dict[str, list[Any]] | None:
        found = [a for a in input_dict.get("model") or [] if a.id == self.artifact_id]
        if not found:
            raise RejectedInput(f"the served model (artifact {self.artifact_id}) is not a model of this pipeline in "
                                "ML Metadata: set the Evaluator's baseline_deployment to a deployment of this "
                                "pipeline, or leave it empty to compare with the latest blessed model")
        log.info("baseline: the served model, artifact %s", self.artifact_id)
        return {"model": found}
