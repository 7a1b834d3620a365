"""SeldonDeployment manifests: specs, the builder, CRD + webhook validation, rollouts.

The CRD is read from ``../shared/k8s-crds/`` next to the repository (never copied in);
tests that need it are skipped where that folder is absent.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from airflow_mlops.serving.manifest import (
    API_VERSION,
    GRAPH_NODE,
    KIND,
    MANAGED_BY_LABEL,
    MODEL_VERSION_LABEL,
    DeploymentSpec,
    ManifestError,
    PredictorSpec,
    build_manifest,
    canary,
    crd_schema,
    deployment_state,
    is_ready,
    openapi_to_jsonschema,
    promote,
    restore_patch,
    schema_errors,
    shadow,
    to_yaml,
    validate_manifest,
    webhook_errors,
)


GPU_RESOURCES = {
    "requests": {"cpu": "500m", "memory": "2Gi"},
    "limits": {"cpu": 2, "memory": "4Gi", "nvidia.com/gpu": 1},
}



@pytest.fixture
def stable() -> PredictorSpec:
    return PredictorSpec("v3", 3, "gs://models/taxi")


@pytest.fixture
def candidate() -> PredictorSpec:
    return PredictorSpec("v4", 4, "gs://models/taxi", replicas=2)


@pytest.fixture
def custom_gpu() -> PredictorSpec:
    return PredictorSpec(
        "v5",
        5,
        "s3://models/taxi/5",
        implementation=None,
        image="ghcr.io/example/model-server:1.2",
        resources=GPU_RESOURCES,
        env={"LOG_LEVEL": "debug"},
        labels={"team": "pricing"},
    )


@pytest.fixture
def deployed(stable: PredictorSpec) -> DeploymentSpec:
    return DeploymentSpec("taxi", "serving", [stable])


def _predictor(manifest: dict, name: str) -> dict:
    return next(p for p in manifest["spec"]["predictors"] if p["name"] == name)


def _container(predictor: dict) -> dict:
    (component,) = predictor["componentSpecs"]
    (container,) = component["spec"]["containers"]
    return container


# ----------------------------------------------------------- every built manifest

BUILT: dict[str, Callable[..., DeploymentSpec]] = {
    "prepackaged": lambda d, c, g: d,
    "custom-image-gpu": lambda d, c, g: DeploymentSpec("taxi", "serving", [g]),
    "canary-90-10": lambda d, c, g: canary(d, c, 10),
    "canary-custom-image": lambda d, c, g: canary(d, g, 25),
    "shadow": lambda d, c, g: shadow(d, c),
    "canary-with-shadow": lambda d, c, g: shadow(canary(d, c, 10), g),
    "promoted": lambda d, c, g: promote(canary(d, c, 10), "v4"),
    "tensorflow-protocol": lambda d, c, g: DeploymentSpec(
        "taxi",
        "serving",
        [c],
        protocol="tensorflow",
        annotations={"seldon.io/rest-timeout": "10000"},
        labels={"team": "pricing"},
    ),
}


@pytest.fixture(params=sorted(BUILT))
def built(request, deployed, candidate, custom_gpu) -> dict:
    return build_manifest(BUILT[request.param](deployed, candidate, custom_gpu))


def test_built_manifest_passes_crd_and_webhook(built: dict, crd: Path) -> None:
    validate_manifest(built, crd)
    validate_manifest(built, crd.parent)  # the folder works as well
    assert webhook_errors(built) == []


def test_built_manifest_labels_every_predictor(built: dict) -> None:
    assert built["apiVersion"] == API_VERSION == "machinelearning.seldon.io/v1"
    assert built["kind"] == KIND == "SeldonDeployment"
    assert built["metadata"]["labels"][MANAGED_BY_LABEL] == "airflow-mlops"
    for predictor in built["spec"]["predictors"]:
        labels = predictor["labels"]
        assert labels[MANAGED_BY_LABEL] == "airflow-mlops"
        assert labels[MODEL_VERSION_LABEL] == predictor["name"].lstrip("v")
        assert isinstance(labels[MODEL_VERSION_LABEL], str)
        assert predictor["graph"]["name"] == GRAPH_NODE
        assert predictor["graph"]["type"] == "MODEL"


def test_built_manifest_yaml_round_trips(built: dict) -> None:
    text = to_yaml(built)
    assert text.startswith(
        "apiVersion: machinelearning.seldon.io/v1\nkind: SeldonDeployment"
    )
    assert yaml.safe_load(text) == built
    for predictor in built["spec"]["predictors"]:  # the version label stays a string
        version = predictor["labels"][MODEL_VERSION_LABEL]
        assert f"mlops.airflow/model-version: '{version}'" in text


def test_prepackaged_predictor(deployed: DeploymentSpec) -> None:
    manifest = build_manifest(deployed)
    assert manifest["metadata"] == {
        "name": "taxi",
        "namespace": "serving",
        "labels": {MANAGED_BY_LABEL: "airflow-mlops"},
    }
    assert manifest["spec"]["protocol"] == "seldon"
    (predictor,) = manifest["spec"]["predictors"]
    assert predictor == {
        "name": "v3",
        "replicas": 1,
        "traffic": 100,
        "labels": {MANAGED_BY_LABEL: "airflow-mlops", MODEL_VERSION_LABEL: "3"},
        "graph": {
            "name": "model",
            "type": "MODEL",
            "implementation": "TENSORFLOW_SERVER",
            "modelUri": "gs://models/taxi",
        },
    }


def test_custom_image_predictor(custom_gpu: PredictorSpec) -> None:
    manifest = build_manifest(DeploymentSpec("taxi", "serving", [custom_gpu]))
    predictor = _predictor(manifest, "v5")
    assert predictor["graph"] == {"name": "model", "type": "MODEL"}
    assert predictor["labels"]["team"] == "pricing"
    container = _container(predictor)
    assert container["name"] == predictor["graph"]["name"] == "model"
    assert container["image"] == "ghcr.io/example/model-server:1.2"
    assert container["env"] == [
        {"name": "MODEL_URI", "value": "s3://models/taxi/5"},
        {"name": "MODEL_VERSION", "value": "5"},
        {"name": "LOG_LEVEL", "value": "debug"},
    ]
    assert container["resources"] == GPU_RESOURCES
    assert container["resources"] is not GPU_RESOURCES


def test_prepackaged_with_resources_gets_a_container_named_after_the_node() -> None:
    spec = DeploymentSpec(
        "taxi",
        "serving",
        [
            PredictorSpec(
                "v3", 3, "pvc://models/taxi", resources={"limits": {"memory": "1Gi"}}
            )
        ],
    )
    predictor = build_manifest(spec)["spec"]["predictors"][0]
    assert _container(predictor) == {
        "name": "model",
        "resources": {"limits": {"memory": "1Gi"}},
    }
    assert predictor["graph"]["modelUri"] == "pvc://models/taxi"


def test_annotations_and_labels_go_to_metadata() -> None:
    spec = DeploymentSpec(
        "taxi",
        "serving",
        [PredictorSpec("v3", 3, "gs://m/t")],
        annotations={"seldon.io/rest-timeout": "10000"},
        labels={"team": "pricing"},
    )
    metadata = build_manifest(spec)["metadata"]
    assert metadata["annotations"] == {"seldon.io/rest-timeout": "10000"}
    assert metadata["labels"] == {MANAGED_BY_LABEL: "airflow-mlops", "team": "pricing"}


def test_build_revalidates_a_spec_mutated_after_construction(deployed) -> None:
    deployed.predictors.append(PredictorSpec("v4", 4, "gs://m/t", traffic=10))
    with pytest.raises(ManifestError, match=r"sum to 100.*v3=100 \+ v4=10 = 110"):
        build_manifest(deployed)


# ----------------------------------------------------------- hand-broken manifests


def _set(path: str, value: object) -> Callable[[dict], None]:
    def mutate(manifest: dict) -> None:
        *parents, last = path.split(".")
        node = manifest
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return mutate


_DELETE = object()


def _two_shadows(m: dict) -> None:
    extra = copy.deepcopy(m["spec"]["predictors"][1])
    extra["name"] = "v5"
    m["spec"]["predictors"].append(extra)


def _shadow_only(m: dict) -> None:
    m["spec"]["predictors"] = [m["spec"]["predictors"][1]]


def _duplicate(m: dict) -> None:
    m["spec"]["predictors"][1]["name"] = "v3"


def _gpu_word(m: dict) -> None:
    m["spec"]["predictors"][1]["componentSpecs"] = [
        {
            "spec": {
                "containers": [
                    {
                        "name": "model",
                        "resources": {"limits": {"nvidia.com/gpu": "one"}},
                    }
                ]
            }
        }
    ]


def _timestamp_number(m: dict) -> None:
    m["spec"]["predictors"][1]["componentSpecs"] = [
        {
            "metadata": {"creationTimestamp": 5},
            "spec": {"containers": [{"name": "model"}]},
        }
    ]


BROKEN = {
    # name: (base, mutation, path in the message, text in the message)
    "replicas-as-string": (
        "canary",
        _set("spec.predictors.0.replicas", "2"),
        "$.spec.predictors[0].replicas",
        "'2' is not of type 'integer'",
    ),
    "traffic-80-10": (
        "canary",
        _set("spec.predictors.0.traffic", 80),
        "$.spec.predictors",
        "v3=80 + v4=10 = 90",
    ),
    "two-shadows": (
        "shadow",
        _two_shadows,
        "$.spec.predictors",
        "at most one predictor may be a shadow, found 2",
    ),
    "shadow-only": (
        "shadow",
        _shadow_only,
        "$.spec.predictors[0].shadow",
        "a shadow cannot be the only predictor",
    ),
    "missing-graph-name": (
        "canary",
        _set("spec.predictors.1.graph.name", _DELETE),
        "$.spec.predictors[1].graph",
        "'name' is a required property",
    ),
    "missing-graph": (
        "canary",
        _set("spec.predictors.0.graph", _DELETE),
        "$.spec.predictors[0]",
        "'graph' is a required property",
    ),
    "duplicate-names": (
        "canary",
        _duplicate,
        "$.spec.predictors[1].name",
        "duplicate predictor name 'v3'",
    ),
    "misspelt-field": (
        "canary",
        _set("spec.predictors.1.replica", 3),
        "$.spec.predictors[1]",
        "'replica' was unexpected",
    ),
    "replicas-too-big-for-int32": (
        "single",
        _set("spec.predictors.0.replicas", 2**31),
        "$.spec.predictors[0].replicas",
        "is not a 'int32'",
    ),
    "gpu-not-a-quantity": (
        "canary",
        _gpu_word,
        "$.spec.predictors[1].componentSpecs[0].spec.containers[0]"
        ".resources.limits['nvidia.com/gpu']",
        "'one' does not match",
    ),
    "timestamp-not-a-string": (
        "canary",
        _timestamp_number,
        "$.spec.predictors[1].componentSpecs[0].metadata.creationTimestamp",
        "5 is not of type 'string', 'null'",
    ),
    "predictors-not-a-list": (
        "single",
        _set("spec.predictors", {"name": "v3"}),
        "$.spec.predictors",
        "is not of type 'array'",
    ),
    "no-predictors": (
        "single",
        _set("spec", {"protocol": "seldon"}),
        "$.spec",
        "'predictors' is a required property",
    ),
    "wrong-api-version": (
        "single",
        _set("apiVersion", "machinelearning.seldon.io/v1alpha2"),
        "$.apiVersion",
        "must be machinelearning.seldon.io/v1",
    ),
    "wrong-kind": (
        "single",
        _set("kind", "Deployment"),
        "$.kind",
        "must be SeldonDeployment",
    ),
    "bad-name": (
        "single",
        _set("metadata.name", "Taxi_Model"),
        "$.metadata.name",
        "not a DNS-1123 label",
    ),
}


@pytest.fixture
def bases(deployed, candidate) -> dict[str, dict]:
    return {
        "single": build_manifest(deployed),
        "canary": build_manifest(canary(deployed, candidate, 10)),
        "shadow": build_manifest(shadow(deployed, candidate)),
    }


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_manifest_is_rejected_naming_the_path(case, bases, crd) -> None:
    base, mutate, path, text = BROKEN[case]
    manifest = copy.deepcopy(bases[base])
    validate_manifest(manifest, crd)  # the base is fine
    mutate(manifest)
    with pytest.raises(ManifestError) as caught:
        validate_manifest(manifest, crd)
    matching = [
        e for e in caught.value.errors if e.startswith(f"{path}: ") and text in e
    ]
    assert matching, caught.value.errors
    assert path in str(caught.value)


@pytest.mark.parametrize(
    "case",
    [
        "replicas-as-string",
        "gpu-not-a-quantity",
        "missing-graph-name",
        "misspelt-field",
        "timestamp-not-a-string",
    ],
)
def test_only_the_crd_schema_catches(case, bases, crd) -> None:
    """Neither the webhook rules nor the envelope see these: the CRD schema must."""
    base, mutate, path, _ = BROKEN[case]
    manifest = copy.deepcopy(bases[base])
    mutate(manifest)
    assert webhook_errors(manifest) == []
    with pytest.raises(ManifestError) as caught:
        validate_manifest(manifest, crd)
    assert all(e.startswith("$.spec.predictors[") for e in caught.value.errors)
    assert schema_errors(manifest, crd_schema(crd)) == caught.value.errors
    assert schema_errors(manifest, {"type": "object"}) == []  # no CRD, no error


def test_every_error_is_listed(bases, crd) -> None:
    manifest = copy.deepcopy(bases["canary"])
    manifest["spec"]["predictors"][0]["replicas"] = "2"
    manifest["spec"]["predictors"][1]["traffic"] = 20
    del manifest["spec"]["predictors"][1]["graph"]["name"]
    with pytest.raises(ManifestError) as caught:
        validate_manifest(manifest, crd)
    assert caught.value.errors == [
        "$.spec.predictors[0].replicas: '2' is not of type 'integer'",
        "$.spec.predictors[1].graph: 'name' is a required property",
        "$.spec.predictors: traffic of the non-shadow predictors must sum to 100, "
        "got v3=90 + v4=20 = 110",
    ]
    assert "(3 problems)" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_unknown_fields_pass_when_not_strict(bases, crd) -> None:
    manifest = copy.deepcopy(bases["single"])
    manifest["spec"]["predictors"][0]["replica"] = 3
    validate_manifest(manifest, crd, strict=False)
    with pytest.raises(ManifestError, match="'replica' was unexpected"):
        validate_manifest(manifest, crd)


def test_nullable_creation_timestamp_is_accepted(bases, crd) -> None:
    """Go-serialised pod templates carry ``creationTimestamp: null`` (CRD: nullable)."""
    manifest = copy.deepcopy(bases["single"])
    manifest["spec"]["predictors"][0]["componentSpecs"] = [
        {
            "metadata": {"creationTimestamp": None},
            "spec": {
                "containers": [
                    {
                        "name": "model",
                        "resources": {"requests": {"cpu": 1, "memory": "512Mi"}},
                    }
                ]
            },
        }
    ]
    validate_manifest(manifest, crd)


def test_int_or_string_quantities_in_the_crd(bases, crd) -> None:
    manifest = copy.deepcopy(bases["single"])
    limits: dict = {"cpu": 2, "memory": "1Gi", "nvidia.com/gpu": "1"}
    manifest["spec"]["predictors"][0]["componentSpecs"] = [
        {"spec": {"containers": [{"name": "model", "resources": {"limits": limits}}]}}
    ]
    validate_manifest(manifest, crd)
    limits["cpu"] = True
    with pytest.raises(
        ManifestError,
        match=r"limits\.cpu: True is not of type 'integer', "
        r"'string'",
    ):
        validate_manifest(manifest, crd)


def test_missing_crd_raises_file_not_found(tmp_path, deployed) -> None:
    with pytest.raises(FileNotFoundError, match="CRD not found"):
        validate_manifest(build_manifest(deployed), tmp_path / "absent.yaml")


def test_unknown_crd_version(crd, deployed) -> None:
    with pytest.raises(ManifestError, match=r"no version 'v2'.*v1, v1alpha2, v1alpha3"):
        validate_manifest(build_manifest(deployed), crd, version="v2")


# ------------------------------------------------------------------ webhook rules


def _predictors(*rows: tuple[str, int | None, bool]) -> dict:
    predictors = []
    for name, traffic, is_shadow in rows:
        p: dict = {"name": name, "graph": {"name": "model"}}
        if traffic is not None:
            p["traffic"] = traffic
        if is_shadow:
            p["shadow"] = True
        predictors.append(p)
    return {"spec": {"predictors": predictors}}


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([("a", 100, False)], []),
        ([("a", None, False)], []),  # a lone predictor's traffic is not checked
        ([("a", 90, False), ("b", 10, False)], []),
        ([("a", 100, False), ("s", 0, True)], []),
        ([("a", 100, False), ("s", None, True)], []),
        ([("a", 50, False), ("b", 30, False), ("c", 20, False)], []),
        ([("a", 80, False), ("b", 10, False)], ["sum to 100, got a=80 + b=10 = 90"]),
        ([("a", 90, False), ("b", None, False)], ["got a=90 + b=0 = 90"]),
        (
            [("a", 100, False), ("s", 0, True), ("t", 0, True)],
            ["at most one predictor"],
        ),
        (
            [("s", 0, True)],
            ["$.spec.predictors[0].shadow: a shadow cannot be the only"],
        ),
        (
            [("a", 90, False), ("a", 10, False)],
            ["$.spec.predictors[1].name: duplicate"],
        ),
    ],
)
def test_webhook_rules(rows, expected) -> None:
    errors = webhook_errors(_predictors(*rows))
    assert len(errors) == len(expected), errors
    for error, text in zip(errors, expected, strict=True):
        assert text in error
        assert error.startswith("$.spec.predictors")


@pytest.mark.parametrize(
    "manifest",
    [
        {},
        {"spec": None},
        {"spec": {"predictors": "x"}},
        {"spec": {"predictors": [None, 3]}},
    ],
)
def test_webhook_rules_skip_malformed_parts(manifest) -> None:
    assert webhook_errors(manifest) == []


# ------------------------------------------------------------------ schema translation


@pytest.mark.parametrize(
    ("schema", "good", "bad"),
    [
        (
            {
                "x-kubernetes-int-or-string": True,
                "anyOf": [{"type": "integer"}, {"type": "string"}],
            },
            [1, "1", "50%"],
            [True, 1.5, None, []],
        ),
        ({"x-kubernetes-int-or-string": True}, [1, "x"], [None, {}]),
        ({"type": "string", "nullable": True}, ["x", None], [1]),
        ({"type": "string", "enum": ["a"], "nullable": True}, ["a", None], ["b"]),
        (
            {
                "x-kubernetes-int-or-string": True,
                "nullable": True,
                "anyOf": [{"type": "integer"}, {"type": "string"}],
            },
            [1, "1", None],
            [False],
        ),
        ({"type": "integer", "minimum": 0, "exclusiveMinimum": True}, [1], [0, -1]),
        ({"type": "integer", "format": "int32"}, [2**31 - 1, -(2**31)], [2**31]),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}},
            [{"a": "x"}],
            [{"b": 1}, {"a": 1}],
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "x-kubernetes-preserve-unknown-fields": True,
            },
            [{"a": "x", "b": 1}],
            [{"a": 1}],
        ),
        (
            {"type": "object", "additionalProperties": {"type": "string"}},
            [{"k": "v"}],
            [{"k": 1}],
        ),
        (
            {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "x-kubernetes-map-type": "atomic"},
            },
            [[{"name": "a"}, {"name": "a"}]],
            [[1]],
        ),
        (
            {"type": "string", "x-kubernetes-validations": [{"rule": "self == 'a'"}]},
            ["b"],
            [1],
        ),
        (
            {"nullable": True, "anyOf": [{"type": "integer"}, {"type": "boolean"}]},
            [1, True, None],
            ["x"],
        ),
    ],
)
def test_openapi_translation(schema, good, bad) -> None:
    for value in good:
        assert schema_errors(value, schema) == [], value
    for value in bad:
        assert schema_errors(value, schema), value


def test_int_or_string_reports_one_error() -> None:
    schema = {
        "x-kubernetes-int-or-string": True,
        "pattern": "^[0-9]+%?$",
        "anyOf": [{"type": "integer"}, {"type": "string"}],
    }
    assert schema_errors(True, schema) == ["$: True is not of type 'integer', 'string'"]
    assert schema_errors("5x", schema) == ["$: '5x' does not match '^[0-9]+%?$'"]
    assert schema_errors(-7, schema) == []  # a pattern constrains strings only


def test_translation_drops_kubernetes_keys_and_keeps_the_input() -> None:
    schema = {
        "type": "object",
        "x-kubernetes-map-type": "atomic",
        "properties": {"n": {"type": "string", "nullable": True}},
    }
    before = copy.deepcopy(schema)
    out = openapi_to_jsonschema(schema)
    assert out == {
        "type": "object",
        "additionalProperties": False,
        "properties": {"n": {"type": ["string", "null"]}},
    }
    assert schema == before
    assert "additionalProperties" not in openapi_to_jsonschema(schema, strict=False)


def test_crd_has_the_fields_the_builder_relies_on(crd) -> None:
    schema = crd_schema(crd)
    predictor = schema["properties"]["spec"]["properties"]["predictors"]["items"]
    assert set(predictor["required"]) == {"graph", "name"}
    assert {"traffic", "shadow", "replicas", "labels", "componentSpecs"} <= set(
        predictor["properties"]
    )
    assert {"implementation", "modelUri", "type"} <= set(
        predictor["properties"]["graph"]["properties"]
    )
    schema["mutated"] = True
    assert "mutated" not in crd_schema(crd)  # a copy each time


# ------------------------------------------------------------------ spec validation


@pytest.mark.parametrize(
    ("kwargs", "field", "text"),
    [
        ({"name": "Model_A"}, "name", "not a DNS-1123 label"),
        ({"name": "a" * 64}, "name", "at most 63 characters"),
        ({"name": ""}, "name", "non-empty"),
        ({"traffic": 150}, "traffic", "0..100, got 150"),
        ({"traffic": -1}, "traffic", "0..100, got -1"),
        ({"traffic": True}, "traffic", "got True"),
        ({"replicas": -1}, "replicas", ">= 0, got -1"),
        ({"replicas": "2"}, "replicas", "got '2'"),
        ({"model_version": -3}, "model_version", "got -3"),
        ({"model_uri": "file:///models/taxi"}, "model_uri", "local file path"),
        (
            {"model_uri": "/models/taxi"},
            "model_uri",
            "cannot see files on the Airflow worker",
        ),
        ({"model_uri": "https://example.com/m.tar"}, "model_uri", "'https://' of"),
        ({"model_uri": "gs:///taxi"}, "model_uri", "names no bucket"),
        ({"model_uri": ""}, "model_uri", "non-empty"),
        ({"shadow": True}, "traffic", "its traffic must be 0, got 100"),
        (
            {"implementation": "tensorflow"},
            "implementation",
            "not a prepackaged server name",
        ),
        ({"image": "ghcr.io/x:1"}, "image", "only used with implementation=None"),
        ({"implementation": None}, "image", "required when implementation is None"),
        ({"implementation": None, "image": "a b"}, "image", "whitespace"),
        (
            {"implementation": None, "image": "img:1", "env": {"MODEL_URI": "x"}},
            "env['MODEL_URI']",
            "set from model_uri",
        ),
        ({"env": {"1BAD": "x"}}, "env['1BAD']", "not a valid variable name"),
        ({"env": {"WORKERS": 4}}, "env['WORKERS']", "quote it"),
        (
            {"labels": {MODEL_VERSION_LABEL: "9"}},
            f"labels[{MODEL_VERSION_LABEL!r}]",
            "set by airflow-mlops",
        ),
        ({"labels": {"team": "a b"}}, "labels['team']", "not a valid label value"),
        ({"labels": {"-bad": "x"}}, "labels['-bad']", "not a valid Kubernetes label"),
        (
            {"resources": {"limit": {"cpu": 1}}},
            "resources.limit",
            "expected 'requests' or",
        ),
        (
            {"resources": {"limits": {"gpu": 1}}},
            "resources.limits['gpu']",
            "nvidia.com/gpu",
        ),
        (
            {"resources": {"limits": {"cpu": 0.5}}},
            "resources.limits['cpu']",
            "write '0.5'",
        ),
        (
            {"resources": {"limits": {"memory": "4GB"}}},
            "resources.limits['memory']",
            "not a Kubernetes quantity",
        ),
        (
            {"resources": {"limits": {"cpu": "-1"}}},
            "resources.limits['cpu']",
            "negative",
        ),
        (
            {"resources": {"limits": {"nvidia.com/gpu": "500m"}}},
            "resources.limits['nvidia.com/gpu']",
            "whole units",
        ),
        (
            {"resources": {"requests": {"nvidia.com/gpu": 1}}},
            "resources.limits['nvidia.com/gpu']",
            "cannot be overcommitted",
        ),
        (
            {
                "resources": {
                    "requests": {"nvidia.com/gpu": 2},
                    "limits": {"nvidia.com/gpu": 1},
                }
            },
            "resources.requests['nvidia.com/gpu']",
            "must equal the limit",
        ),
        (
            {
                "resources": {
                    "requests": {"memory": "2Gi"},
                    "limits": {"memory": "1500Mi"},
                }
            },
            "resources.requests['memory']",
            "exceeds the limit",
        ),
    ],
)
def test_predictor_spec_errors(kwargs, field, text) -> None:
    args = {"name": "v3", "model_version": 3, "model_uri": "gs://models/taxi", **kwargs}
    with pytest.raises(ManifestError) as caught:
        PredictorSpec(**args)
    matching = [
        e for e in caught.value.errors if e.startswith(f"{field}: ") and text in e
    ]
    assert matching, caught.value.errors


@pytest.mark.parametrize(
    "kwargs",
    [
        {"model_uri": "s3://bucket/taxi"},
        {"model_uri": "pvc://model-store/taxi/3"},
        {"implementation": None, "image": "img:1", "model_uri": "/opt/models/taxi"},
        {"implementation": "SKLEARN_SERVER"},
        {"replicas": 0},
        {
            "resources": {
                "requests": {"cpu": "250m", "memory": "1e9"},
                "limits": {"cpu": "0.5", "memory": "1Gi", "nvidia.com/gpu": 1},
            }
        },
        {
            "resources": {
                "requests": {"nvidia.com/gpu": "2"},
                "limits": {"nvidia.com/gpu": 2},
            }
        },
        {"labels": {"example.com/team": "pricing", "empty": ""}},
        {"resources": {"limits": {"ephemeral-storage": "1Gi", "hugepages-2Mi": "2Mi"}}},
    ],
)
def test_valid_predictor_specs(kwargs, crd) -> None:
    predictor = PredictorSpec("v3", 3, **{"model_uri": "gs://m/t", **kwargs})
    validate_manifest(
        build_manifest(DeploymentSpec("taxi", "serving", [predictor])), crd
    )


def test_predictor_errors_are_all_listed_with_the_spec_name() -> None:
    with pytest.raises(ManifestError) as caught:
        PredictorSpec("v3", 3, "file:///m", traffic=150, replicas=-1)
    assert [e.split(":")[0] for e in caught.value.errors] == [
        "replicas",
        "traffic",
        "model_uri",
    ]
    assert str(caught.value).startswith("invalid PredictorSpec 'v3' (3 problems):")


def _p(name: str, traffic: int = 100, **kwargs) -> PredictorSpec:
    return PredictorSpec(name, 1, "gs://m/t", traffic=traffic, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field", "text"),
    [
        ({"name": "Taxi"}, "name", "not a DNS-1123 label"),
        ({"namespace": "ml_serving"}, "namespace", "not a DNS-1123 label"),
        ({"protocol": "grpc"}, "protocol", "seldon, tensorflow, v2"),
        (
            {"protocol": "v2"},
            "predictors[0].implementation",
            "does not speak protocol 'v2'",
        ),
        ({"predictors": []}, "predictors", "at least one"),
        ({"predictors": [{"name": "v3"}]}, "predictors[0]", "must be a PredictorSpec"),
        ({"predictors": [_p("a", 80), _p("b", 10)]}, "predictors", "a=80 + b=10 = 90"),
        ({"predictors": [_p("a", 60)]}, "predictors", "a=60 = 60"),
        ({"predictors": [_p("a", 90), _p("a", 10)]}, "predictors[1].name", "duplicate"),
        (
            {"predictors": [_p("a"), _p("s", 0, shadow=True), _p("t", 0, shadow=True)]},
            "predictors",
            "at most one predictor may be a shadow",
        ),
        (
            {"predictors": [_p("s", 0, shadow=True)]},
            "predictors[0].shadow",
            "cannot be the only predictor",
        ),
        (
            {"labels": {MANAGED_BY_LABEL: "me"}},
            f"labels[{MANAGED_BY_LABEL!r}]",
            "set by",
        ),
        ({"annotations": {"seldon.io/x": 5}}, "annotations['seldon.io/x']", "strings"),
    ],
)
def test_deployment_spec_errors(kwargs, field, text) -> None:
    args = {"name": "taxi", "namespace": "serving", "predictors": [_p("v3")], **kwargs}
    with pytest.raises(ManifestError) as caught:
        DeploymentSpec(**args)
    matching = [
        e for e in caught.value.errors if e.startswith(f"{field}: ") and text in e
    ]
    assert matching, caught.value.errors
    assert str(caught.value).startswith("invalid DeploymentSpec")


def test_custom_image_speaks_v2(crd) -> None:
    predictor = PredictorSpec("v3", 3, "gs://m/t", implementation=None, image="img:1")
    validate_manifest(
        build_manifest(DeploymentSpec("taxi", "serving", [predictor], protocol="v2")),
        crd,
    )


# ------------------------------------------------------------------ rollouts


def test_canary_splits_90_10(deployed, stable, candidate) -> None:
    result = canary(deployed, candidate, 10)
    assert [(p.name, p.traffic, p.shadow) for p in result.predictors] == [
        ("v3", 90, False),
        ("v4", 10, False),
    ]
    assert result.predictors[1].replicas == 2
    assert result.predictors[0] == PredictorSpec(
        "v3", 3, "gs://models/taxi", traffic=90
    )
    assert (result.name, result.namespace, result.protocol) == (
        "taxi",
        "serving",
        "seldon",
    )
    assert [p.traffic for p in deployed.predictors] == [100]  # the input is untouched


def test_canary_steps_up_and_keeps_the_stable_predictor(deployed, candidate) -> None:
    step = canary(canary(deployed, candidate, 10), candidate, 50)
    assert [(p.name, p.traffic) for p in step.predictors] == [("v3", 50), ("v4", 50)]
    step = canary(
        step, candidate, 75
    )  # on a 50/50 tie the first predictor stays stable
    assert [(p.name, p.traffic) for p in step.predictors] == [("v3", 25), ("v4", 75)]


def test_canary_replaces_an_earlier_canary_and_a_shadow(
    deployed, candidate, custom_gpu
):
    with_shadow = shadow(canary(deployed, candidate, 10), custom_gpu)
    result = canary(with_shadow, custom_gpu, 20)
    assert [(p.name, p.traffic, p.shadow) for p in result.predictors] == [
        ("v3", 80, False),
        ("v5", 20, False),
    ]


def test_shadow_graduates_to_canary(deployed, candidate) -> None:
    result = canary(shadow(deployed, candidate), candidate, 10)
    assert [(p.name, p.traffic, p.shadow) for p in result.predictors] == [
        ("v3", 90, False),
        ("v4", 10, False),
    ]


@pytest.mark.parametrize("traffic", [0, 100, 150, -5, True])
def test_canary_traffic_out_of_range(deployed, candidate, traffic) -> None:
    with pytest.raises(ManifestError, match=r"traffic: a canary takes 1\.\.99 percent"):
        canary(deployed, candidate, traffic)


def test_canary_needs_another_serving_predictor(deployed, stable) -> None:
    with pytest.raises(
        ManifestError, match="no predictor other than 'v3' serves traffic"
    ):
        canary(deployed, replace_version(stable, 4), 10)


def replace_version(predictor: PredictorSpec, version: int) -> PredictorSpec:
    return PredictorSpec(predictor.name, version, predictor.model_uri)


def test_shadow_mirrors_without_traffic(deployed, candidate) -> None:
    result = shadow(deployed, candidate)
    assert [(p.name, p.traffic, p.shadow) for p in result.predictors] == [
        ("v3", 100, False),
        ("v4", 0, True),
    ]
    manifest = build_manifest(result)
    assert _predictor(manifest, "v4")["shadow"] is True
    assert "shadow" not in _predictor(manifest, "v3")


def test_shadow_replaces_the_previous_shadow(deployed, candidate, custom_gpu) -> None:
    result = shadow(shadow(deployed, candidate), custom_gpu)
    assert [(p.name, p.shadow) for p in result.predictors] == [
        ("v3", False),
        ("v5", True),
    ]


def test_shadow_name_must_differ_from_a_serving_predictor(deployed, stable) -> None:
    with pytest.raises(ManifestError, match="'v3' already serves traffic"):
        shadow(deployed, stable)


@pytest.mark.parametrize(
    "make",
    [
        lambda d, c: canary(d, c, 10),
        lambda d, c: shadow(d, c),
    ],
)
def test_promote_keeps_only_the_chosen_predictor(deployed, candidate, make) -> None:
    result = promote(make(deployed, candidate), "v4")
    (predictor,) = result.predictors
    assert (
        predictor.name,
        predictor.traffic,
        predictor.shadow,
        predictor.replicas,
    ) == ("v4", 100, False, 2)
    assert (
        build_manifest(result)["spec"]["predictors"][0]["labels"][MODEL_VERSION_LABEL]
        == "4"
    )


def test_promote_back_to_the_stable_predictor(deployed, candidate) -> None:
    assert promote(canary(deployed, candidate, 10), "v3") == deployed


def test_promote_unknown_predictor(deployed) -> None:
    with pytest.raises(ManifestError, match=r"no predictor 'v9' \(it has: 'v3'\)"):
        promote(deployed, "v9")


# ------------------------------------------------------------------ state and rollback


@pytest.mark.parametrize(
    ("obj", "state", "description", "ready"),
    [
        ({}, "Unknown", "", False),
        ({"status": None}, "Unknown", "", False),
        ({"status": {}}, "Unknown", "", False),
        ({"status": {"state": ""}}, "Unknown", "", False),
        ({"status": {"state": "Creating"}}, "Creating", "", False),
        ({"status": {"state": "Available", "replicas": 1}}, "Available", "", True),
        (
            {
                "status": {
                    "state": "Failed",
                    "description": "Cannot find prepackaged server TENSORFLOW_SERVR",
                }
            },
            "Failed",
            "Cannot find prepackaged server TENSORFLOW_SERVR",
            False,
        ),
        (
            {
                "metadata": {"generation": 3},
                "status": {"state": "Available", "observedGeneration": 3},
            },
            "Available",
            "",
            True,
        ),
        (
            {
                "metadata": {"generation": 4},
                "status": {"state": "Available", "observedGeneration": 3},
            },
            "Available",
            "",
            False,
        ),
    ],
)
def test_deployment_state(obj, state, description, ready) -> None:
    assert deployment_state(obj) == (state, description)
    assert is_ready(obj) is ready


@pytest.fixture
def live(deployed, candidate) -> dict:
    """The canary as the API server returns it."""
    obj = build_manifest(canary(deployed, candidate, 10))
    obj["metadata"].update(
        resourceVersion="4711",
        uid="u-1",
        generation=2,
        creationTimestamp="2025-01-01T00:00:00Z",
    )
    obj["spec"]["annotations"] = {"seldon.io/engine-log-level": "debug"}
    obj["status"] = {"state": "Available"}
    return obj


def test_restore_patch_replaces_the_whole_spec(deployed, live, crd) -> None:
    previous = build_manifest(deployed)
    body = restore_patch(previous, live)
    assert body["spec"] == previous["spec"]
    assert "annotations" not in body["spec"]  # a merge patch would have kept it
    assert body["metadata"] == {
        "name": "taxi",
        "namespace": "serving",
        "resourceVersion": "4711",
        "labels": {MANAGED_BY_LABEL: "airflow-mlops"},
    }
    assert "status" not in body
    assert (body["apiVersion"], body["kind"]) == (API_VERSION, KIND)
    validate_manifest(body, crd)
    body["spec"]["predictors"][0]["replicas"] = 7
    assert previous["spec"]["predictors"][0]["replicas"] == 1  # a copy, not an alias


def test_restore_patch_without_resource_version(deployed, candidate) -> None:
    body = restore_patch(
        build_manifest(deployed), build_manifest(shadow(deployed, candidate))
    )
    assert "resourceVersion" not in body["metadata"]
    assert [p["name"] for p in body["spec"]["predictors"]] == ["v3"]


@pytest.mark.parametrize(
    ("previous", "text"),
    [
        (
            {"metadata": {"name": "other", "namespace": "serving"}, "spec": {}},
            "previous.metadata.name: 'other'",
        ),
        (
            {"metadata": {"name": "taxi", "namespace": "prod"}, "spec": {}},
            "previous.metadata.namespace: 'prod'",
        ),
        ({"metadata": {"name": "taxi"}}, "previous.spec: missing"),
        ({"spec": {}}, "previous: not a Kubernetes object"),
        (
            {"kind": "Deployment", "metadata": {"name": "taxi"}, "spec": {}},
            "previous.kind",
        ),
    ],
)
def test_restore_patch_rejects_another_object(previous, text, live) -> None:
    with pytest.raises(ManifestError, match=text.replace(".", r"\.")):
        restore_patch(previous, live)


def test_a_custom_image_on_the_claim_runs_as_the_images_user_with_the_claims_group(crd) -> None:
    """It writes its prediction log on the claim, where the step pods (uid 1000, fsGroup 1000) write: Seldon's
    operator would run it as uid 8888, which may not write there (found with real containers)."""
    predictor = PredictorSpec(name="v1", model_version=1, model_uri="/srv/mlops/models/taxi/1", implementation=None,
                              image="registry.example/airflow-mlops-serving:0.1.0", volume_claim="airflow-mlops-data",
                              mount_path="/srv/mlops")
    manifest = build_manifest(DeploymentSpec("taxi", "serving", [predictor]))
    pod = _predictor(manifest, "v1")["componentSpecs"][0]["spec"]
    assert pod["securityContext"] == {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000}
    validate_manifest(manifest, crd)
