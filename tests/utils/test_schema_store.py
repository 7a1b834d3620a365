from __future__ import annotations

import threading

import pytest

from airflow_mlops.utils.schema_store import ReferenceSchemaStore


@pytest.fixture
def schema_file(tmp_path):
    path = tmp_path / "inferred" / "schema.pbtxt"
    path.parent.mkdir()
    path.write_text('feature { name: "fare" type: FLOAT }\n')
    return path


def test_empty_store_has_no_current(tmp_path):
    assert ReferenceSchemaStore(tmp_path).current("taxi") is None
    assert ReferenceSchemaStore(tmp_path).versions("taxi") == []


def test_promote_versions_and_current(tmp_path, schema_file):
    store = ReferenceSchemaStore(tmp_path / "schemas")
    v1 = store.promote("taxi", schema_file, run_id="r1")
    assert v1.version == 1 and v1.meta["run_id"] == "r1"
    schema_file.write_text('feature { name: "tips" type: FLOAT }\n')
    v2 = store.promote("taxi", schema_file, run_id="r2")
    assert store.current("taxi").version == 2
    assert store.versions("taxi") == [1, 2]
    # v1 is kept unchanged
    assert "fare" in store.get("taxi", 1).schema_file.read_text()
    assert "tips" in v2.schema_file.read_text()
    assert store.current("other") is None


def test_promote_missing_file_changes_nothing(tmp_path):
    store = ReferenceSchemaStore(tmp_path)
    with pytest.raises(FileNotFoundError):
        store.promote("taxi", tmp_path / "nope.pbtxt")
    assert store.versions("taxi") == []


def test_concurrent_promotions_get_distinct_versions(tmp_path, schema_file):
    store = ReferenceSchemaStore(tmp_path)
    threads = [threading.Thread(target=store.promote, args=("taxi", schema_file)) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.versions("taxi") == [1, 2, 3, 4, 5]
    assert store.current("taxi").version == 5
