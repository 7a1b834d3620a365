"""TFX's penguin module, unchanged, as a multi-class model: blessed, pushed, served, judged on live traffic; then
wrong label and prediction keys named together, with what the model has, the served model untouched (see ``conftest.py``).
"""

from __future__ import annotations

import json
import re

import pytest

from airflow_mlops.utils.model_registry import ModelRegistry
from airflow_mlops.utils.schema_store import ReferenceSchemaStore

from .conftest import assert_failed_once_at, feature_spec, predict, served, tfx_example, train
from ..test_serving import post, post_to

pytestmark = pytest.mark.integration


def test_penguins_multiclass_blessed_pushed_served(state, penguins, tfx_runtime, monkeypatch):
    module = tfx_example(tfx_runtime, "penguin/penguin_utils_keras.py")
    code, log, states = train(state, "penguins", penguins["ready"], module_file=module, model_type="multiclass",
                              label_key="species_xf", eval_threshold=0.6, slice_features="island")
    assert code == 0 and set(states.values()) == {"success"}, (states, log[-6000:])
    assert "never uses Horovod: 2 workers would each train the whole model, so it runs once, on one worker" in log
    assert "the model is BLESSED (sparse_categorical_accuracy >= 0.6)" in log
    assert re.search(r"candidate metrics: .*precision/class_0=\d\.\d{4}.*recall/class_2=", log)
    assert re.search(r"slice island=Biscoe: .*sparse_categorical_accuracy=\d\.\d{4}", log)
    version = ModelRegistry(state["state_dir"] / "models" / "penguins").get("latest")
    assert version.version == 1 and version.metrics["sparse_categorical_accuracy"] >= 0.6
    assert feature_spec(state, "penguins") == {
        "body_mass_g": {"dtype": "int", "required": True, "kind": "numeric"},
        "culmen_depth_mm": {"dtype": "float", "required": True, "kind": "numeric"},
        "culmen_length_mm": {"dtype": "float", "required": True, "kind": "numeric"},
        "flipper_length_mm": {"dtype": "int", "required": True, "kind": "numeric"},
        # TFX's serving signature parses every raw feature but the label, so it needs the island too
        "island": {"dtype": "string", "required": True, "kind": "categorical"},
    }  # the label left out
    penguin = {"culmen_length_mm": 39, "culmen_depth_mm": 19, "flipper_length_mm": 181, "body_mass_g": 3750,
               "island": "Torgersen"}  # integers for the float culmen_* features
    status, body = predict(state, "penguins", penguin)
    assert status == 200, body
    assert len(body["data"]["ndarray"][0]) == 3  # one score per species
    status, body = predict(state, "penguins", {**penguin, "culmen_length_mm": "long"})
    assert status == 400 and "feature 'culmen_length_mm' must be float" in json.dumps(body)
    status, body = predict(state, "penguins", {k: v for k, v in penguin.items() if k != "island"})
    assert status == 400 and "feature 'island' is missing" in json.dumps(body)
    status, body = predict(state, "penguins", {**penguin, "sex": "female"})
    assert status == 400 and "unknown feature 'sex'" in json.dumps(body)
    # data not written for this project, judged on live traffic: the species come back through the feedback
    # endpoint, and the quality check's accuracy equals the accuracy of the answers the test received
    import csv

    from airflow_mlops.operators.quality import ModelQualityOperator
    from airflow_mlops.shared import typed_record

    spec = feature_spec(state, "penguins")
    with open(penguins["ready"] / "span-1" / "data.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if all(r[k] != "" for k in spec)][:120]
    url, hits = served(state, "penguins").url, 0
    for start in range(0, len(rows), 20):
        batch = rows[start:start + 20]
        status, answer = post(url, {"jsonData": {"instances": [typed_record(r, spec) for r in batch]}})
        assert status == 200, answer
        truth = [int(r["species"]) for r in batch]
        hits += sum(int(max(range(3), key=p.__getitem__) == y) for p, y in zip(answer["data"]["ndarray"], truth))
        status, _ = post_to(url, "/api/v1.0/feedback", {"request": {"meta": {"puid": answer["meta"]["puid"]}},
                                                        "truth": {"data": {"ndarray": truth}}})
        assert status == 200
    monkeypatch.setenv("AIRFLOW__MLOPS__STATE_DIR", str(state["state_dir"]))
    quality = ModelQualityOperator(task_id="quality", deployment_name="penguins", model_type="multiclass",
                                   min_labels=100).execute({"run_id": "penguins_quality"})
    served_version = quality["versions"]["1"]
    assert served_version["metric"] == "SparseCategoricalAccuracy" and served_version["samples"] == len(rows)
    assert served_version["value"] == pytest.approx(hits / len(rows))
    assert served_version["blessed_value"] == version.metrics["sparse_categorical_accuracy"]


def test_wrong_label_and_prediction_keys_are_named_with_what_the_model_has(state, penguins, tfx_runtime):
    module = tfx_example(tfx_runtime, "penguin/penguin_utils_keras.py")
    before = served(state, "penguins").version
    schemas = ReferenceSchemaStore(state["state_dir"] / "schemas")
    reference = schemas.versions("penguins")
    # both keys wrong: one run names both, each with what the model has
    code, log, states = train(state, "penguins", penguins["ready"], module_file=module, model_type="multiclass",
                              label_key="species", prediction_key="probabilities", train_steps=20)
    assert code != 0
    assert_failed_once_at(log, states, "Evaluator",
                          "prediction_key 'probabilities' is not an output of the model's 'serving_default' signature; "
                          "its outputs: outputs: set prediction_key to one of them; and "
                          "label_key 'species' is not an output of the model's 'transform_features' signature, where "
                          "TFMA reads the label; its outputs: body_mass_g_xf, culmen_depth_mm_xf, culmen_length_mm_xf, "
                          "flipper_length_mm_xf, species_xf")
    assert served(state, "penguins").version == before == 1  # the served model is untouched
    assert schemas.versions("penguins") == reference == [1]  # and the reference schema too
    assert [v.version for v in ModelRegistry(state["state_dir"] / "models" / "penguins").versions()] == [1]
