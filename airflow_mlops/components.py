"""One definition per TFX component: its inputs, typed arguments, outputs and result fields.

Both sides of the process boundary read these definitions (this module imports only the
standard library): the Airflow operator wires its inputs and checks its arguments with one
(:class:`airflow_mlops.operators.tfx.TfxComponentOperator`), and the runtime-side builder turns
the node into the TFX component with the arguments it converted
(:mod:`airflow_mlops.runtime_side.steps.tfx_pipeline`). Adding a component means one :class:`Component` here
(in :data:`COMPONENTS`) and one builder there; an operator is optional (the resolver has none).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Values an optional argument may be left with (a rendered empty template field, a JSON ``null``).
EMPTY = (None, "", "None", "null")


class ComponentArgumentError(ValueError):
    """A component's argument is unknown, missing or of the wrong type; the message names it."""


@dataclass(frozen=True)
class Arg:
    """One argument of a component.

    :param name: the key in the node's ``args``.
    :param kind: ``str``, ``int``, ``float``, ``bool``, ``list`` or ``dict``; a string is converted
        (rendered template fields are strings), anything else must already be of the kind.
    :param default: the value of an argument left empty (None: no value).
    :param required: an empty value is refused.
    :param minimum: the smallest acceptable number (``int`` and ``float`` only).
    """

    name: str
    kind: type
    default: Any = None
    required: bool = False
    minimum: float | None = None

    def convert(self, value: Any) -> Any:
        """``value`` as this argument's kind (the default when empty); raises :class:`ComponentArgumentError`."""
        if not isinstance(value, (list, dict)) and value in EMPTY:
            if self.required:
                raise ComponentArgumentError(f"{self.name} is required")
            return self.default
        if self.kind is bool:
            return _boolean(self.name, value)
        if self.kind in (int, float):
            return self._number(value)
        if self.kind is list:
            if isinstance(value, str):
                return [item.strip() for item in value.split(",") if item.strip()]
            if not isinstance(value, (list, tuple)):
                raise ComponentArgumentError(f"{self.name} must be a list, got {value!r}")
            return list(value)
        if not isinstance(value, self.kind):
            raise ComponentArgumentError(f"{self.name} must be a {self.kind.__name__}, got {value!r}")
        return value

    def _number(self, value: Any) -> int | float:
        word = "an integer" if self.kind is int else "a number"
        if isinstance(value, bool):
            raise ComponentArgumentError(f"{self.name} must be {word}, got {value!r}")
        try:
            number = self.kind(value)
        except (TypeError, ValueError):
            raise ComponentArgumentError(f"{self.name} must be {word}, got {value!r}") from None
        if self.kind is int and isinstance(value, float) and number != value:
            raise ComponentArgumentError(f"{self.name} must be {word}, got {value!r}")
        if self.minimum is not None and number < self.minimum:
            raise ComponentArgumentError(f"{self.name} must be >= {self.minimum:g}, got {number}")
        return number


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ComponentArgumentError(f"{name} must be true or false, got {value!r}")


@dataclass(frozen=True)
class Component:
    """A TFX component as both sides know it.

    :param name: the ``component`` of a pipeline-spec node (the builder's key).
    :param inputs: input key → the producer's output it reads by default.
    :param optional_inputs: inputs that may be left unwired.
    :param args: the typed arguments; no other key is accepted.
    :param outputs: the output keys other nodes may read.
    :param result: the fields the node's result adds for this component (read by its operator).
    :param module_functions: the functions a ``module_file`` argument must define.
    """

    name: str
    inputs: Mapping[str, str] = field(default_factory=dict)
    optional_inputs: frozenset[str] = frozenset()
    args: tuple[Arg, ...] = ()
    outputs: tuple[str, ...] = ()
    result: tuple[str, ...] = ()
    module_functions: tuple[str, ...] = ()

    def arg(self, name: str) -> Arg:
        for arg in self.args:
            if arg.name == name:
                return arg
        raise KeyError(f"{self.name} has no argument {name!r}")

    def typed_args(self, args: Mapping[str, Any], *, lenient: bool = False) -> dict[str, Any]:
        """Every argument, converted (defaults for empty ones); an unknown key is refused naming the known
        ones. ``lenient``: a value that does not convert takes the default (another task's node, whose
        arguments only shape the pipeline here and are checked by that task)."""
        unknown = sorted(set(args) - {arg.name for arg in self.args})
        if unknown:
            raise ComponentArgumentError(f"{self.name} has no argument(s) {unknown}; its arguments: "
                                         f"{[arg.name for arg in self.args]}")
        typed = {}
        for arg in self.args:
            try:
                typed[arg.name] = arg.convert(args.get(arg.name))
            except ComponentArgumentError:
                if not lenient:
                    raise
                typed[arg.name] = arg.default
        return typed


_MODULE = Arg("module_file", str, required=True)

CSV_EXAMPLE_GEN = Component(
    "CsvExampleGen",
    args=(Arg("input_base", str, required=True), Arg("input_pattern", str, default="auto"),
          Arg("span", int, minimum=0), Arg("splits", dict)),
    outputs=("examples",),
)
STATISTICS_GEN = Component(
    "StatisticsGen", inputs={"examples": "examples"}, args=(Arg("exclude_splits", list, default=[]),),
    outputs=("statistics",), result=("statistics",),
)
SCHEMA_GEN = Component(
    "SchemaGen", inputs={"statistics": "statistics"}, args=(Arg("infer_feature_shape", bool, default=True),),
    outputs=("schema",), result=("schema_file",),
)
IMPORT_SCHEMA_GEN = Component(
    "ImportSchemaGen", args=(Arg("schema_file", str, required=True),), outputs=("schema",), result=("schema_file",),
)
EXAMPLE_VALIDATOR = Component(
    "ExampleValidator", inputs={"statistics": "statistics", "schema": "schema"},
    args=(Arg("exclude_splits", list, default=[]),), outputs=("anomalies",), result=("anomalies",),
)
TRANSFORM = Component(
    "Transform", inputs={"examples": "examples", "schema": "schema"}, args=(_MODULE,),
    outputs=("transform_graph", "transformed_examples"), module_functions=("preprocessing_fn",),
)
HOROVOD_TRAINER = Component(
    "HorovodTrainer",
    inputs={"examples": "transformed_examples", "transform_graph": "transform_graph", "schema": "schema"},
    args=(_MODULE, Arg("num_workers", int, default=1, minimum=1), Arg("gpus_per_worker", int, default=0, minimum=0),
          Arg("train_steps", int, default=1, minimum=1), Arg("eval_steps", int, default=1, minimum=1),
          Arg("checkpoint_dir", str)),
    outputs=("model", "model_run"), module_functions=("run_fn",),
)
LATEST_BLESSED_MODEL_RESOLVER = Component("LatestBlessedModelResolver", outputs=("model", "model_blessing"))
#: The model a deployment serves, by its artifact id (a companion node of the Evaluator: its baseline).
SERVED_MODEL_RESOLVER = Component(
    "ServedModelResolver", args=(Arg("model_artifact_id", int, required=True, minimum=1),), outputs=("model",),
)
#: The validated spans a training run trains on (a companion node of Transform).
TRAINING_WINDOW_RESOLVER = Component(
    "TrainingWindowResolver",
    args=(Arg("examples_node", str, required=True), Arg("last_spans", int, minimum=1), Arg("since_span", int, minimum=0)),
    outputs=("examples",),
)
EVALUATOR = Component(
    "Evaluator", inputs={"examples": "examples", "model": "model", "baseline_model": "model"},
    optional_inputs=frozenset({"baseline_model"}),
    # the model type, metric and direction are checked together (airflow_mlops.evaluation.check_gate)
    args=(Arg("model_type", str, default="binary"), Arg("metric", str), Arg("direction", str, default="auto"),
          Arg("threshold", float, default=0.5), Arg("max_regression", float, default=0.0, minimum=0),
          Arg("label_key", str), Arg("prediction_key", str, default=""), Arg("slice_features", list, default=[]),
          Arg("eval_config_path", str), Arg("example_splits", list, default=["eval"])),
    outputs=("evaluation", "blessing"), result=("evaluation",),
)
PUSHER = Component(
    "Pusher", inputs={"model": "model", "model_blessing": "blessing"}, optional_inputs=frozenset({"model_blessing"}),
    args=(Arg("base_directory", str), Arg("pipeline_name", str), Arg("run_id", str), Arg("evaluation", dict),
          Arg("transform_graph", str)),
    outputs=("pushed_model",), result=("pushed", "pushed_version", "pushed_destination"),
)

#: Every component the provider runs, by name.
COMPONENTS: dict[str, Component] = {c.name: c for c in (
    CSV_EXAMPLE_GEN, STATISTICS_GEN, SCHEMA_GEN, IMPORT_SCHEMA_GEN, EXAMPLE_VALIDATOR, TRANSFORM, HOROVOD_TRAINER,
    LATEST_BLESSED_MODEL_RESOLVER, SERVED_MODEL_RESOLVER, TRAINING_WINDOW_RESOLVER, EVALUATOR, PUSHER,
)}
