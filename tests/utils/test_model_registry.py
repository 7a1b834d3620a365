"""The versioned model store: numbering, atomic publication, retries, records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_mlops.utils.model_registry import ModelRegistry, ModelRegistryError


def saved_model(root: Path, name: str, payload: str = "weights") -> Path:
    model = root / name
    (model / "variables").mkdir(parents=True)
    (model / "variables" / "variables.data-00000-of-00001").write_text(payload)
    (model / "saved_model.pb").write_text(f"graph of {name}")
    return model


@pytest.fixture
def registry(tmp_path):
    return ModelRegistry(tmp_path / "models" / "taxi")


def test_versions_are_numbered_and_recorded(registry, tmp_path):
    first, new = registry.publish(saved_model(tmp_path, "a"), model_uri="/p/Trainer/model/6", run_id="r1",
                                  metrics={"auc": 0.95}, model_artifact_id=14)
    assert new and first.version == 1 and first.status == "ready"
    second, _ = registry.publish(saved_model(tmp_path, "b"), model_uri="/p/Trainer/model/9", run_id="r2")
    assert second.version == 2
    assert (registry.base / "2" / "saved_model.pb").read_text() == "graph of b"
    assert [v.version for v in registry.versions()] == [1, 2]
    assert registry.get("latest").version == 2 and registry.get(1).metrics == {"auc": 0.95}
    record = json.loads((registry.base / ".registry" / "1.json").read_text())
    assert record["run_id"] == "r1" and record["model_artifact_id"] == 14 and record["path"] == str(registry.base / "1")
    # TF Serving's layout: only numeric directories next to the hidden record directory
    assert sorted(p.name for p in registry.base.iterdir()) == [".registry", "1", "2"]


def test_publishing_the_same_model_again_reuses_its_version(registry, tmp_path):
    model = saved_model(tmp_path, "a")
    first, _ = registry.publish(model, model_uri="/p/model/6")
    again, new = registry.publish(model, model_uri="/p/model/6")
    assert not new and again.version == first.version
    assert [v.version for v in registry.versions()] == [1]


def test_a_push_that_died_while_copying_is_finished_by_the_retry(registry, tmp_path, monkeypatch):
    import airflow_mlops.utils.model_registry as module

    model = saved_model(tmp_path, "a")

    def crash(source, dest):
        Path(dest).mkdir(parents=True)
        raise OSError("disk full")

    monkeypatch.setattr(module, "copy_saved_model", crash)
    with pytest.raises(OSError, match="disk full"):
        registry.publish(model, model_uri="/p/model/6")
    assert registry.versions() == []  # nothing half-copied is visible as a version
    assert not (registry.base / "1").exists()
    monkeypatch.undo()
    entry, new = registry.publish(model, model_uri="/p/model/6")
    assert entry.version == 1 and not new  # the same version, not a second one
    assert (registry.base / "1" / "saved_model.pb").exists()
    assert not [p for p in registry.base.iterdir() if p.name.startswith(".incoming")]


def test_saved_model_pb_is_copied_last(registry, tmp_path, monkeypatch):
    """Model servers take saved_model.pb as "the model is complete"."""
    import shutil

    seen = []
    real_copytree = shutil.copytree

    def copytree(src, dst, *args, **kwargs):
        result = real_copytree(src, dst, *args, **kwargs)
        seen.append(sorted(p.name for p in Path(dst).rglob("*")))  # what the tree copy brought
        return result

    monkeypatch.setattr(shutil, "copytree", copytree)
    registry.publish(saved_model(tmp_path, "a"), model_uri="/m")
    assert seen[-1] == ["variables", "variables.data-00000-of-00001"]  # everything but saved_model.pb
    assert (registry.base / "1" / "saved_model.pb").exists()


@pytest.mark.parametrize("version, message", [(7, "model version 7 is not in"), ("x", "must be a number or 'latest'")])
def test_unknown_versions(registry, tmp_path, version, message):
    registry.publish(saved_model(tmp_path, "a"), model_uri="/m")
    with pytest.raises(ModelRegistryError, match=message):
        registry.get(version)


def test_latest_of_an_empty_store(registry):
    with pytest.raises(ModelRegistryError, match="no model has been pushed"):
        registry.get("latest")


def test_not_a_saved_model(registry, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelRegistryError, match="no saved_model.pb"):
        registry.publish(tmp_path / "empty", model_uri="/m")
    assert registry.versions() == []


def test_corrupt_record_is_named(registry, tmp_path):
    registry.publish(saved_model(tmp_path, "a"), model_uri="/m")
    (registry.base / ".registry" / "1.json").write_text("{not json")
    with pytest.raises(ModelRegistryError, match=r"unreadable model version record .*1\.json"):
        registry.versions()


def test_annotate_rewrites_a_versions_record(registry, tmp_path):
    registry.publish(saved_model(tmp_path, "a"), model_uri="/p/model/6", run_id="r1", metrics={"auc": 0.9})
    decision = {"approved": False, "by": "alice", "reason": "worse on nights", "at": 1780000000.0}
    entry = registry.annotate(1, approval=decision)
    assert entry.approval == decision and entry.metrics == {"auc": 0.9} and entry.status == "ready"
    record = json.loads((registry.base / ".registry" / "1.json").read_text())
    assert record["approval"] == decision and record["run_id"] == "r1"
    assert registry.get(1).approval == decision
    assert not list(registry.records.glob("*.tmp*"))  # written atomically, nothing left beside it


def test_annotate_refuses_fields_a_record_does_not_have(registry, tmp_path):
    registry.publish(saved_model(tmp_path, "a"), model_uri="/p/model/6")
    before = (registry.base / ".registry" / "1.json").read_text()
    with pytest.raises(ModelRegistryError, match=r"cannot annotate model version 1 with \['approved_by'\]"):
        registry.annotate(1, approval={"approved": True}, approved_by="alice")
    with pytest.raises(ModelRegistryError, match=r"with \['version'\]"):
        registry.annotate(1, version=3)
    assert (registry.base / ".registry" / "1.json").read_text() == before  # nothing written


def test_annotate_refuses_an_unknown_version(registry, tmp_path):
    with pytest.raises(ModelRegistryError, match="model version 1 is not in .*; versions: none"):
        registry.annotate(1, approval={"approved": True})
    registry.publish(saved_model(tmp_path, "a"), model_uri="/p/model/6")
    with pytest.raises(ModelRegistryError, match=r"model version 5 is not in .*; versions: \[1\]"):
        registry.annotate(5, approval={"approved": True})
    assert not (registry.base / ".registry" / "5.json").exists()
