"""The runtime-side helpers that need no TFX (they run on the host here; TFX is imported lazily)."""

from __future__ import annotations

import sys

import pytest

from airflow_mlops.runtimes.contract import StepError
from airflow_mlops.runtime_side.steps.tfx_node import diagnose_csv
from airflow_mlops.runtime_side.steps.tfx_pipeline import detect_input_pattern, resolve_input_base, topological_nodes


def test_importing_step_modules_imports_no_ml_library():
    assert not any(m.split(".")[0] in ("tfx", "tensorflow", "ml_metadata") for m in sys.modules)


@pytest.mark.parametrize(
    "layout, expected",
    [
        (["data.csv"], "*"),
        (["span-1/data.csv", "span-2/data.csv"], "span-{SPAN}/*"),
        (["span-1/version-1/a.csv", "span-1/version-2/a.csv", "span-2/version-1/a.csv"], "span-{SPAN}/version-{VERSION}/*"),
        (["span-1/version-1/a.csv", "span-2/a.csv"], "span-{SPAN}/*"),
        (["spanish/data.csv", "x.csv"], "*"),
    ],
)
def test_detect_input_pattern(tmp_path, layout, expected):
    for rel in layout:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("a,b\n1,2\n")
    assert detect_input_pattern(str(tmp_path)) == expected


def test_detect_input_pattern_needs_a_directory(tmp_path):
    with pytest.raises(StepError, match="is not a directory"):
        detect_input_pattern(str(tmp_path / "nope"))


def test_resolve_input_base_passes_paths_through():
    assert resolve_input_base("/data/x") == "/data/x"
    with pytest.raises(StepError, match="unknown sample dataset"):
        resolve_input_base("sample://nope")


def _node(node_id, *inputs):
    return {"id": node_id, "component": "X", "inputs": {f"i{n}": {"node": i, "output": "o"} for n, i in enumerate(inputs)}}


def test_topological_nodes_orders_producers_first():
    ordered = topological_nodes([_node("ev", "sg", "sc"), _node("sc", "sg"), _node("sg", "eg"), _node("eg")])
    assert [n["id"] for n in ordered] == ["eg", "sg", "sc", "ev"]


@pytest.mark.parametrize(
    "nodes, message",
    [
        ([_node("a", "b"), _node("b", "a")], "cycle"),
        ([_node("a", "missing")], "'missing', which is not in the pipeline"),
        ([_node("a"), _node("a")], "same id"),
    ],
)
def test_topological_nodes_rejects_bad_graphs(nodes, message):
    with pytest.raises(StepError, match=message):
        topological_nodes(nodes)


def test_diagnose_csv_names_file_and_line(tmp_path):
    (tmp_path / "span-1").mkdir()
    good = tmp_path / "span-1" / "ok.csv"
    good.write_text("a,b,c\n1,2,3\n")
    bad = tmp_path / "bad.csv"
    bad.write_text('a,b,c\n1,2,3\n"quoted, comma",2,3\n1,2\n1,2,3,4\n')
    (tmp_path / "empty.csv").write_text("")
    problems = diagnose_csv(str(tmp_path))
    assert {"file": str(bad), "line": 4, "problem": "2 fields, the header has 3"} in problems
    assert {"file": str(bad), "line": 5, "problem": "4 fields, the header has 3"} in problems
    assert {"file": str(tmp_path / "empty.csv"), "line": 1, "problem": "empty file (no header)"} in problems
    assert not [p for p in problems if p["file"] == str(good)]
