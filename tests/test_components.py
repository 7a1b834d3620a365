"""One definition per TFX component, read by the operator and by the runtime's builder."""

from __future__ import annotations

import pytest

from airflow_mlops import components
from airflow_mlops.components import COMPONENTS, Arg, Component, ComponentArgumentError
from airflow_mlops.exceptions import InvalidArgumentError
from airflow_mlops.operators import tfx as tfx_operators
from airflow_mlops.runtimes.contract import StepError
from airflow_mlops.runtime_side.steps import tfx_pipeline

OPERATORS = [cls for cls in vars(tfx_operators).values()
             if isinstance(cls, type) and issubclass(cls, tfx_operators.TfxComponentOperator)
             and cls is not tfx_operators.TfxComponentOperator]


@pytest.mark.parametrize("arg, value, expected", [
    (Arg("n", int, default=1), "3", 3),
    (Arg("n", int, default=1), None, 1),
    (Arg("n", int, default=1), "", 1),
    (Arg("n", int), "null", None),
    (Arg("n", int), 2.0, 2),
    (Arg("x", float), "0.25", 0.25),
    (Arg("b", bool, default=True), "false", False),
    (Arg("b", bool), True, True),
    (Arg("l", list, default=[]), "a, b,", ["a", "b"]),
    (Arg("l", list), ("a",), ["a"]),
    (Arg("d", dict), {"train": 2}, {"train": 2}),
    (Arg("s", str, default="auto"), "", "auto"),
])
def test_arguments_are_converted_to_their_kind(arg, value, expected):
    assert arg.convert(value) == expected


@pytest.mark.parametrize("arg, value, message", [
    (Arg("num_workers", int), "two", "num_workers must be an integer, got 'two'"),
    (Arg("num_workers", int), 2.5, "num_workers must be an integer, got 2.5"),
    (Arg("num_workers", int), True, "num_workers must be an integer, got True"),
    (Arg("num_workers", int, minimum=1), "0", "num_workers must be >= 1, got 0"),
    (Arg("threshold", float), "high", "threshold must be a number, got 'high'"),
    (Arg("flag", bool), "maybe", "flag must be true or false, got 'maybe'"),
    (Arg("module_file", str, required=True), "", "module_file is required"),
    (Arg("module_file", str), 3, "module_file must be a str, got 3"),
    (Arg("splits", dict), [1], "splits must be a dict, got \\[1\\]"),
])
def test_a_wrong_argument_is_named(arg, value, message):
    with pytest.raises(ComponentArgumentError, match=f"^{message}$"):
        arg.convert(value)


def test_typed_args_fill_defaults_refuse_unknown_keys_and_are_lenient_only_when_asked():
    trainer = components.HOROVOD_TRAINER
    typed = trainer.typed_args({"module_file": "/m.py", "num_workers": "3"})
    assert typed == {"module_file": "/m.py", "num_workers": 3, "gpus_per_worker": 0, "train_steps": 1,
                     "eval_steps": 1, "checkpoint_dir": None}
    with pytest.raises(ComponentArgumentError, match=r"HorovodTrainer has no argument\(s\) \['registry_dir'\]; "
                                                     r"its arguments: \['module_file', 'num_workers'"):
        trainer.typed_args({"module_file": "/m.py", "registry_dir": "/r"})
    with pytest.raises(ComponentArgumentError, match="train_steps must be an integer"):
        trainer.typed_args({"module_file": "/m.py", "train_steps": "{{ params.steps }}"})
    assert trainer.typed_args({"module_file": "/m.py", "train_steps": "{{ params.steps }}"}, lenient=True)["train_steps"] == 1


def test_every_input_reads_an_output_some_component_declares():
    outputs = {out for definition in COMPONENTS.values() for out in definition.outputs}
    for definition in COMPONENTS.values():
        assert set(definition.optional_inputs) <= set(definition.inputs), definition.name
        for key, output in definition.inputs.items():
            assert output in outputs, f"{definition.name}.{key} reads {output!r}, which no component declares"


def test_every_operator_runs_a_defined_component_and_sends_only_its_arguments():
    assert {cls.definition.name for cls in OPERATORS} == set(COMPONENTS) - {"LatestBlessedModelResolver",
                                                                          "TrainingWindowResolver", "ServedModelResolver"}  # companions
    inputs = {"examples": "a", "statistics": "b", "schema": "c", "transform_graph": "d", "model": "e",
              "model_blessing": "f"}
    for cls in OPERATORS:
        assert cls.definition is COMPONENTS[cls.definition.name]
        wired = {key: inputs[key] for key in cls.definition.inputs if key in inputs}
        extra = {"schema_file": "/s.pbtxt"} if cls is tfx_operators.ImportSchemaGenOperator else {}
        op = cls(task_id=cls.__name__, pipeline_name="p", **wired, **extra)
        assert set(op.component_args()) <= {arg.name for arg in cls.definition.args}, cls.__name__
        assert set(op.tfx_inputs) <= set(cls.definition.inputs), cls.__name__


def test_an_operator_names_itself_and_the_argument():
    op = tfx_operators.HorovodTrainerOperator(task_id="train", pipeline_name="p", examples="t", transform_graph="t",
                                              schema="s", train_steps="many")
    with pytest.raises(InvalidArgumentError, match="^train: train_steps must be an integer, got 'many'$"):
        op.typed_args()


def test_the_runtime_has_one_builder_per_definition():
    assert set(tfx_pipeline.BUILDERS) == set(COMPONENTS)
    for name, found in tfx_pipeline.BUILDERS.items():
        assert found.definition is COMPONENTS[name]


def test_the_builder_converts_a_node_arguments_with_the_definition_and_names_a_wrong_one():
    found = tfx_pipeline.builder_for({"id": "tr", "component": "HorovodTrainer"})
    node = {"id": "tr", "component": "HorovodTrainer", "args": {"module_file": "/m.py", "num_workers": "2"}}
    assert found.node_args(node, target=True)["num_workers"] == 2
    node["args"]["num_workers"] = 0
    with pytest.raises(StepError, match="^node 'tr': num_workers must be >= 1, got 0$") as raised:
        found.node_args(node, target=True)
    assert raised.value.kind == "InvalidInput"
    with pytest.raises(StepError, match=r"uses component 'Magic'; this runtime knows \['CsvExampleGen'"):
        tfx_pipeline.builder_for({"id": "m", "component": "Magic"})


def test_a_result_field_the_definition_does_not_declare_is_refused():
    undeclared = tfx_pipeline.Builder(Component("X", result=("ok",)), build=lambda *a: None,
                                      details=lambda artifacts: {"ok": 1, "surprise": 2})
    with pytest.raises(StepError, match=r"returned result field\(s\) \['surprise'\]"):
        undeclared.result({"inputs": {}, "outputs": {}})
    assert tfx_pipeline.BUILDERS["Pusher"].result({"inputs": {}, "outputs": {"pushed_model": [
        {"pushed": 1, "pushed_version": "3", "pushed_destination": "/m/3"}]}}) == {
        "pushed": True, "pushed_version": "3", "pushed_destination": "/m/3"}
