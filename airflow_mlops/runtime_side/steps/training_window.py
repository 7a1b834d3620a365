"""Which ingested spans a training run trains on (pure: tested on the host, used in the TFX runtime).

Every run of the training DAG ingests its span with CsvExampleGen; spans that passed validation
are marked in ML Metadata (``mlops_validated``, by :func:`airflow_mlops.runtime_side.steps.mlmd.
mark_validated`). A training window picks, among the pipeline's validated Examples artifacts,
the newest artifact of each span (a span ingested twice counts once) and keeps the last
``last_spans`` spans, or every span from ``since_span`` on (both: the narrower).
"""

from __future__ import annotations

from dataclasses import dataclass

#: The custom property the data gate sets on an Examples artifact it accepted.
VALIDATED = "mlops_validated"


@dataclass(frozen=True)
class Candidate:
    """An Examples artifact of the pipeline: its id, span, and whether validation accepted it."""

    artifact_id: int
    span: int | None
    validated: bool


def choose_window(candidates: list[Candidate], last_spans: int | None, since_span: int | None) -> list[Candidate]:
    """The artifacts to train on, oldest span first: validated ones, the newest of each span, in the window."""
    newest: dict[int, Candidate] = {}
    for candidate in candidates:
        if not candidate.validated or candidate.span is None:
            continue
        kept = newest.get(candidate.span)
        if kept is None or candidate.artifact_id > kept.artifact_id:
            newest[candidate.span] = candidate
    spans = sorted(newest)
    if since_span is not None:
        spans = [s for s in spans if s >= since_span]
    if last_spans is not None:
        spans = spans[-last_spans:]
    return [newest[s] for s in spans]
