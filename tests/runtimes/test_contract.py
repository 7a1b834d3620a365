from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from airflow_mlops.runtime_side import entrypoint
from airflow_mlops.runtimes.contract import (
    CONTRACT_VERSION,
    ContractError,
    RejectedInput,
    StepError,
    StepRequest,
    StepResult,
    write_json_atomic,
)


def test_request_round_trip():
    request = StepRequest(step="tfx.run_node", params={"a": [1, 2]}, context={"run_id": "r1"}, scratch_dir="/tmp/s")
    again = StepRequest.from_dict(json.loads(request.to_json()))
    assert again == request
    assert json.loads(request.to_json())["contract_version"] == CONTRACT_VERSION


@pytest.mark.parametrize(
    "data, message",
    [
        ([], "must be a JSON object"),
        ({"step": "x"}, "contract_version None"),
        ({"step": "x", "contract_version": 99}, "contract_version 99"),
        ({"contract_version": CONTRACT_VERSION}, "no 'step'"),
        ({"contract_version": CONTRACT_VERSION, "step": "x", "params": []}, "must be JSON objects"),
        ({"contract_version": CONTRACT_VERSION, "step": "x", "scratch_dir": "tmp"}, "must be an absolute path"),
    ],
)
def test_bad_requests_are_rejected(data, message):
    with pytest.raises(ContractError, match=message):
        StepRequest.from_dict(data)


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "wrote no result file"),
        ("{not json", "not valid JSON"),
        (json.dumps({"contract_version": CONTRACT_VERSION, "status": "maybe"}), "status 'maybe'"),
        (json.dumps({"contract_version": 0, "status": "succeeded"}), "contract_version 0"),
    ],
)
def test_bad_results_are_rejected(tmp_path, text, message):
    path = tmp_path / "result.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ContractError, match=message):
        StepResult.read(path)


def test_write_json_atomic_replaces_whole_file(tmp_path):
    path = tmp_path / "sub" / "r.json"
    write_json_atomic(path, '{"a": 1}')
    write_json_atomic(path, '{"a": 2}')
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]


def _ok_step(params, context):
    return {"echo": params["x"], "run": context.get("run_id")}


def _domain_error_step(params, context):
    raise StepError("column 'fare' is missing in /data/x.csv", [{"feature": "fare"}], kind="DataError")


def _crashing_step(params, context):
    raise ZeroDivisionError("division by zero")


def _rejecting_step(params, context):
    raise RejectedInput("eval_config /x.pbtxt is not a TFMA EvalConfig")


@pytest.fixture
def fake_steps(monkeypatch):
    monkeypatch.setitem(entrypoint.STEPS, "test.ok", f"{__name__}:_ok_step")
    monkeypatch.setitem(entrypoint.STEPS, "test.domain", f"{__name__}:_domain_error_step")
    monkeypatch.setitem(entrypoint.STEPS, "test.crash", f"{__name__}:_crashing_step")
    monkeypatch.setitem(entrypoint.STEPS, "test.reject", f"{__name__}:_rejecting_step")


def test_execute_success(fake_steps):
    result = entrypoint.execute(StepRequest(step="test.ok", params={"x": 3}, context={"run_id": "r"}))
    assert result.succeeded and result.outputs == {"echo": 3, "run": "r"}


def test_execute_domain_error_keeps_details(fake_steps):
    result = entrypoint.execute(StepRequest(step="test.domain"))
    assert result.status == "failed"
    assert result.error == {
        "type": "DataError",
        "message": "column 'fare' is missing in /data/x.csv",
        "details": [{"feature": "fare"}],
    }


def test_execute_unexpected_error_is_a_failed_result(fake_steps):
    result = entrypoint.execute(StepRequest(step="test.crash"))
    assert result.status == "failed"
    assert result.error["type"] == "ZeroDivisionError"


def test_rejected_input_is_a_non_retryable_failure(fake_steps):
    from airflow_mlops.exceptions import NON_RETRYABLE_ERRORS

    result = entrypoint.execute(StepRequest(step="test.reject"))
    assert result.error == {"type": "InvalidInput", "message": "eval_config /x.pbtxt is not a TFMA EvalConfig",
                            "details": []}
    assert result.error["type"] in NON_RETRYABLE_ERRORS


def test_unknown_step_names_known_steps():
    result = entrypoint.execute(StepRequest(step="no.such.step"))
    assert result.status == "failed"
    assert "unknown step 'no.such.step'" in result.error["message"]
    assert "tfx.run_node" in result.error["message"]


def test_main_writes_result_for_bad_request(tmp_path):
    request, result = tmp_path / "req.json", tmp_path / "res.json"
    request.write_text('{"step": "x", "contract_version": 42}')
    assert entrypoint.main([str(request), str(result)]) == 0
    parsed = StepResult.read(result)
    assert parsed.status == "failed" and "contract_version 42" in parsed.error["message"]


def test_main_end_to_end(tmp_path, fake_steps):
    request, result = tmp_path / "req.json", tmp_path / "res.json"
    request.write_text(StepRequest(step="test.ok", params={"x": "y"}).to_json())
    assert entrypoint.main([str(request), str(result)]) == 0
    assert StepResult.read(result).outputs["echo"] == "y"


def _temp_step(params, context):
    import tempfile

    leaked = tempfile.mkdtemp()  # as TFX's build_ephemeral_package does
    open(f"{leaked}/file", "w").close()
    return {"leaked": leaked}


@pytest.mark.parametrize("given", [True, False], ids=["scratch_dir", "own"])
def test_main_removes_the_steps_temporary_directory(tmp_path, monkeypatch, given):
    monkeypatch.setitem(entrypoint.STEPS, "test.temp", f"{__name__}:_temp_step")
    request, result = tmp_path / "req.json", tmp_path / "res.json"
    scratch = str(tmp_path / "scratch") if given else None
    request.write_text(StepRequest(step="test.temp", scratch_dir=scratch).to_json())
    tmpdir_before = os.environ.get("TMPDIR")
    assert entrypoint.main([str(request), str(result)]) == 0
    leaked = Path(StepResult.read(result).outputs["leaked"])
    if given:
        assert leaked.parent == Path(scratch)
    assert not leaked.parent.exists()
    assert os.environ.get("TMPDIR") == tmpdir_before and tempfile.tempdir != str(leaked.parent)


def test_main_usage():
    assert entrypoint.main(["only-one"]) == 2


def test_directory_lock_makes_changes_wait_for_each_other(tmp_path):
    import threading
    import time

    from airflow_mlops.runtimes.contract import directory_lock

    order = []

    def change(name):
        with directory_lock(tmp_path / "d"):
            order.append(f"{name} in")
            time.sleep(0.2)
            order.append(f"{name} out")

    threads = [threading.Thread(target=change, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert order == ["a in", "a out", "b in", "b out"]  # b waited: one holder at a time
    assert (tmp_path / "d" / ".lock").is_file()
