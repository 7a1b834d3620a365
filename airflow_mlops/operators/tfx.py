"""One Airflow operator per TFX component; each task runs one node of the compiled pipeline.

Wire components as in TFX, by passing the upstream operator::

    example_gen = CsvExampleGenOperator(task_id="CsvExampleGen", input_base="{{ params.data_root }}")
    statistics = StatisticsGenOperator(task_id="StatisticsGen", examples=example_gen)

Every task of a DAG run compiles the same pipeline (its node and all its upstream nodes)
and runs its own node in the TFX runtime with the DAG run's id as the TFX pipeline-run
id, so artifacts and lineage land in one ML Metadata store.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from airflow.sdk.exceptions import AirflowSkipException
from airflow.sdk import BaseOperator, conf

from airflow_mlops import components
from airflow_mlops.components import Component, ComponentArgumentError
from airflow_mlops.evaluation import DEFAULT_METRIC, METRICS, EvaluationSpecError, check_gate
from airflow_mlops.exceptions import (
    DataValidationError,
    InvalidArgumentError,
    MlopsException,
    RuntimeStepRejected,
)
from airflow_mlops.hooks.runtime import RuntimeHook, task_context
from airflow_mlops.kubernetes.launchers import LAUNCHERS
from airflow_mlops.links.pages import ModelVersionLink, page_path
from airflow_mlops.runtimes.runners import ONE_PROCESS, Placement
from airflow_mlops.shared import package_file
from airflow_mlops.utils.csv_data import CsvDataError, check_csv_files, span_files, visible
from airflow_mlops.utils.run_records import record_task, safe_name
from airflow_mlops.utils.schema_store import ReferenceSchemaError, ReferenceSchemaStore, schema_features

PIPELINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
SAMPLE_TAXI = "sample://chicago_taxi"
#: The module file shipped for the taxi data (a path only: it imports TensorFlow, so Airflow never imports it).
PACKAGE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_TAXI_MODULE = str(PACKAGE_DIR / "runtime_side" / "modules" / "taxi.py")


def raw_label_column(label_key: str | None, module_file: str | None = None,
                     eval_config: str | None = None) -> str:
    """The CSV column a label comes from, for the first task's label check: ``label_key`` without the ``_xf``
    suffix TFX's examples give transformed features (``tips_xf``: ``tips``); ``tips`` for the shipped taxi
    module's ``big_tipper``; empty (not checked) with an ``eval_config`` file, which names its own label."""
    if eval_config or not label_key:
        return ""
    if label_key == "big_tipper" and module_file in (None, "", DEFAULT_TAXI_MODULE):
        return "tips"
    return label_key.removesuffix("_xf")


def _is_local_path(path: str) -> bool:
    return "://" not in path


#: Keys of an operator's ``kubernetes`` argument (``[mlops] kubernetes_<key>``).
KUBERNETES_KEYS = ("namespace", "image", "service_account", "volume_claim", "resources", "node_selector",
                   "tolerations", "on_finish_action", "startup_timeout")


def kubernetes_settings(task_id: str, kubernetes: dict[str, Any] | None) -> dict[str, Any]:
    """An operator's ``kubernetes`` argument as hook settings (``kubernetes_<key>``); unknown keys are named."""
    if not kubernetes:
        return {}
    if not isinstance(kubernetes, dict):
        raise InvalidArgumentError(f"{task_id}: kubernetes must be a dict, got {type(kubernetes).__name__}")
    unknown = sorted(set(kubernetes) - set(KUBERNETES_KEYS))
    if unknown:
        raise InvalidArgumentError(f"{task_id}: unknown kubernetes setting(s) {unknown}; known: {list(KUBERNETES_KEYS)}")
    return {f"kubernetes_{key}": value for key, value in kubernetes.items() if value is not None}


def _spans(result: dict[str, Any]) -> list[int]:
    """The spans of the examples a node read (its ``examples`` input)."""
    return sorted({a["span"] for a in (result.get("inputs") or {}).get("examples") or [] if "span" in a})


class TfxComponentOperator(BaseOperator):
    """Base of the TFX component operators: builds the pipeline spec and runs one node.

    :param pipeline_name: TFX pipeline name (templated); names the ML Metadata contexts.
    :param pipeline_root: where artifacts go (templated); default ``{state_dir}/pipelines/{pipeline_name}``.
    :param runtime: the runtime that runs the node.
    :param mlops_conn_id: connection with provider settings (see :class:`RuntimeHook`).
    :param step_timeout: seconds before the node is stopped; None waits.
    :param backend: ``local`` or ``kubernetes`` for this task; None: ``[mlops] backend``.
    :param kubernetes: this task's pod settings, by the ``[mlops] kubernetes_*`` names without the
        prefix: ``namespace``, ``image``, ``service_account``, ``volume_claim``, ``resources`` (dict),
        ``node_selector`` (dict), ``tolerations`` (list), ``on_finish_action``, ``startup_timeout``.
    :param deferrable: on the Kubernetes backend, wait for the node's pod (or training job) in the
        triggerer instead of a worker slot; its log reaches the task log when it ends.
    :param poll_interval: seconds between two reads of the pod's (training job's) state.
    """

    #: The component this operator runs: its inputs, typed arguments and result fields
    #: (:mod:`airflow_mlops.components`, read by the runtime's builder too).
    definition: ClassVar[Component]
    template_fields: Sequence[str] = ("pipeline_name", "pipeline_root")
    ui_color = "#fbe3c6"

    def __init__(
        self,
        *,
        pipeline_name: str,
        pipeline_root: str | None = None,
        runtime: str = "tfx",
        mlops_conn_id: str = RuntimeHook.default_conn_name,
        step_timeout: float | None = None,
        backend: str | None = None,
        kubernetes: dict[str, Any] | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.pipeline_name = pipeline_name
        self.pipeline_root = pipeline_root
        self.runtime = runtime
        self.mlops_conn_id = mlops_conn_id
        self.step_timeout = step_timeout
        self.backend = backend
        self.kubernetes = kubernetes
        self.tfx_inputs: dict[str, dict[str, str]] = {}

    def _wire_input(self, key: str, producer: TfxComponentOperator | str | None) -> None:
        """Record that input ``key`` reads the matching output of ``producer``, and depend on it."""
        if producer is None:
            raise TypeError(f"{type(self).__name__}({self.task_id}): input {key!r} is required")
        output = self.definition.inputs[key]
        if isinstance(producer, TfxComponentOperator):
            self.tfx_inputs[key] = {"node": producer.task_id, "output": output}
            self.set_upstream(producer)
        elif isinstance(producer, str):
            node, _, explicit = producer.partition(":")
            self.tfx_inputs[key] = {"node": node, "output": explicit or output}
        else:
            raise TypeError(
                f"{type(self).__name__}({self.task_id}): input {key!r} must be a TFX component operator "
                f"or a task id, got {type(producer).__name__}"
            )

    # -- spec -------------------------------------------------------------------------
    def component_args(self) -> dict[str, Any]:
        """The component's arguments, from this operator's (rendered, when executing) fields."""
        return {}

    def typed_args(self) -> dict[str, Any]:
        """:meth:`component_args` converted by the definition (defaults for empty values); a wrong one
        raises :class:`InvalidArgumentError` naming this task and the argument."""
        try:
            return self.definition.typed_args(self.component_args())
        except ComponentArgumentError as err:
            raise InvalidArgumentError(f"{self.task_id}: {err}") from None

    def host_paths(self) -> list[str]:
        """Local paths this node reads, which a root-filesystem runtime must see."""
        return []

    def validate_args(self) -> None:
        """Check rendered arguments before starting the runtime; raise :class:`MlopsException`."""
        if not isinstance(self.pipeline_name, str) or not PIPELINE_NAME.match(self.pipeline_name):
            raise InvalidArgumentError(
                f"{self.task_id}: pipeline_name {self.pipeline_name!r} is not valid: use letters, digits, "
                "'_', '.' or '-' (at most 128 characters, starting with a letter or digit)"
            )
        self.typed_args()

    def runtime_checks(self) -> list[tuple[str, dict[str, Any], list[str]]]:
        """Checks of the rendered arguments that need this task's runtime (a file only TFX can parse), as
        ``(step, params, binds)``: the pipeline's first task runs them before anything is ingested."""
        return []

    def companion_nodes(self) -> list[dict[str, Any]]:
        """Nodes that are no Airflow task of their own but run first in this task (e.g. a resolver)."""
        return []

    @contextlib.contextmanager
    def _rendered(self, context: Any) -> Iterator[None]:
        """This operator's fields rendered as its own task will see them, meanwhile; left as it was after."""
        saved = {name: getattr(self, name) for name in self.template_fields}
        try:
            for name, value in saved.items():
                setattr(self, name, self.render_template(value, context))
            yield
        finally:
            for name, value in saved.items():
                setattr(self, name, value)

    def _args_rendered_with(self, context: Any) -> dict[str, Any]:
        """``component_args()`` as this operator's own task would see them (defaults for empty values apply)."""
        with self._rendered(context):
            return self.component_args()

    def check_pipeline_args(self, context: Any) -> None:
        """At the pipeline's first task: check the arguments of every other TFX task of the DAG as that task
        will render them, so a mistake in the Evaluator's or the Trainer's params fails the run before
        anything is ingested or trained, naming the task; then their :meth:`runtime_checks` (an EvalConfig
        file parsed in the TFX runtime). Arguments that can only be rendered later (an upstream task's
        result) are left to their own task."""
        checks: list[tuple[TfxComponentOperator, str, dict[str, Any], list[str]]] = []
        for task in (self.dag.tasks if self.dag is not None else []):
            if task is self or not isinstance(task, TfxComponentOperator):
                continue
            try:
                with task._rendered(context):
                    task.validate_args()
                    checks.extend((task, *check) for check in task.runtime_checks())
            except InvalidArgumentError as err:
                raise InvalidArgumentError(f"{self.task_id}: the run cannot succeed: {err}") from None
            except Exception:  # noqa: BLE001 - not renderable yet (needs an upstream result): checked later
                continue
        for task, step, params, binds in checks:
            try:
                task.hook.run_step(step, params, context=self.step_context(context), binds=binds)
            except RuntimeStepRejected as err:
                raise InvalidArgumentError(f"{self.task_id}: the run cannot succeed: {task.task_id}: "
                                           f"{err.error.get('message') or err}") from None

    def node_spec(self, *, target: bool, context: Any = None) -> dict[str, Any]:
        """This node as the pipeline spec names it: component, inputs and its arguments, typed by the
        definition (another task's node only shapes the pipeline here: see ``Component.typed_args``)."""
        definition = self.definition
        args = self.component_args()
        if not target and context is not None:
            try:  # other nodes' fields are not rendered in this task: render them for a faithful spec
                args = self._args_rendered_with(context)
            except Exception:  # noqa: BLE001 - a non-target node's args only need the right shape
                pass
        return {"id": self.task_id, "component": definition.name, "inputs": dict(self.tfx_inputs),
                "args": self.node_args(definition, args, target=target)}

    def node_args(self, definition: Component, args: dict[str, Any], *, target: bool) -> dict[str, Any]:
        try:
            return definition.typed_args(args, lenient=not target)
        except ComponentArgumentError as err:
            raise InvalidArgumentError(f"{self.task_id}: {err}") from None

    def upstream_nodes(self, context: Any = None) -> list[dict[str, Any]]:
        """This node and its companions as another task's pipeline spec holds them: rendered as this
        task will render them where that is possible (params), else as they are (their shape only)."""
        if context is not None:
            try:
                with self._rendered(context):
                    return [self.node_spec(target=False), *self.companion_nodes()]
            except InvalidArgumentError:
                raise
            except Exception:  # noqa: BLE001 - not renderable here (an upstream result): the shape suffices
                pass
        return [self.node_spec(target=False, context=context), *self.companion_nodes()]

    def pipeline_spec(self, hook: RuntimeHook, context: Any = None) -> dict[str, Any]:
        """This node and every TFX node upstream of it, as the runtime's JSON pipeline spec."""
        nodes = [self.node_spec(target=True), *self.companion_nodes()]
        seen = {self.task_id}
        pending = [ref["node"] for ref in self.tfx_inputs.values()]
        while pending:
            task_id = pending.pop()
            if task_id in seen:
                continue
            seen.add(task_id)
            if self.dag is None or not self.dag.has_task(task_id):
                raise MlopsException(f"{self.task_id}: its input comes from task {task_id!r}, which is not in the DAG")
            task = self.dag.get_task(task_id)
            if not isinstance(task, TfxComponentOperator):
                raise MlopsException(f"{self.task_id}: its input task {task_id!r} is not a TFX component operator")
            nodes.extend(task.upstream_nodes(context))
            pending.extend(ref["node"] for ref in task.tfx_inputs.values())
        return {
            "pipeline_name": self.pipeline_name,
            "pipeline_root": hook.pipeline_root(self.pipeline_name, self.pipeline_root),
            "metadata": hook.metadata,
            "nodes": nodes,
        }

    # -- execution --------------------------------------------------------------------
    @cached_property
    def hook(self) -> RuntimeHook:
        return RuntimeHook(runtime=self.runtime, mlops_conn_id=self.mlops_conn_id, backend=self.backend,
                           settings=kubernetes_settings(self.task_id, self.kubernetes))

    def step_context(self, context: Any) -> dict[str, Any]:
        """Where a step request comes from (names and labels the pods of the Kubernetes backend)."""
        return task_context(self, context)

    def node_params(self, context: Any) -> tuple[dict[str, Any], list[str]]:
        """The ``tfx.run_node`` parameters of this task, and the local paths it needs."""
        if not self.tfx_inputs:  # the pipeline's first task checks the others' arguments too
            self.check_pipeline_args(context)
        self.validate_args()
        spec = self.pipeline_spec(self.hook, context)
        binds = [spec["pipeline_root"], *self.host_paths()]
        if "sqlite" in spec["metadata"]:
            binds.append(os.path.dirname(spec["metadata"]["sqlite"]))
        if _is_local_path(spec["pipeline_root"]):
            os.makedirs(spec["pipeline_root"], exist_ok=True)  # a rootfs runtime can only see existing paths
        return {"pipeline": spec, "node_id": self.task_id, "run_id": context["run_id"]}, binds

    def placement(self) -> Placement:
        """How many processes this node runs on (one; the Horovod trainer says otherwise)."""
        return ONE_PROCESS

    def run_node(self, context: Any, prepared: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run this task's node where the settings say; when deferrable and the step runner can be
        waited for in the triggerer (a pod, a training job), defer until it ends (``prepared`` travels
        with the deferral, for :meth:`finish`)."""
        params, binds = self.node_params(context)
        step_context, placement = self.step_context(context), self.placement()
        if self.deferrable:
            handle = self.hook.start_step("tfx.run_node", params, context=step_context, timeout=self.step_timeout,
                                          placement=placement, poll_interval=self.poll_interval)
            if handle is not None:
                if not handle["ended"]:
                    self.log.info("deferring until %s %s/%s of step %s ends", handle.get("launcher", handle["runner"]),
                                  handle["namespace"], handle["name"], handle["step"])
                    self.defer(trigger=self.hook.step_trigger(handle, self.poll_interval),
                               method_name="execute_complete", kwargs={"handle": handle, "prepared": prepared or {}})
                return self.report(self.hook.finish_step(handle, None, poll_interval=self.poll_interval))
        return self.report(self.hook.run_step("tfx.run_node", params, context=step_context, binds=binds,
                                              timeout=self.step_timeout, placement=placement,
                                              poll_interval=self.poll_interval))

    def execute_complete(self, context: Any, event: dict[str, Any], handle: dict[str, Any] | None = None,
                         prepared: dict[str, Any] | None = None) -> Any:
        """Finish after the deferred node ended, from the trigger's event and what was prepared before
        deferring: read the node's result and :meth:`finish` with it (nothing is decided or run again)."""
        if not handle:
            raise MlopsException(f"{self.task_id}: resumed without the handle of its step")
        result = self.hook.finish_step(handle, event, poll_interval=self.poll_interval)  # a failed step raises here
        return self.finish(context, self.report(result), prepared or {})

    def report(self, result: dict[str, Any]) -> dict[str, Any]:
        """Log what the node did and produced; return ``result``."""
        verb = "reused the execution of an earlier try" if result.get("reused") else "ran"
        self.log.info("%s %s: execution %s (%s)", verb, result["component"], result["execution_id"], result["state"])
        for key, artifacts in result.get("outputs", {}).items():
            for artifact in artifacts:
                self.log.info("output %s: %s %s at %s%s", key, artifact["type"], artifact["id"], artifact["uri"],
                              f" (span {artifact['span']})" if "span" in artifact else "")
        return result

    def prepare(self, context: Any) -> dict[str, Any]:
        """What this task decides before its node runs (JSON-serialisable: it travels with a deferral
        to :meth:`finish`). Raise to fail the task before anything runs."""
        return {}

    def finish(self, context: Any, result: dict[str, Any], prepared: dict[str, Any]) -> dict[str, Any]:
        """The task's return value from the node's ``result`` (and what :meth:`prepare` decided)."""
        return result

    def execute(self, context: Any) -> dict[str, Any]:
        prepared = self.prepare(context)
        return self.finish(context, self.run_node(context, prepared), prepared)

    def record(self, context: Any, section: dict[str, Any]) -> None:
        """Add what this task did to its run's record (:mod:`~airflow_mlops.utils.run_records`, read by the
        MLOps pages); never fails the task."""
        record_task(self.hook.state_dir, self.pipeline_name, self.dag_id, (context or {}).get("run_id"),
                    self.task_id, {"component": self.definition.name, "at": time.time(), **section})

    def on_kill(self) -> None:
        self.hook.kill()


class CsvExampleGenOperator(TfxComponentOperator):
    """Ingest a directory of CSV files as TFX Examples (TFX ``CsvExampleGen``).

    :param input_base: directory of CSV files (templated). Empty or None: ``[mlops] data_root``
        (or the connection's), else the Chicago taxi sample that ships inside the TFX wheel.
    :param input_pattern: file pattern under ``input_base`` (templated). ``auto`` picks
        ``span-{SPAN}/version-{VERSION}/*``, ``span-{SPAN}/*`` or ``*`` from the layout.
    :param span: ingest this span instead of the latest (templated; None = latest).
    :param splits: output split name → hash buckets (default ``{"train": 2, "eval": 1}``).
    :param label_column: the CSV column the label comes from (templated): a span whose files lack it, or where
        it is empty or one value in every row, is refused (as is a file with a UTF-8 byte-order mark, always).
        Empty: not checked.
    """

    definition = components.CSV_EXAMPLE_GEN
    template_fields: Sequence[str] = (*TfxComponentOperator.template_fields, "input_base", "input_pattern", "span",
                                      "label_column")

    def __init__(
        self,
        *,
        input_base: str | None = None,
        input_pattern: str = "auto",
        span: int | str | None = None,
        splits: dict[str, int] | None = None,
        label_column: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.input_base = input_base
        self.input_pattern = input_pattern
        self.span = span
        self.splits = splits
        self.label_column = label_column

    def _input_base(self) -> str:
        """The argument, else ``[mlops] data_root`` (or the connection's), else the taxi sample."""
        return self.input_base or self.hook.settings.data_root or SAMPLE_TAXI

    def component_args(self) -> dict[str, Any]:
        return {"input_base": self._input_base(), "input_pattern": self.input_pattern or "auto",
                "span": self.span, "splits": self.splits}

    def validate_args(self) -> None:
        super().validate_args()
        base = self._input_base()
        if base != SAMPLE_TAXI and _is_local_path(base) and not os.path.isdir(base):
            raise InvalidArgumentError(f"{self.task_id}: input_base {base!r} is not an existing directory of CSV files")
        span = self.typed_args()["span"]
        if base != SAMPLE_TAXI and _is_local_path(base):
            self._check_data(base, span)
        if self.splits is not None and (
            not self.splits or not all(isinstance(v, int) and v > 0 for v in self.splits.values())
        ):
            raise InvalidArgumentError(f"{self.task_id}: splits must map names to positive hash buckets, got {self.splits!r}")

    def _check_data(self, base: str, span: int | None) -> None:
        """Refuse, before any TFX execution starts, a span that does not exist (naming those that do), a
        directory or span without a data file, a file with a byte-order mark and a missing, empty or constant
        label (:func:`~airflow_mlops.utils.csv_data.check_csv_files`); none would succeed on a retry."""
        spans = sorted(int(m.group(1)) for entry in os.listdir(base)
                       if (m := re.fullmatch(r"span-(\d+)", entry)) and os.path.isdir(os.path.join(base, entry)))
        if span is not None and span not in spans:
            there = f"its spans: {', '.join(map(str, spans))}" if spans else "it has no span-<N>/ directories"
            raise InvalidArgumentError(f"{self.task_id}: span {span} does not exist under {base} ({there}); "
                                       "leave span empty for the latest")
        folder = os.path.join(base, f"span-{span if span is not None else spans[-1]}") if spans else base

        def has_data(path: str) -> bool:
            for root, dirs, files in os.walk(path):
                dirs[:] = [] if root == base and not spans else dirs  # a flat directory: its files only
                if any(not f.startswith(".") and os.path.getsize(os.path.join(root, f)) > 0 for f in files):
                    return True
            return False

        if not has_data(folder):
            raise InvalidArgumentError(f"{self.task_id}: {folder} holds no data file: put CSV files there "
                                       "(a header line and rows), or point data_root elsewhere")
        try:
            check_csv_files(span_files(folder, self.input_pattern), self.label_column)
        except CsvDataError as err:
            raise InvalidArgumentError(f"{self.task_id}: {err}") from None

    def host_paths(self) -> list[str]:
        base = self._input_base()
        return [base] if base != SAMPLE_TAXI and _is_local_path(base) else []


class StatisticsGenOperator(TfxComponentOperator):
    """Compute statistics of each split of the examples (TFX ``StatisticsGen``).

    :param examples: the example-gen operator (or its task id).
    """

    definition = components.STATISTICS_GEN

    def __init__(self, *, examples: TfxComponentOperator | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._wire_input("examples", examples)

    def finish(self, context: Any, result: dict[str, Any], prepared: dict[str, Any]) -> dict[str, Any]:
        for split, stats in result.get("statistics", {}).items():
            self.log.info("split %s: %s examples, %s features", split, stats["num_examples"], stats["num_features"])
        return result


class ImportSchemaGenOperator(TfxComponentOperator):
    """Import a curated schema file (TFX ``ImportSchemaGen``).

    :param schema_file: path of a ``schema.pbtxt`` (templated).
    """

    definition = components.IMPORT_SCHEMA_GEN
    template_fields: Sequence[str] = (*TfxComponentOperator.template_fields, "schema_file")

    def __init__(self, *, schema_file: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.schema_file = schema_file

    def component_args(self) -> dict[str, Any]:
        return {"schema_file": self.schema_file}

    def validate_args(self) -> None:
        super().validate_args()
        if not self.schema_file or (_is_local_path(self.schema_file) and not os.path.isfile(self.schema_file)):
            raise InvalidArgumentError(f"{self.task_id}: schema_file {self.schema_file!r} does not exist")

    def host_paths(self) -> list[str]:
        return [os.path.dirname(os.path.abspath(self.schema_file))] if _is_local_path(self.schema_file) else []

    def finish(self, context: Any, result: dict[str, Any], prepared: dict[str, Any]) -> dict[str, Any]:
        self.record(context, {"schema_source": "curated", "reference_version": None, "schema_file": self.schema_file})
        return {**result, "schema_source": "curated", "reference_version": None}


class SchemaGenOperator(TfxComponentOperator):
    """Produce the schema that this run's data is validated against.

    Never validates new data only against a schema inferred from that same data: in order,

    1. ``reference_schema`` (a curated ``schema.pbtxt``, templated) is imported, if given;
    2. else the pipeline's kept reference schema (the schema of its first accepted run,
       versioned under ``{state_dir}/schemas``) is imported;
    3. else (first run) the schema is inferred by TFX ``SchemaGen``; it becomes the
       reference once :class:`ExampleValidatorOperator` accepts the data.

    :param statistics: the statistics-gen operator (or its task id).
    :param reference_schema: optional curated schema file (templated).
    :param infer_feature_shape: passed to SchemaGen when inferring.
    """

    definition = components.SCHEMA_GEN
    template_fields: Sequence[str] = (*TfxComponentOperator.template_fields, "reference_schema")

    def __init__(
        self,
        *,
        statistics: TfxComponentOperator | str,
        reference_schema: str | None = None,
        infer_feature_shape: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.reference_schema = reference_schema
        self.infer_feature_shape = infer_feature_shape
        self._wire_input("statistics", statistics)
        self._decision: tuple[str, str | None, int | None] | None = None

    def decide(self) -> tuple[str, str | None, int | None]:
        """(source, schema file, reference version): source is ``curated``, ``reference`` or ``inferred``."""
        if self._decision is None:
            if self.reference_schema:
                self._decision = ("curated", self.reference_schema, None)
            else:
                try:  # an empty or unreadable reference is refused, not validated against
                    current = ReferenceSchemaStore(self.hook.schema_store_dir).checked_current(self.pipeline_name)
                except ReferenceSchemaError as err:
                    raise InvalidArgumentError(f"{self.task_id}: {err}") from None
                if current is not None:
                    self._decision = ("reference", str(current.schema_file), current.version)
                else:
                    self._decision = ("inferred", None, None)
        return self._decision

    def component_args(self) -> dict[str, Any]:
        return {"infer_feature_shape": self.infer_feature_shape}

    def node_spec(self, *, target: bool, context: Any = None) -> dict[str, Any]:
        """A kept or curated schema is imported (ImportSchemaGen) by this task; otherwise SchemaGen infers."""
        if target and self.decide()[0] != "inferred":
            schema = components.IMPORT_SCHEMA_GEN
            return {"id": self.task_id, "component": schema.name, "inputs": {},
                    "args": self.node_args(schema, {"schema_file": self.decide()[1]}, target=True)}
        return super().node_spec(target=target, context=context)

    def validate_args(self) -> None:
        super().validate_args()
        if self.reference_schema and _is_local_path(self.reference_schema) and not os.path.isfile(self.reference_schema):
            raise InvalidArgumentError(f"{self.task_id}: reference_schema {self.reference_schema!r} does not exist")

    def host_paths(self) -> list[str]:
        source, schema_file, _ = self.decide()
        if schema_file and _is_local_path(schema_file):
            return [os.path.dirname(os.path.abspath(schema_file))]
        return []

    def prepare(self, context: Any) -> dict[str, Any]:
        """Decide (and say) which schema this run validates against: once, before the node runs."""
        self.validate_args()
        source, schema_file, version = self.decide()
        if source == "curated":
            self.log.info("validating against the curated schema %s", schema_file)
        elif source == "reference":
            self.log.info("validating against reference schema v%s of pipeline %s (%s)", version, self.pipeline_name, schema_file)
        else:
            self.log.info(
                "pipeline %s has no reference schema yet: inferring one from this span; "
                "it becomes the reference once validation accepts the data", self.pipeline_name,
            )
        return {"schema_source": source, "reference_version": version}

    def finish(self, context: Any, result: dict[str, Any], prepared: dict[str, Any]) -> dict[str, Any]:
        self.record(context, {"schema_source": prepared["schema_source"],
                              "reference_version": prepared["reference_version"]})
        return {**result, "schema_source": prepared["schema_source"], "reference_version": prepared["reference_version"]}


class ExampleValidatorOperator(TfxComponentOperator):
    """Validate statistics against the schema (TFX ``ExampleValidator``); fail on any anomaly.

    The task fails with :class:`DataValidationError`, listing each anomaly (split, feature,
    kind, description), so downstream tasks do not run. When the data is accepted and the
    schema was inferred in this run (the pipeline's first accepted run), that schema is kept
    as the pipeline's reference schema v1.

    :param statistics: the statistics-gen operator (or its task id).
    :param schema: the schema operator (or its task id).
    :param keep_reference_schema: keep the first accepted inferred schema as the reference.
    :param max_unseen_category_fraction: in the kept reference, a categorical value the first
        span never had is an anomaly only above this fraction of examples (TFDV
        ``min_domain_mass``); 0 makes any new value an anomaly.
    :param min_examples: every split needs at least this many examples, else the data is
        rejected naming the span and the count (templated; default ``[mlops] min_examples``, 1).
    """

    definition = components.EXAMPLE_VALIDATOR
    template_fields: Sequence[str] = (*TfxComponentOperator.template_fields, "min_examples")

    def __init__(
        self,
        *,
        statistics: TfxComponentOperator | str,
        schema: TfxComponentOperator | str,
        keep_reference_schema: bool = True,
        max_unseen_category_fraction: float = 0.01,
        min_examples: int | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.keep_reference_schema = keep_reference_schema
        self.max_unseen_category_fraction = max_unseen_category_fraction
        self.min_examples = min_examples
        self._wire_input("statistics", statistics)
        self._wire_input("schema", schema)

    def validate_args(self) -> None:
        super().validate_args()
        if not 0 <= float(self.max_unseen_category_fraction) < 1:
            raise InvalidArgumentError(
                f"{self.task_id}: max_unseen_category_fraction must be in [0, 1), got {self.max_unseen_category_fraction!r}"
            )
        self._min_examples()

    def _min_examples(self) -> int:
        value = self.min_examples if self.min_examples not in (None, "") else self.hook.settings.min_examples
        try:
            minimum = int(value)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"{self.task_id}: min_examples must be an integer, got {value!r}") from None
        if minimum < 1:
            raise InvalidArgumentError(f"{self.task_id}: min_examples must be at least 1, got {minimum}")
        return minimum

    def check_example_counts(self, context: Any) -> None:
        """Reject a span whose split has fewer than ``min_examples`` examples (a header-only CSV has none)."""
        statistics = context["ti"].xcom_pull(task_ids=self.tfx_inputs["statistics"]["node"]) or {}
        examples = ((statistics.get("inputs") or {}).get("examples") or [{}])[0]
        counts = {split: (statistics.get("statistics") or {}).get(split, {}).get("num_examples", 0)
                  for split in examples.get("splits") or sorted(statistics.get("statistics") or {})}
        minimum = self._min_examples()
        short = {split: count for split, count in counts.items() if count < minimum}
        if short or not counts:
            span = f"span {examples['span']}" if "span" in examples else "the data"
            detail = ", ".join(f"split {s} has {c}" for s, c in sorted(short.items())) or "no split was read"
            message = (f"{span} is too small to validate or train on: {detail} example(s); at least {minimum} "
                       "are needed ([mlops] min_examples). Nothing was kept or announced.")
            self.log.error(message)
            raise DataValidationError(message, [{"split": s, "kind": "TOO_FEW_EXAMPLES", "count": c,
                                                 "minimum": minimum} for s, c in sorted(short.items())])

    def prepare(self, context: Any) -> dict[str, Any]:
        self.check_example_counts(context)  # before TFDV: an empty span has no anomaly to find
        return {}

    def finish(self, context: Any, result: dict[str, Any], prepared: dict[str, Any]) -> dict[str, Any]:
        anomalies = result.get("anomalies", [])
        self.record(context, {"accepted": not anomalies, "anomalies": anomalies, "spans": _spans(self._statistics(context))})
        if anomalies:
            lines = [
                f"  - split {a['split']}, feature {visible(a['feature'])}: {a['kind']} ({a['severity']}): "
                f"{a['description']}"
                for a in anomalies
            ]
            message = f"{len(anomalies)} data anomalies found by ExampleValidator:\n" + "\n".join(lines)
            self.log.error(message)
            raise DataValidationError(message, anomalies)
        self.log.info("no anomalies: the data matches the schema")
        self._mark_validated(context)
        if self.keep_reference_schema:
            self._maybe_keep_reference(context, result)
        return result

    def _statistics(self, context: Any) -> dict[str, Any]:
        """The statistics task's result (its inputs name the examples artifacts, with their spans)."""
        try:
            return context["ti"].xcom_pull(task_ids=self.tfx_inputs["statistics"]["node"]) or {}
        except (KeyError, TypeError, AttributeError):
            return {}

    def _mark_validated(self, context: Any) -> None:
        """Record in ML Metadata that the data gate accepted these examples: training windows take only such spans."""
        examples = ((self._statistics(context).get("inputs") or {}).get("examples") or [{}])[0]
        if "id" not in examples:
            self.log.warning("the statistics task's result names no examples artifact: not marked as validated")
            return
        metadata = self.hook.metadata
        binds = [os.path.dirname(metadata["sqlite"])] if "sqlite" in metadata else []
        marked = self.hook.run_step("mlmd.mark_validated", {"metadata": metadata, "artifact_id": examples["id"],
                                                            "run_id": context["run_id"]},
                                    context=self.step_context(context), binds=binds)
        self.log.info("examples artifact %s (span %s) marked as validated in ML Metadata: training windows may "
                      "train on it", marked["artifact_id"], marked["span"])

    def _maybe_keep_reference(self, context: Any, result: dict[str, Any]) -> None:
        schema_task = self.tfx_inputs["schema"]["node"]
        schema_result = context["ti"].xcom_pull(task_ids=schema_task) or {}
        if schema_result.get("schema_source") != "inferred":
            return
        schema_file = schema_result.get("schema_file")
        if not schema_file or not os.path.isfile(schema_file) or not schema_features(schema_file):
            self.log.warning("the inferred schema %s has no feature: not keeping it as the reference", schema_file)
            return
        store = ReferenceSchemaStore(self.hook.schema_store_dir)
        if store.current(self.pipeline_name) is not None:
            return  # a concurrent run promoted one first
        staging = self.hook.state_dir / "tmp" / f"reference-{self.pipeline_name}-{os.getpid()}.pbtxt"
        staging.parent.mkdir(parents=True, exist_ok=True)
        relaxed = self.hook.run_step(
            "tfx.relax_schema",
            {"schema_file": schema_file, "dest": str(staging),
             "max_unseen_category_fraction": self.max_unseen_category_fraction},
            context=self.step_context(context), binds=[os.path.dirname(schema_file)],
        )
        try:
            kept = store.promote(
                self.pipeline_name, staging, run_id=context["run_id"], inferred_schema=schema_file,
                schema_artifact_id=schema_result.get("outputs", {}).get("schema", [{}])[0].get("id"),
                max_unseen_category_fraction=self.max_unseen_category_fraction,
                relaxed_features=relaxed["relaxed_features"],
            )
        finally:
            staging.unlink(missing_ok=True)
        self.log.info("kept the schema of this accepted run as reference schema v%s of pipeline %s: %s "
                      "(unseen categories tolerated up to %.1f%% in %s)", kept.version, self.pipeline_name,
                      kept.schema_file, 100 * self.max_unseen_category_fraction,
                      ", ".join(relaxed["relaxed_features"]) or "no feature")


class _ModuleFileMixin:
    """For components that run user code from a TFX module file (``module_file``, templated)."""

    task_id: str
    module_file: str | None

    def _module_file(self) -> str:
        return self.module_file or DEFAULT_TAXI_MODULE

    def _module_arg(self) -> str:
        """The module file as the runtime gets it: a file of this package by its place in the package (a pod's
        image has the package elsewhere), any other file by its path."""
        module = Path(self._module_file()).resolve()
        if module.is_relative_to(PACKAGE_DIR):
            return package_file(module.relative_to(PACKAGE_DIR).as_posix())
        return self._module_file()

    def _validate_module_file(self) -> None:
        module = self._module_file()
        if _is_local_path(module) and not os.path.isfile(module):
            raise InvalidArgumentError(f"{self.task_id}: module_file {module!r} does not exist")
        if _is_local_path(module) and not module.endswith(".py"):
            raise InvalidArgumentError(f"{self.task_id}: module_file {module!r} is not a Python file")

    def host_paths(self) -> list[str]:
        module = self._module_file()
        return [os.path.dirname(os.path.abspath(module))] if _is_local_path(module) else []

    def module_record(self) -> dict[str, Any]:
        """The module file and the SHA-256 of its content (what code made the model), for the run's record."""
        module = self._module_file()
        digest = None
        if _is_local_path(module):
            try:
                digest = hashlib.sha256(Path(module).read_bytes()).hexdigest()
            except OSError:
                pass
        return {"module_file": module, "module_sha256": digest}


class TransformOperator(_ModuleFileMixin, TfxComponentOperator):
    """Feature engineering with TensorFlow Transform (TFX ``Transform``).

    :param examples: the example-gen operator (or its task id).
    :param schema: the schema operator (or its task id).
    :param module_file: a Python file with ``preprocessing_fn(inputs)`` (templated). Default:
        the taxi module shipped with the provider (``airflow_mlops/runtime_side/modules/taxi.py``).
    :param training_spans: train on the newest N validated spans of the pipeline, not only the
        span of this run (templated; default ``[mlops] training_spans``, 1).
    :param since_span: train on every validated span from this one on (templated; with
        ``training_spans``, the narrower of the two).

    With a window, a resolver run in this task (``<task_id>.training_window``) picks among the
    pipeline's Examples artifacts in ML Metadata those the data gate accepted (the newest
    artifact of each span), and Transform analyzes and transforms all of them: the Trainer trains
    on every span of the window, and ML Metadata records each as an input of Transform. The
    Evaluator still evaluates on the run's own (newest) span.
    """

    definition = components.TRANSFORM
    template_fields: Sequence[str] = (*TfxComponentOperator.template_fields, "module_file", "training_spans",
                                      "since_span")

    def __init__(
        self,
        *,
        examples: TfxComponentOperator | str,
        schema: TfxComponentOperator | str,
        module_file: str | None = None,
        training_spans: int | str | None = None,
        since_span: int | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.module_file = module_file
        self.training_spans = training_spans
        self.since_span = since_span
        self._wire_input("examples", examples)
        self._wire_input("schema", schema)

    def component_args(self) -> dict[str, Any]:
        return {"module_file": self._module_arg()}

    @property
    def window_node_id(self) -> str:
        return f"{self.task_id}.training_window"

    def window(self) -> dict[str, Any] | None:
        """The training window's resolver arguments; None for the run's own span only (no resolver)."""
        if any("{{" in str(value) for value in (self.training_spans, self.since_span)):
            return None  # another task's spec, where this one's params could not be rendered: shape only
        last = self.training_spans if self.training_spans not in (None, "", "None") else self.hook.settings.training_spans
        args = {"examples_node": self.tfx_inputs["examples"]["node"], "last_spans": last,
                "since_span": self.since_span}
        typed = self.node_args(components.TRAINING_WINDOW_RESOLVER, args, target=True)
        if typed["last_spans"] in (None, 1) and typed["since_span"] is None:
            return None
        return typed

    def companion_nodes(self) -> list[dict[str, Any]]:
        window = self.window()
        if window is None:
            return []
        return [{"id": self.window_node_id, "component": components.TRAINING_WINDOW_RESOLVER.name, "inputs": {},
                 "args": window, "companion_of": self.task_id}]

    def node_spec(self, *, target: bool, context: Any = None) -> dict[str, Any]:
        spec = super().node_spec(target=target, context=context)
        if self.window() is not None:
            spec["inputs"]["examples"] = {"node": self.window_node_id, "output": "examples"}
        return spec

    def validate_args(self) -> None:
        super().validate_args()
        self.window()
        self._validate_module_file()

    def finish(self, context: Any, result: dict[str, Any], prepared: dict[str, Any]) -> dict[str, Any]:
        spans = _spans(result)
        self.log.info("analyzed and transformed span(s) %s", ", ".join(map(str, spans)) or "of this run")
        self.record(context, {"training_spans": spans, **self.module_record()})
        return {**result, "training_spans": spans}


class HorovodTrainerOperator(_ModuleFileMixin, TfxComponentOperator):
    """Train with Horovod data parallelism (TFX ``Trainer`` with a Horovod executor).

    Locally, ``num_workers`` Gloo workers run the module file's ``run_fn`` in the TFX runtime
    (``horovodrun -np N --gloo``); rank 0 alone writes the model, checkpoints and logs, and
    every worker's log reaches the task log prefixed with its rank (``[1]<stdout>:``).
    Checkpoints go to ``{pipeline_root}/<task_id>/.checkpoints/<run_id>``, so a retry of a
    task that died midway resumes from the last one.

    :param examples: the Transform operator (its transformed examples are trained on).
    :param transform_graph: the Transform operator (its graph is applied at serving time).
    :param schema: the schema operator.
    :param module_file: file with ``run_fn(fn_args)`` (templated); default: the taxi module.
    :param num_workers: Horovod workers (templated).
    :param gpus_per_worker: GPUs per worker (Kubernetes backend; locally it must be 0, and a
        value above 0 fails the task before anything runs).
    :param train_steps: training steps, shared between the workers (templated).
    :param eval_steps: evaluation batches after training (templated).
    :param min_workers: with ``max_workers``: elastic Horovod between the two (Kubernetes backend).
    :param max_workers: see ``min_workers``.
    :param worker_resources: ``requests``/``limits`` of each worker pod (Kubernetes backend;
        GPUs come from ``gpus_per_worker``); default: ``[mlops] kubernetes_resources``.
    :param run_policy: the MPIJob's ``clean_pod_policy``, ``backoff_limit``,
        ``active_deadline_seconds`` (default: ``step_timeout``) and ``ttl_seconds_after_finished``;
        a TrainJob takes ``active_deadline_seconds`` only (its TrainingRuntime decides the rest,
        and another value is refused).
    :param launcher: what runs the training on the Kubernetes backend (templated): ``"mpijob"``, an
        MPIJob of the Kubeflow MPI Operator, or ``"trainjob"``, a TrainJob of Kubeflow Trainer v2
        (``trainer.kubeflow.org/v1alpha1``) run from the provider's TrainingRuntime
        ``airflow-mlops-horovod`` (``airflow-mlops-horovod-cuda`` with GPUs), which must be applied
        from ``deploy/kubernetes/trainer/`` with the nodes' image set to the step's. A TrainJob has no
        elastic training (``min_workers``/``max_workers`` are refused: use ``"mpijob"``). Locally it
        is not used (the node starts its ranks itself), but must still be one of the two.

    On the Kubernetes backend the node runs as an MPIJob (``kubeflow.org/v2beta1``) or a TrainJob
    (``launcher``): the launcher pod runs the TFX node (once: ML Metadata, inputs, outputs) and
    its executor starts a rank per GPU (or one per CPU worker) on the worker (node) pods with
    ``horovodrun`` over the hostfile the operator writes. The task follows the launcher's log (when
    not deferred) and waits for the job's ``Succeeded``/``Failed`` (TrainJob: ``Complete``/``Failed``)
    condition; a failure names the condition's reason and the last lines of the launcher's log. A
    retry reattaches to the job of its earlier try (or trains again when that one failed); killing
    the task deletes the job. Both launchers behave the same (GPUs, retries, ``on_kill``,
    ``deferrable``).
    """

    definition = components.HOROVOD_TRAINER
    template_fields: Sequence[str] = (
        *TfxComponentOperator.template_fields, "module_file", "num_workers", "train_steps", "eval_steps", "launcher",
    )

    def __init__(
        self,
        *,
        examples: TfxComponentOperator | str,
        transform_graph: TfxComponentOperator | str,
        schema: TfxComponentOperator | str,
        module_file: str | None = None,
        num_workers: int | str = 2,
        gpus_per_worker: int = 0,
        train_steps: int | str = 1000,
        eval_steps: int | str = 100,
        min_workers: int | None = None,
        max_workers: int | None = None,
        worker_resources: dict[str, Any] | None = None,
        run_policy: dict[str, Any] | None = None,
        launcher: str = "mpijob",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.launcher = launcher
        self.min_workers = min_workers
        self.max_workers = max_workers
        self.worker_resources = worker_resources
        self.run_policy = run_policy
        self.module_file = module_file
        self.num_workers = num_workers
        self.gpus_per_worker = gpus_per_worker
        self.train_steps = train_steps
        self.eval_steps = eval_steps
        self._checkpoint_dir: str | None = None
        self._wire_input("examples", examples)
        self._wire_input("transform_graph", transform_graph)
        self._wire_input("schema", schema)

    def component_args(self) -> dict[str, Any]:
        return {"module_file": self._module_arg(), "num_workers": self.num_workers,
                "gpus_per_worker": self.gpus_per_worker, "train_steps": self.train_steps,
                "eval_steps": self.eval_steps, "checkpoint_dir": self._checkpoint_dir}

    def validate_args(self) -> None:
        super().validate_args()  # num_workers, steps, gpus_per_worker: typed by the definition
        if self.launcher not in LAUNCHERS:  # on every backend: a DAG that works locally works on Kubernetes
            raise InvalidArgumentError(f"{self.task_id}: launcher must be one of {sorted(LAUNCHERS)}, "
                                       f"got {self.launcher!r}")
        try:  # what the runner of this backend cannot give (GPUs on this machine, an unknown run_policy key)
            self.hook.check_placement(self.placement())
        except InvalidArgumentError as err:
            raise InvalidArgumentError(f"{self.task_id}: {err}") from None
        self._validate_module_file()

    def prepare(self, context: Any) -> dict[str, Any]:
        run = safe_name(context["run_id"])
        self._checkpoint_dir = os.path.join(self.hook.pipeline_root(self.pipeline_name, self.pipeline_root),
                                            self.task_id, ".checkpoints", run)
        return {"checkpoint_dir": self._checkpoint_dir}

    def finish(self, context: Any, result: dict[str, Any], prepared: dict[str, Any]) -> dict[str, Any]:
        args = self.typed_args()
        self.record(context, {**self.module_record(), "num_workers": args["num_workers"],
                              "train_steps": args.get("train_steps")})
        return result

    def placement(self) -> Placement:
        """Distributed: on Kubernetes the launcher of an MPIJob or a TrainJob (``launcher``) runs the node and
        its workers hold the ranks; locally the node starts its ranks itself (``horovodrun`` in the runtime)."""
        args = self.typed_args()
        return Placement(distributed=True, workers=args["num_workers"], gpus_per_worker=args["gpus_per_worker"],
                         min_workers=self.min_workers, max_workers=self.max_workers,
                         worker_resources=self.worker_resources, run_policy=dict(self.run_policy or {}),
                         launcher=self.launcher)


#: TFMA metrics the blessing gate can use, every model type's (:mod:`airflow_mlops.evaluation`).
GATE_METRICS = tuple(METRICS)


class EvaluatorOperator(TfxComponentOperator):
    """Evaluate the trained model with TFMA and bless it or not (TFX ``Evaluator``).

    The model is blessed when ``metric`` reaches ``threshold`` on the eval split (``>=`` where
    higher is better, ``<=`` for errors such as MeanSquaredError) and is no worse than the
    baseline's by more than ``max_regression``. The baseline, resolved in this same task: the model
    ``baseline_deployment`` serves now (after a rollback, the rolled-back-to version), else — no
    such deployment yet, or none named — the latest blessed model of the pipeline (TFX's
    ``LatestBlessedModelStrategy``); none before the first blessing. The task succeeds
    either way; the result says ``blessed`` and why not, and :class:`PusherOperator` skips (with
    its downstream tasks) when the model is not blessed. Before TFMA runs, the model is checked:
    a ``label_key`` or ``prediction_key`` it lacks, or a metric its output cannot feed (binary AUC
    on a 3-class output), fails the task at once, without a retry, naming what to set.

    :param examples: the example-gen operator (its eval split is evaluated on; raw examples).
    :param model: the trainer operator.
    :param model_type: ``binary``, ``multiclass`` or ``regression`` (templated).
    :param metric: TFMA metric that gates the blessing, one of the model type's
        (:data:`GATE_METRICS`); empty: AUC, SparseCategoricalAccuracy or MeanSquaredError (templated).
    :param direction: ``auto`` (the metric's own), ``higher`` or ``lower`` is better (templated).
    :param threshold: the worst acceptable value of ``metric`` (templated).
    :param max_regression: how much worse than the baseline's ``metric`` is acceptable (templated).
    :param compare_to_baseline: compare with a baseline model (see above).
    :param baseline_deployment: the deployment whose served model is the baseline (templated);
        empty: the latest blessed model.
    :param label_key: the label, as the model's ``transform_features`` signature names it (templated).
    :param prediction_key: the serving signature's output holding the prediction; empty: its only
        output (templated).
    :param slice_features: features to slice by (a list, or comma-separated): metrics are reported
        for each value of each (templated).
    :param eval_config: a TFMA ``EvalConfig`` file (JSON or pbtxt) used instead of the one built
        from the arguments above (templated).
    """

    definition = components.EVALUATOR
    operator_extra_links = (ModelVersionLink(),)

    template_fields: Sequence[str] = (
        *TfxComponentOperator.template_fields, "model_type", "metric", "direction", "threshold", "max_regression",
        "label_key", "prediction_key", "slice_features", "eval_config", "baseline_deployment",
    )

    def __init__(
        self,
        *,
        examples: TfxComponentOperator | str,
        model: TfxComponentOperator | str,
        model_type: str = "binary",
        metric: str | None = None,
        direction: str = "auto",
        threshold: float | str = 0.5,
        max_regression: float | str = 0.0,
        compare_to_baseline: bool = True,
        label_key: str = "big_tipper",
        prediction_key: str = "",
        slice_features: list[str] | str | None = None,
        eval_config: str | None = None,
        baseline_deployment: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.baseline_deployment = baseline_deployment
        self._served_baseline: int | None = None
        self.model_type = model_type
        self.metric = metric
        self.direction = direction
        self.threshold = threshold
        self.max_regression = max_regression
        self.compare_to_baseline = compare_to_baseline
        self.label_key = label_key
        self.prediction_key = prediction_key
        self.slice_features = slice_features
        self.eval_config = eval_config
        self._wire_input("examples", examples)
        self._wire_input("model", model)

    @property
    def baseline_node_id(self) -> str:
        return f"{self.task_id}.served_model" if self._served_baseline else f"{self.task_id}.latest_blessed_model"

    def companion_nodes(self) -> list[dict[str, Any]]:
        if not self.compare_to_baseline:
            return []
        if self._served_baseline:
            return [{"id": self.baseline_node_id, "component": components.SERVED_MODEL_RESOLVER.name, "inputs": {},
                     "args": {"model_artifact_id": self._served_baseline}, "companion_of": self.task_id}]
        return [{"id": self.baseline_node_id, "component": components.LATEST_BLESSED_MODEL_RESOLVER.name,
                 "inputs": {}, "args": {}, "companion_of": self.task_id}]

    def served_baseline(self) -> dict[str, Any] | None:
        """The model ``baseline_deployment`` serves (its version and model artifact), or None — and why —
        when there is none to compare with: then the latest blessed model is the baseline."""
        from airflow_mlops.hooks.seldon import SeldonHook

        name = self.baseline_deployment or ""
        record, why_not = SeldonHook(mlops_conn_id=self.mlops_conn_id).served_version(name)
        if record is None:
            self.log.info("baseline: deployment %s: %s: the latest blessed model", name, why_not)
            return None
        if record.model_artifact_id is None or record.pipeline_name not in ("", self.pipeline_name):
            self.log.info("baseline: deployment %s serves a model of pipeline %r (or one without lineage): the "
                          "latest blessed model of %s", name, record.pipeline_name, self.pipeline_name)
            return None
        return {"deployment": name, "version": record.version, "model_artifact_id": record.model_artifact_id}

    def prepare(self, context: Any) -> dict[str, Any]:
        """Decide the baseline before the node runs: the served model when ``baseline_deployment`` serves one."""
        served = self.served_baseline() if self.compare_to_baseline and self.baseline_deployment else None
        if served is not None:
            self._served_baseline = served["model_artifact_id"]
            self.log.info("baseline: model version %s served by %s (model artifact %s)", served["version"],
                          served["deployment"], served["model_artifact_id"])
        return {"baseline": served}

    def node_spec(self, *, target: bool, context: Any = None) -> dict[str, Any]:
        spec = super().node_spec(target=target, context=context)
        if self.compare_to_baseline:
            spec["inputs"]["baseline_model"] = {"node": self.baseline_node_id, "output": "model"}
        return spec

    def _float(self, name: str) -> float:
        return float(self.typed_args()[name])

    @property
    def gate_metric(self) -> str:
        return self.metric or DEFAULT_METRIC.get(self.model_type, "AUC")

    @property
    def _slices(self) -> list[str]:
        value = self.slice_features or []
        if isinstance(value, str):
            value = value.split(",")
        return [f.strip() for f in value if f and f.strip()]

    def component_args(self) -> dict[str, Any]:
        return {"model_type": self.model_type, "metric": self.gate_metric, "direction": self.direction,
                "threshold": self.threshold, "max_regression": self.max_regression, "label_key": self.label_key,
                "prediction_key": self.prediction_key or "", "slice_features": self._slices,
                "eval_config_path": os.path.abspath(self.eval_config) if self.eval_config else ""}

    def host_paths(self) -> list[str]:
        return [os.path.abspath(self.eval_config)] if self.eval_config else []

    def runtime_checks(self) -> list[tuple[str, dict[str, Any], list[str]]]:
        """An ``eval_config`` file is parsed as a TFMA EvalConfig by the run's first task, not first here."""
        if not self.eval_config:
            return []
        path = os.path.abspath(self.eval_config)
        return [("tfx.check_eval_config", {"path": path}, [os.path.dirname(path)])]

    @property
    def higher_is_better(self) -> bool:
        try:
            return check_gate(self.model_type, self.gate_metric, self.direction or "auto", self._float("threshold"))
        except EvaluationSpecError as err:
            raise InvalidArgumentError(f"{self.task_id}: {err}") from None

    def validate_args(self) -> None:
        super().validate_args()
        if self.eval_config:
            if not os.path.isfile(self.eval_config):
                raise InvalidArgumentError(f"{self.task_id}: eval_config {self.eval_config} is not a file")
        else:
            self.higher_is_better  # noqa: B018 - raises for a gate that does not fit
            if not self.label_key:
                raise InvalidArgumentError(f"{self.task_id}: label_key is empty: name the label as the model's "
                                           "transform_features signature outputs it")

    def gate_reasons(self, evaluation: dict[str, Any]) -> list[str]:
        """Why the model was not blessed, one readable line per failed check."""
        higher = True if self.eval_config else self.higher_is_better
        word, worse, loss = (">=", "below", "drop") if higher else ("<=", "above", "rise")
        metrics = evaluation.get("metrics", {})
        reasons = []
        for failure in evaluation.get("failures", []):
            metric = failure["metric"]
            value = metrics.get("candidate", {}).get(metric)
            shown = "n/a" if value is None else f"{value:.4f}"
            if failure.get("against_baseline"):
                base = metrics.get("baseline", {}).get(metric)
                change = failure.get("value")
                reasons.append(
                    f"{metric} = {shown} is {abs(change or 0):.4f} {worse} the blessed baseline model's "
                    f"{'n/a' if base is None else f'{base:.4f}'}; allowed {loss}: {self._float('max_regression'):g}"
                )
            elif self.eval_config:
                reasons.append(f"{metric} = {shown}: {failure.get('message') or failure.get('threshold')}")
            else:
                reasons.append(f"{metric} = {shown}, threshold: {word} {self._float('threshold'):g}")
        if not reasons and not evaluation.get("blessed"):
            key = METRICS[self.gate_metric].key if self.gate_metric in METRICS else self.gate_metric
            value = evaluation.get("metrics", {}).get("candidate", {}).get(key)
            reasons.append(f"TFMA did not validate the model ({key} = {value}); see the Evaluator log")
        return reasons

    def finish(self, context: Any, result: dict[str, Any], prepared: dict[str, Any]) -> dict[str, Any]:
        evaluation = result.get("evaluation") or {}
        for model, values in sorted(evaluation.get("metrics", {}).items()):
            self.log.info("%s metrics: %s", model, ", ".join(f"{k}={v:.4f}" for k, v in sorted(values.items())))
        for name, per_model in sorted((evaluation.get("slices") or {}).items()):
            values = per_model.get("candidate", {})
            self.log.info("slice %s: %s", name, ", ".join(f"{k}={v:.4f}" for k, v in sorted(values.items())))
        baseline = evaluation.get("baseline_model")
        self.log.info("baseline: %s", f"model {baseline['id']} at {baseline['uri']}" if baseline
                      else "none (no model of this pipeline was blessed before)")
        reasons = self.gate_reasons(evaluation)
        if evaluation.get("blessed"):
            if self.eval_config:
                self.log.info("the model is BLESSED (the thresholds of %s)", self.eval_config)
            else:
                self.log.info("the model is BLESSED (%s %s %g%s)", METRICS[self.gate_metric].key,
                              ">=" if self.higher_is_better else "<=", self._float("threshold"),
                              " and no worse than the baseline" if baseline else "")
        else:
            self.log.warning("the model is NOT blessed: %s", "; ".join(reasons))
        self.mlops_page = page_path("models", query={"pipeline": self.pipeline_name})
        gate = {"model_type": self.model_type, "metric": None if self.eval_config else self.gate_metric,
                "key": None if self.eval_config else METRICS[self.gate_metric].key,
                "higher_is_better": None if self.eval_config else self.higher_is_better,
                "eval_config": self.eval_config or None, "threshold": self._float("threshold"),
                "max_regression": self._float("max_regression"), "reasons": reasons}
        self.record(context, {"blessed": bool(evaluation.get("blessed")), "gate": gate,
                              "metrics": evaluation.get("metrics") or {}, "baseline_model": baseline,
                              "served_baseline": (prepared or {}).get("baseline"), "spans": _spans(result)})
        return {**result, "blessed": bool(evaluation.get("blessed")), "gate": gate}


class PusherOperator(TfxComponentOperator):
    """Publish a blessed model as the next numeric version (TFX ``Pusher``, versioned).

    Writes ``{model_root}/<version>/`` (1, 2, 3, ...: TF Serving's layout) and a record of
    the version (run, model artifact, metrics) read by deploy and rollback. A model the
    Evaluator did not bless is not pushed: the task is **skipped**, with the reason (metric,
    value, threshold) in its log, and so are the tasks downstream of it (deploy).

    :param model: the trainer operator.
    :param model_blessing: the evaluator operator (None pushes without a gate).
    :param model_root: where versions go (templated); default ``{state_dir}/models/{pipeline_name}``.
    """

    definition = components.PUSHER
    operator_extra_links = (ModelVersionLink(),)

    template_fields: Sequence[str] = (*TfxComponentOperator.template_fields, "model_root")

    def __init__(
        self,
        *,
        model: TfxComponentOperator | str,
        model_blessing: TfxComponentOperator | str | None,
        model_root: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_root = model_root
        self._push_args: dict[str, Any] = {}
        self._wire_input("model", model)
        if model_blessing is not None:
            self._wire_input("model_blessing", model_blessing)

    def component_args(self) -> dict[str, Any]:
        return dict(self._push_args)

    def host_paths(self) -> list[str]:
        base = self._push_args.get("base_directory")
        return [base] if base and _is_local_path(base) else []

    def prepare(self, context: Any) -> dict[str, Any]:
        """Skip when the Evaluator did not bless the model; otherwise decide where and what to push."""
        evaluation: dict[str, Any] = {}
        if "model_blessing" in self.tfx_inputs:
            evaluator = self.tfx_inputs["model_blessing"]["node"]
            verdict = context["ti"].xcom_pull(task_ids=evaluator) or {}
            evaluation = verdict.get("evaluation") or {}
            if verdict and not verdict.get("blessed"):
                reasons = (verdict.get("gate") or {}).get("reasons") or ["see the Evaluator's log"]
                message = f"not pushing: {evaluator} did not bless the model: {'; '.join(reasons)}"
                self.log.warning(message)
                raise AirflowSkipException(message)
        base = self.hook.model_root(self.pipeline_name, self.model_root)
        if _is_local_path(base):
            os.makedirs(base, exist_ok=True)
        trainer = context["ti"].xcom_pull(task_ids=self.tfx_inputs["model"]["node"]) or {}
        graphs = (trainer.get("inputs") or {}).get("transform_graph") or []
        self._push_args = {
            "base_directory": base, "pipeline_name": self.pipeline_name, "run_id": context["run_id"],
            "evaluation": {"metrics": (evaluation.get("metrics") or {}).get("candidate", {})},
            # the model's raw feature spec is read from the Transform graph it was trained with
            "transform_graph": graphs[0]["uri"] if graphs else "",
        }
        return {"push_args": self._push_args}

    def finish(self, context: Any, result: dict[str, Any], prepared: dict[str, Any]) -> dict[str, Any]:
        if not result.get("pushed"):
            message = "not pushing: the model blessing says the model is not blessed"
            self.log.warning(message)
            raise AirflowSkipException(message)
        self.log.info("model version %s is at %s", result["pushed_version"], result["pushed_destination"])
        self.mlops_page = page_path("models", self.pipeline_name, int(result["pushed_version"]))
        self.record(context, {"model_version": int(result["pushed_version"]),
                              "model_root": os.path.dirname(str(result["pushed_destination"]).rstrip("/"))})
        return {**result, "model_version": int(result["pushed_version"])}
