"""The checks of Kubernetes objects both controllers share (kubernetes/schema.py), on the real CRDs."""

from __future__ import annotations

import pytest

from airflow_mlops.kubernetes.schema import (
    ManifestError,
    crd_jsonschema,
    crd_version_schema,
    instance_errors,
    label_errors,
    load_crd,
    parse_quantity,
    resource_errors,
)

from tests.conftest import CRD_DIR, needs_crds

CRDS = [("kubeflow.org_mpijobs.yaml", "MPIJob", "v2beta1"),
        ("machinelearning.seldon.io_seldondeployments.yaml", "SeldonDeployment", "v1"),
        ("mlops.seldon.io_models.yaml", "Model", "v1alpha1"),
        ("trainer.kubeflow.org_trainjobs.yaml", "TrainJob", "v1alpha1")]


@needs_crds
@pytest.mark.parametrize("filename, kind, version", CRDS)
def test_any_crd_is_read_from_its_folder_and_converted_once(filename, kind, version):
    path, crd = load_crd(CRD_DIR, filename, kind)
    assert path == CRD_DIR / filename and crd["spec"]["names"]["kind"] == kind
    _, first = crd_jsonschema(CRD_DIR, filename, kind, version)
    _, again = crd_jsonschema(CRD_DIR / filename, filename, kind, version)
    assert first is again  # cached per file version
    errors = instance_errors({"spec": {"no_such_field": 1}}, first)
    assert any("no_such_field" in e for e in errors), errors
    schema = crd_version_schema(CRD_DIR, filename, kind, version)
    schema["mutated"] = True
    assert "mutated" not in crd_version_schema(CRD_DIR, filename, kind, version)  # a copy


@needs_crds
def test_a_missing_file_a_wrong_kind_and_a_wrong_version_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"MPIJob CRD not found at {tmp_path}/x.yaml"):
        load_crd(tmp_path, "x.yaml", "MPIJob")
    with pytest.raises(ManifestError, match="no CustomResourceDefinition of kind MPIJob"):
        load_crd(CRD_DIR, "mlops.seldon.io_models.yaml", "MPIJob")
    with pytest.raises(ManifestError, match=r"CRD has no version 'v9' \(it has: v2beta1\)"):
        crd_jsonschema(CRD_DIR, "kubeflow.org_mpijobs.yaml", "MPIJob", "v9")


def test_labels_and_resources_are_checked_as_the_api_server_does():
    assert label_errors("$.labels", {"team": "ml"}) == []
    assert "label values are strings" in label_errors("$.labels", {"gpu": 1})[0]
    assert parse_quantity("500m") * 2 == 1 and parse_quantity("1Gi") == 2**30 and parse_quantity("lots") is None
    assert resource_errors("r", {"limits": {"nvidia.com/gpu": 2}}) == []
    assert "must equal the limit" in resource_errors("r", {"requests": {"nvidia.com/gpu": 1},
                                                           "limits": {"nvidia.com/gpu": 2}})[0]
