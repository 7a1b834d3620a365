"""Which validated spans a training window takes (the strategy's pure part, on the host)."""

from __future__ import annotations

from airflow_mlops.runtime_side.steps.training_window import Candidate, choose_window

C = Candidate


def spans(chosen):
    return [(c.span, c.artifact_id) for c in chosen]


def test_the_newest_artifact_of_each_validated_span_in_the_window():
    candidates = [C(1, 1, True), C(2, 2, False), C(3, 2, True), C(4, 3, True), C(5, 3, True), C(6, 4, False),
                  C(7, None, True)]
    assert spans(choose_window(candidates, None, None)) == [(1, 1), (2, 3), (3, 5)]
    assert spans(choose_window(candidates, 2, None)) == [(2, 3), (3, 5)]  # span 4 was rejected: not counted
    assert spans(choose_window(candidates, None, 2)) == [(2, 3), (3, 5)]
    assert spans(choose_window(candidates, 1, 1)) == [(3, 5)]
    assert choose_window([C(1, 1, False)], 3, None) == []
