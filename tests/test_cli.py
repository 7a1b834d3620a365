from __future__ import annotations

import json
import re

import pytest

from airflow_mlops import cli
from airflow_mlops.runtimes import specs
from airflow_mlops.runtimes.specs import RuntimeSpec


@pytest.fixture
def cache(tmp_path, clean_mlops_env, monkeypatch):
    lock = tmp_path / "small.txt"
    lock.write_text("six==1.17.0\n")
    monkeypatch.setitem(specs.RUNTIMES, "small", RuntimeSpec(name="small", description="", lock_file=str(lock)))
    clean_mlops_env.setenv("AIRFLOW__MLOPS__RUNTIME_CACHE_DIR", str(tmp_path / "cache"))
    clean_mlops_env.setenv("AIRFLOW__MLOPS__RUNTIME_ISOLATION", "venv")
    clean_mlops_env.setenv("AIRFLOW__MLOPS__STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "cache"


def test_build_list_run_prune(cache, capsys):
    assert cli.main(["runtime", "list", "--json"]) == 0
    before = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert before["small"]["state"] == "not built" and before["tfx"]["state"] == "not built"

    assert cli.main(["runtime", "build", "small"]) == 0
    assert "small: venv runtime at" in capsys.readouterr().out

    assert cli.main(["runtime", "list"]) == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("small"))
    assert "ready" in row and str(cache) in row and ("KB" in row or "MB" in row)

    assert cli.main(["runtime", "run", "small", "runtime.info", '{"packages": ["six"]}']) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{\n"):])["packages"] == {"six": "1.17.0"}


def test_stop_warm_runtimes(cache, capsys):
    assert cli.main(["runtime", "run", "small", "runtime.info"]) == 0  # starts a warm runtime
    capsys.readouterr()
    assert cli.main(["runtime", "stop"]) == 0
    assert re.search(r"stopped [1-9][0-9]* warm runtime\(s\): pids", capsys.readouterr().out)


def test_run_reports_step_failure(cache, capsys):
    assert cli.main(["runtime", "run", "small", "no.such.step"]) == 1
    assert "unknown step 'no.such.step'" in capsys.readouterr().err


def test_build_unknown_runtime(cache, capsys):
    assert cli.main(["runtime", "build", "nope"]) == 1
    assert "unknown runtime 'nope'" in capsys.readouterr().err


def test_schema_list_show_set_reset(tmp_path, clean_mlops_env, capsys):
    from airflow_mlops.utils.schema_store import ReferenceSchemaStore

    clean_mlops_env.setenv("AIRFLOW__MLOPS__STATE_DIR", str(tmp_path / "state"))
    store = ReferenceSchemaStore(tmp_path / "state" / "schemas")
    good = tmp_path / "good.pbtxt"
    good.write_text('feature {\n  name: "fare"\n  type: FLOAT\n}\nfeature {\n  name: "company"\n  type: BYTES\n}\n')
    store.promote("taxi", good)
    store.get("taxi", 1).schema_file.write_text("")  # a 0-byte reference, as a header-only CSV once left

    assert cli.main(["schema", "list"]) == 0
    assert re.search(r"taxi\s+current v1 of \[1\]: no feature: every span would fail against it",
                     capsys.readouterr().out)
    assert cli.main(["schema", "show", "taxi"]) == 1
    assert json.loads(capsys.readouterr().out)["problem"].startswith("no feature")

    empty = tmp_path / "empty.pbtxt"
    empty.write_text("")
    assert cli.main(["schema", "set", "taxi", str(empty)]) == 1
    assert "has no feature: it cannot be a reference schema" in capsys.readouterr().err
    assert cli.main(["schema", "set", "taxi", str(good)]) == 0
    assert "is now v2" in capsys.readouterr().out
    assert cli.main(["schema", "show", "taxi"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["current"] == 2 and shown["features"] == ["fare", "company"]
    assert shown["record"]["set_by"] == "airflow-mlops schema set"

    assert cli.main(["schema", "reset", "taxi"]) == 0
    assert "no longer validates against reference v2" in capsys.readouterr().out
    assert store.current("taxi") is None and store.versions("taxi") == [1, 2]
    assert cli.main(["schema", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"pipeline": "taxi", "current": None, "versions": [1, 2]}]
