"""Turn a JSON pipeline spec into a TFX pipeline and its compiled IR (runs in the TFX runtime).

The spec is what the Airflow operators send (see
:meth:`airflow_mlops.operators.tfx.TfxComponentOperator.pipeline_spec`)::

    {"pipeline_name": "taxi", "pipeline_root": "/state/pipelines/taxi",
     "metadata": {"sqlite": "/state/metadata/mlmd.sqlite"},
     "nodes": [{"id": "CsvExampleGen", "component": "CsvExampleGen", "inputs": {},
                "args": {"input_base": "/data/taxi", "input_pattern": "auto"}},
               {"id": "StatisticsGen", "component": "StatisticsGen",
                "inputs": {"examples": {"node": "CsvExampleGen", "output": "examples"}}, "args": {}}]}

A component is defined once, in :mod:`airflow_mlops.components` (inputs, typed arguments, outputs,
result fields: what the operator and this module both read); here each has one builder
(``@builder(definition, details)``), which turns the node into the TFX component from the arguments
the definition converted, and names the reader of what the node's result adds (the definition's
``result`` fields, :mod:`airflow_mlops.runtime_side.steps.tfx_results`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_mlops import components
from airflow_mlops.components import Component, ComponentArgumentError
from airflow_mlops.runtimes.contract import StepError
from airflow_mlops.runtime_side.steps import tfx_results

SAMPLE_DATASETS = {
    # The Chicago taxi data that ships inside the TFX wheel (15,000 rows, 18 columns).
    "chicago_taxi": ("tfx", "examples/chicago_taxi_pipeline/data/simple"),
}
SAMPLE_PREFIX = "sample://"
#: Beam's DirectRunner first tries the Prism runner, which downloads a binary at run time;
#: run Beam components on the in-process FnApiRunner instead (no download, same results).
DEFAULT_BEAM_PIPELINE_ARGS = ["--runner=apache_beam.runners.portability.fn_api_runner.FnApiRunner"]
SPAN_DIR = re.compile(r"^span-(\d+)$")
VERSION_DIR = re.compile(r"^version-(\d+)$")


def _no_details(artifacts: dict[str, Any]) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Builder:
    """How the runtime turns one component's node into TFX: ``build(inputs, typed args, is target)``
    returns the TFX component; ``details(artifacts)`` the result fields its definition declares."""

    definition: Component
    build: Callable[[dict[str, Any], dict[str, Any], bool], Any]
    details: Callable[[dict[str, Any]], dict[str, Any]] = _no_details

    def node_args(self, node: dict[str, Any], *, target: bool) -> dict[str, Any]:
        """The node's arguments converted by the definition (another task's node: leniently, see
        :meth:`Component.typed_args`); a wrong one fails the step as invalid input, naming it."""
        try:
            return self.definition.typed_args(node.get("args") or {}, lenient=not target)
        except ComponentArgumentError as err:
            raise StepError(f"node {node['id']!r}: {err}", kind="InvalidInput") from None

    def result(self, artifacts: dict[str, Any]) -> dict[str, Any]:
        """What the node's result adds; a field the definition does not declare is a bug, said as one."""
        details = self.details(artifacts)
        undeclared = sorted(set(details) - set(self.definition.result))
        if undeclared:
            raise StepError(f"the {self.definition.name} builder returned result field(s) {undeclared} that "
                            f"airflow_mlops.components.{self.definition.name} does not declare")
        return details


#: component name -> its builder (one per definition of :data:`airflow_mlops.components.COMPONENTS`).
BUILDERS: dict[str, Builder] = {}


def builder(definition: Component, details: Callable[[dict[str, Any]], dict[str, Any]] = _no_details):
    """Register the decorated function as the builder of ``definition``."""
    def register(build: Callable[[dict[str, Any], dict[str, Any], bool], Any]):
        BUILDERS[definition.name] = Builder(definition, build, details)
        return build
    return register


def builder_for(node: dict[str, Any]) -> Builder:
    found = BUILDERS.get(node["component"])
    if found is None:
        raise StepError(f"node {node['id']!r} uses component {node['component']!r}; this runtime knows {sorted(BUILDERS)}")
    return found


def sample_dataset_dir(name: str) -> str:
    """The directory of a sample dataset shipped inside an installed package."""
    import importlib.util

    try:
        package, rel = SAMPLE_DATASETS[name]
    except KeyError:
        raise StepError(f"unknown sample dataset {name!r}; known: {sorted(SAMPLE_DATASETS)}") from None
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise StepError(f"package {package!r} of sample dataset {name!r} is not installed in this runtime")
    return os.path.join(list(spec.submodule_search_locations)[0], rel)


def resolve_input_base(input_base: str) -> str:
    if input_base.startswith(SAMPLE_PREFIX):
        return sample_dataset_dir(input_base[len(SAMPLE_PREFIX):])
    return input_base


def detect_input_pattern(input_base: str) -> str:
    """``span-{SPAN}/version-{VERSION}/*``, ``span-{SPAN}/*`` or ``*``, from the directory layout."""
    if not os.path.isdir(input_base):
        raise StepError(f"input_base {input_base!r} is not a directory (CsvExampleGen reads a directory of CSV files)")
    entries = sorted(os.listdir(input_base))
    spans = [e for e in entries if SPAN_DIR.match(e) and os.path.isdir(os.path.join(input_base, e))]
    if not spans:
        return "*"
    versioned = all(
        any(VERSION_DIR.match(v) for v in os.listdir(os.path.join(input_base, s))) for s in spans
    )
    return "span-{SPAN}/version-{VERSION}/*" if versioned else "span-{SPAN}/*"


@builder(components.CSV_EXAMPLE_GEN)
def _csv_example_gen(inputs: dict[str, Any], args: dict[str, Any], target: bool):
    from tfx.components import CsvExampleGen
    from tfx.proto import example_gen_pb2, range_config_pb2

    input_base = resolve_input_base(args["input_base"])
    pattern = args["input_pattern"]
    if not target:
        # Another task's node: only its outputs matter here, its input is not read.
        return CsvExampleGen(input_base=input_base)
    if pattern == "auto":
        pattern = detect_input_pattern(input_base)
    splits = args["splits"] or {"train": 2, "eval": 1}
    kwargs: dict[str, Any] = {
        "input_base": input_base,
        "input_config": example_gen_pb2.Input(
            splits=[example_gen_pb2.Input.Split(name="single_split", pattern=pattern)]
        ),
        "output_config": example_gen_pb2.Output(
            split_config=example_gen_pb2.SplitConfig(
                splits=[example_gen_pb2.SplitConfig.Split(name=n, hash_buckets=int(b)) for n, b in splits.items()]
            )
        ),
    }
    if args["span"] is not None:
        if "{SPAN}" not in pattern:
            raise StepError(f"span={args['span']} was given but the input pattern {pattern!r} has no {{SPAN}}")
        span = args["span"]
        kwargs["range_config"] = range_config_pb2.RangeConfig(
            static_range=range_config_pb2.StaticRange(start_span_number=span, end_span_number=span)
        )
    return CsvExampleGen(**kwargs)


@builder(components.STATISTICS_GEN, tfx_results.statistics_details)
def _statistics_gen(inputs, args, target):
    from tfx.components import StatisticsGen

    return StatisticsGen(examples=inputs["examples"], exclude_splits=args["exclude_splits"])


@builder(components.SCHEMA_GEN, tfx_results.schema_details)
def _schema_gen(inputs, args, target):
    from tfx.components import SchemaGen

    return SchemaGen(statistics=inputs["statistics"], infer_feature_shape=args["infer_feature_shape"])


@builder(components.IMPORT_SCHEMA_GEN, tfx_results.schema_details)
def _import_schema_gen(inputs, args, target):
    from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen

    return ImportSchemaGen(schema_file=args["schema_file"])


@builder(components.EXAMPLE_VALIDATOR, tfx_results.anomalies_details)
def _example_validator(inputs, args, target):
    from tfx.components import ExampleValidator

    return ExampleValidator(
        statistics=inputs["statistics"], schema=inputs["schema"], exclude_splits=args["exclude_splits"]
    )


@builder(components.TRANSFORM)
def _transform(inputs, args, target):
    from tfx.components import Transform

    return Transform(examples=inputs["examples"], schema=inputs["schema"], module_file=args["module_file"])


@builder(components.HOROVOD_TRAINER)
def _horovod_trainer(inputs, args, target):
    from tfx.components import Trainer
    from tfx.dsl.components.base import executor_spec
    from tfx.proto import trainer_pb2

    from airflow_mlops.runtime_side.steps.horovod_trainer import CONFIG_KEY, HorovodTrainerExecutor

    return Trainer(
        module_file=args["module_file"],
        examples=inputs["examples"],
        transform_graph=inputs["transform_graph"],
        schema=inputs["schema"],
        train_args=trainer_pb2.TrainArgs(num_steps=args["train_steps"]),
        eval_args=trainer_pb2.EvalArgs(num_steps=args["eval_steps"]),
        custom_executor_spec=executor_spec.ExecutorClassSpec(HorovodTrainerExecutor),
        custom_config={CONFIG_KEY: {
            "num_workers": args["num_workers"],
            "gpus_per_worker": args["gpus_per_worker"],
            "checkpoint_dir": args["checkpoint_dir"],
        }},
    )


@builder(components.LATEST_BLESSED_MODEL_RESOLVER)
def _latest_blessed_model_resolver(inputs, args, target):
    from tfx.dsl.components.common import resolver
    from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import LatestBlessedModelStrategy
    from tfx.types import Channel, standard_artifacts

    return resolver.Resolver(
        strategy_class=LatestBlessedModelStrategy,
        model=Channel(type=standard_artifacts.Model),
        model_blessing=Channel(type=standard_artifacts.ModelBlessing),
    )


@builder(components.SERVED_MODEL_RESOLVER)
def _served_model_resolver(inputs, args, target):
    from tfx.dsl.components.common import resolver
    from tfx.types import Channel, standard_artifacts

    from airflow_mlops.runtime_side.steps.window_strategy import ArtifactIdStrategy

    return resolver.Resolver(strategy_class=ArtifactIdStrategy, config={"artifact_id": args["model_artifact_id"]},
                             model=Channel(type=standard_artifacts.Model))


@builder(components.TRAINING_WINDOW_RESOLVER)
def _training_window_resolver(inputs, args, target):
    from tfx.dsl.components.common import resolver
    from tfx.types import Channel, standard_artifacts

    from airflow_mlops.runtime_side.steps.window_strategy import TrainingWindowStrategy

    return resolver.Resolver(
        strategy_class=TrainingWindowStrategy,
        # the IR keeps parameters, not None: an absent bound is left out
        config={k: args[k] for k in ("last_spans", "since_span") if args[k] is not None},
        examples=Channel(type=standard_artifacts.Examples, producer_component_id=args["examples_node"],
                         output_key="examples"),
    )


def eval_config(args: dict[str, Any]):
    """The TFMA EvalConfig of the Evaluator: the user's file (``eval_config_path``), or one built for the
    model type with one gated metric (per-class metrics of a multi-class model are added by the executor, which
    knows the number of classes): ``value >= threshold`` and, against a baseline, ``value >= baseline -
    max_regression`` (``<=`` and ``+`` where lower is better), the model type's other metrics reported, per
    class for a multi-class model, on the overall slice and one slice per value of each ``slice_features``."""
    import tensorflow_model_analysis as tfma
    from tensorflow_model_analysis.proto import config_pb2

    from airflow_mlops.evaluation import DEFAULT_METRIC, REPORTED, check_gate

    if args["eval_config_path"]:
        return load_eval_config(args["eval_config_path"])
    model_type = args["model_type"]
    name = args["metric"] or DEFAULT_METRIC[model_type]
    threshold = args["threshold"]
    higher = check_gate(model_type, name, args["direction"], threshold)
    regression = args["max_regression"]
    bound = {"lower_bound" if higher else "upper_bound": {"value": threshold}}
    threshold_spec = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(**bound),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER if higher else tfma.MetricDirection.LOWER_IS_BETTER,
            absolute={"value": (-regression - 1e-10) if higher else (regression + 1e-10)},
        ),
    )
    # gated on the overall slice only (a bare threshold would apply to every slice); slices are reported
    metric = tfma.MetricConfig(class_name=name, per_slice_thresholds=[
        config_pb2.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold_spec)])
    specs = [tfma.MetricsSpec(metrics=[*(tfma.MetricConfig(class_name=n) for n in REPORTED[model_type] if n != name),
                                       metric])]
    slices = [tfma.SlicingSpec(), *(tfma.SlicingSpec(feature_keys=[f]) for f in args["slice_features"])]
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            signature_name="serving_default",
            label_key=args["label_key"],
            prediction_key=args["prediction_key"],
            preprocessing_function_names=["transform_features"],  # the module file's raw-to-model signature
        )],
        slicing_specs=slices,
        metrics_specs=specs,
    )


def load_eval_config(path: str):
    """A TFMA EvalConfig from a JSON or text-proto (pbtxt) file; a file that is neither is named with the error."""
    import tensorflow_model_analysis as tfma
    from google.protobuf import json_format, text_format

    from airflow_mlops.runtimes.contract import RejectedInput

    try:
        with open(path) as handle:
            text = handle.read()
    except OSError as err:
        raise RejectedInput(f"eval_config {path}: cannot be read: {err.strerror or err}") from None
    config = tfma.EvalConfig()
    try:
        if text.lstrip().startswith("{"):
            json_format.Parse(text, config)
        else:
            text_format.Parse(text, config)
    except (json_format.ParseError, text_format.ParseError) as err:
        raise RejectedInput(f"eval_config {path} is not a TFMA EvalConfig (JSON or pbtxt): {' '.join(str(err).split())}"
                            "; correct the file, or leave eval_config empty for the generated gate") from None
    if not config.model_specs:
        raise RejectedInput(f"eval_config {path} has no model_specs: name at least the label_key")
    return config


def check_eval_config(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Parse the EvalConfig file ``params["path"]`` as the Evaluator will (:func:`load_eval_config`), so that
    the run's first task refuses one that does not parse before anything is ingested or trained."""
    config = load_eval_config(params["path"])
    return {"label_keys": [spec.label_key for spec in config.model_specs],
            "metrics": [m.class_name for spec in config.metrics_specs for m in spec.metrics]}


@builder(components.EVALUATOR, tfx_results.evaluation_details)
def _evaluator(inputs, args, target):
    from tfx.components import Evaluator
    from tfx.dsl.components.base import executor_spec

    from airflow_mlops.runtime_side.steps.evaluator import CheckedEvaluatorExecutor

    evaluator = Evaluator(
        examples=inputs["examples"],
        model=inputs["model"],
        baseline_model=inputs.get("baseline_model"),
        eval_config=eval_config(args) if target else None,
        example_splits=args["example_splits"],
    )
    # TFX's Evaluator takes no custom executor: the same component, its executor checking the model first
    evaluator.executor_spec = executor_spec.BeamExecutorSpec(CheckedEvaluatorExecutor)
    return evaluator


@builder(components.PUSHER, tfx_results.pushed_details)
def _versioned_pusher(inputs, args, target):
    from tfx.components import Pusher
    from tfx.dsl.components.base import executor_spec
    from tfx.proto import pusher_pb2

    from airflow_mlops.runtime_side.steps.pusher import CONFIG_KEY, VersionedPusherExecutor

    return Pusher(
        model=inputs["model"],
        model_blessing=inputs.get("model_blessing"),
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=args["base_directory"] or "")
        ),
        custom_executor_spec=executor_spec.ExecutorClassSpec(VersionedPusherExecutor),
        custom_config={CONFIG_KEY: {k: args[k] for k in ("pipeline_name", "run_id", "evaluation", "transform_graph")}},
    )


def topological_nodes(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Order nodes so that producers come before consumers; reject unknown inputs and cycles."""
    by_id = {n["id"]: n for n in nodes}
    if len(by_id) != len(nodes):
        raise StepError("pipeline spec has two nodes with the same id")
    ordered: list[dict[str, Any]] = []
    state: dict[str, str] = {}

    def visit(node_id: str, chain: tuple[str, ...]) -> None:
        if state.get(node_id) == "done":
            return
        if state.get(node_id) == "visiting":
            raise StepError(f"pipeline spec has a cycle: {' -> '.join(chain + (node_id,))}")
        state[node_id] = "visiting"
        for ref in by_id[node_id].get("inputs", {}).values():
            if ref["node"] not in by_id:
                raise StepError(f"node {node_id!r} reads from {ref['node']!r}, which is not in the pipeline")
            visit(ref["node"], chain + (node_id,))
        state[node_id] = "done"
        ordered.append(by_id[node_id])

    for node in nodes:
        visit(node["id"], ())
    return ordered


def metadata_connection_config(metadata: dict[str, Any]):
    """An ML Metadata ConnectionConfig from ``{"sqlite": path}`` or ``{"mysql": {...}}``."""
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    if "sqlite" in metadata:
        path = metadata["sqlite"]
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        config.sqlite.filename_uri = path
        config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    elif "mysql" in metadata:
        my = metadata["mysql"]
        config.mysql.host = my["host"]
        config.mysql.port = int(my.get("port", 3306))
        config.mysql.database = my["database"]
        config.mysql.user = my.get("user", "")
        config.mysql.password = my.get("password", "")
    else:
        raise StepError(f"metadata connection must have 'sqlite' or 'mysql', got {sorted(metadata)}")
    return config


def build_pipeline(spec: dict[str, Any], target: str | None = None):
    """The TFX :class:`Pipeline` described by ``spec``.

    Only node ``target`` (the one to run; all nodes when None) has its input checked.
    """
    from tfx.orchestration import pipeline as pipeline_py

    built: dict[str, Any] = {}
    for node in topological_nodes(spec["nodes"]):
        found = builder_for(node)
        inputs = {key: built[ref["node"]].outputs[ref["output"]] for key, ref in node.get("inputs", {}).items()}
        is_target = target is None or node["id"] == target
        built[node["id"]] = found.build(inputs, found.node_args(node, target=is_target), is_target).with_id(node["id"])
    return pipeline_py.Pipeline(
        pipeline_name=spec["pipeline_name"],
        pipeline_root=spec["pipeline_root"],
        components=list(built.values()),
        metadata_connection_config=metadata_connection_config(spec["metadata"]),
        beam_pipeline_args=spec.get("beam_pipeline_args") or DEFAULT_BEAM_PIPELINE_ARGS,
        enable_cache=False,
    )


def compile_pipeline(spec: dict[str, Any], run_id: str, target: str | None = None):
    """The pipeline IR, with the pipeline-run id substituted."""
    from tfx.dsl.compiler import compiler, constants
    from tfx.orchestration.portable import runtime_parameter_utils

    ir = compiler.Compiler().compile(build_pipeline(spec, target))
    runtime_parameter_utils.substitute_runtime_parameter(ir, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
    return ir
