"""One step-runner interface: where a step request runs, and how its result comes back.

A step (:mod:`airflow_mlops.runtimes.contract`) runs in a fresh runtime process
(:class:`ProcessRunner`), in the warm runtime (:class:`WarmRunner`, falling back to a fresh
process), in a pod (:class:`PodRunner`) or, for a node whose ranks each need a machine of their
own, in a training job whose launcher runs it (:class:`DistributedJobRunner`: an MPIJob or a Kubeflow
Trainer v2 TrainJob, as the placement's ``launcher`` says). :func:`choose_runner` is the one
place that picks the runner from the settings and the step's :class:`Placement` (:data:`RUNNERS`
holds the kinds); callers (the runtime hook, and through it the operators) never ask which backend
runs. A runner receives a :class:`~airflow_mlops.runtimes.context.RunnerContext` (settings, paths,
a Kubernetes client factory), never the hook that made it. Every runner gives back a
:class:`StepResult`, and failures are one hierarchy (:class:`~airflow_mlops.exceptions.RuntimeStepFailed`,
and :class:`RuntimeStepRejected` for bad input).

The runners that can be waited for in Airflow's triggerer (pods, training jobs) also :meth:`~StepRunner.start`
a step and return a JSON *handle* naming it; the trigger's event and the handle are all a
freshly built operator needs to :meth:`~StepRunner.collect` the result (:func:`runner_for_handle`).
Runs on the Airflow side.
"""

from __future__ import annotations

import contextlib
import datetime
import shutil
import subprocess
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import airflow_mlops
from airflow_mlops.exceptions import (
    InvalidArgumentError,
    MlopsException,
    RuntimeStepFailed,
    limit_failure,
    step_failure,
)
from airflow_mlops.kubernetes.api import KubernetesApiError, object_name, owner_labels
from airflow_mlops.runtimes.context import RunnerContext
from airflow_mlops.runtimes.contract import ContractError, StepRequest, StepResult, write_json_atomic
from airflow_mlops.runtimes.local import RuntimeProcess, runtime_command

if TYPE_CHECKING:
    from airflow.triggers.base import BaseTrigger

    from airflow_mlops.kubernetes.jobs import JobController
    from airflow_mlops.kubernetes.launchers import HorovodLauncher
    from airflow_mlops.kubernetes.pods import PodSettings

#: A step's output line goes here (the task log).
OnLine = Callable[[str], None]


@dataclass(frozen=True)
class Placement:
    """How many processes a step runs on. The default, one process, is every step but Horovod training.

    :param distributed: the step's ranks each need a machine (a Horovod node on Kubernetes: a
        training job whose launcher runs the node); locally the step starts its ranks itself.
    :param workers: ranks (one per worker, or one per GPU).
    :param gpus_per_worker: GPUs per worker; only a cluster has them.
    :param min_workers: with ``max_workers``: elastic between the two.
    :param worker_resources: ``requests``/``limits`` of each worker pod; None: ``[mlops] kubernetes_resources``.
    :param run_policy: the job's ``clean_pod_policy``, ``backoff_limit``, ``active_deadline_seconds``,
        ``ttl_seconds_after_finished`` (a TrainJob refuses what its TrainingRuntime decides).
    :param launcher: the kind of training job a distributed step runs as on Kubernetes, one of
        :data:`~airflow_mlops.kubernetes.launchers.LAUNCHERS`: ``mpijob`` (Kubeflow MPI Operator) or
        ``trainjob`` (Kubeflow Trainer v2); locally the step starts its ranks itself and it is not used.
    """

    distributed: bool = False
    workers: int = 1
    gpus_per_worker: int = 0
    min_workers: int | None = None
    max_workers: int | None = None
    worker_resources: dict[str, Any] | None = None
    run_policy: dict[str, Any] = field(default_factory=dict)
    launcher: str = "mpijob"


ONE_PROCESS = Placement()
RUN_POLICY_KEYS = ("clean_pod_policy", "backoff_limit", "active_deadline_seconds", "ttl_seconds_after_finished")


class StepRunner(ABC):
    """Runs step requests somewhere. One instance serves one hook; :meth:`kill` stops its step in flight.

    :param ctx: what the runner uses (settings, paths, the runtime, Kubernetes clients).
    :param poll_interval: seconds between checks of a step that runs elsewhere (a training job).
    """

    kind: ClassVar[str]
    #: it can start a step and let the triggerer wait for it (:meth:`start`, :meth:`trigger`, :meth:`collect`)
    can_defer: ClassVar[bool] = False

    def __init__(self, ctx: RunnerContext, *, poll_interval: float = 10.0):
        self.ctx = ctx
        self.poll_interval = poll_interval

    @property
    def where(self) -> str:
        return f"runtime {self.ctx.runtime}"

    def check(self, placement: Placement) -> None:
        """Refuse a placement this runner cannot give (before anything runs)."""

    @abstractmethod
    def run(self, step: str, params: dict[str, Any], context: dict[str, Any], *, binds: list[str],
            timeout: float | None, placement: Placement) -> tuple[StepResult, int | None]:
        """Run the step to its end, its output in the task log; its result and exit code.

        :raises RuntimeStepFailed: the step ended without a usable result, or timed out.
        """

    def start(self, step: str, params: dict[str, Any], context: dict[str, Any], *, timeout: float | None,
              placement: Placement) -> dict[str, Any]:
        """Start the step (or find the one an earlier try started) and return its JSON handle, with
        ``ended``: whether it has already ended (then :meth:`collect` it at once)."""
        raise NotImplementedError(f"a {self.kind} step cannot be waited for in the triggerer")

    def trigger(self, handle: dict[str, Any], poll_interval: float) -> BaseTrigger:
        """The trigger that fires when the step of ``handle`` ends."""
        raise NotImplementedError(f"a {self.kind} step cannot be waited for in the triggerer")

    def collect(self, handle: dict[str, Any], event: dict[str, Any] | None) -> StepResult:
        """The result of the step of ``handle`` after its trigger's ``event`` (None: it had ended at start)."""
        raise NotImplementedError(f"a {self.kind} step cannot be waited for in the triggerer")

    def delete(self, handle: dict[str, Any]) -> None:
        """Remove what the step of ``handle`` left (a task killed while deferred)."""

    @abstractmethod
    def kill(self) -> None:
        """Stop the step this runner is running, if any (``on_kill``)."""


# -- this machine -----------------------------------------------------------------------
class ProcessRunner(StepRunner):
    """A fresh runtime process per step (the runtime's Python, in its venv or root filesystem)."""

    kind = "process"

    def __init__(self, ctx: RunnerContext, **kwargs: Any):
        super().__init__(ctx, **kwargs)
        self._process: Any = None

    def check(self, placement: Placement) -> None:
        if placement.gpus_per_worker:
            raise InvalidArgumentError(
                f"gpus_per_worker={placement.gpus_per_worker} needs the kubernetes backend; the local TFX runtime's "
                "Horovod is a CPU (Gloo) build: use gpus_per_worker=0 locally")

    @contextlib.contextmanager
    def _files(self, step: str, params: dict[str, Any], context: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
        """The request file, the result path and the step's scratch directory; all removed afterwards."""
        # the step's TMPDIR, removed here even when the runtime crashed (TFX leaves ~50 MB per Beam run)
        scratch = tempfile.mkdtemp(prefix="airflow-mlops-step-")
        request = StepRequest(step=step, params=params, context=context, scratch_dir=scratch)
        self.ctx.state_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as cleanup:
            cleanup.callback(shutil.rmtree, scratch, ignore_errors=True)
            workdir = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="step-", dir=self.ctx.state_dir))
            request_path, result_path = Path(workdir, "request.json"), Path(workdir, "result.json")
            write_json_atomic(request_path, request.to_json())
            yield str(request_path), str(result_path), scratch

    @property
    def env(self) -> dict[str, str]:
        return {"PYTHONPATH": self.package_parent, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "1"}

    @property
    def package_parent(self) -> str:
        return str(Path(airflow_mlops.__file__).resolve().parent.parent)

    def on_line(self, line: str) -> None:
        self.ctx.log.info("[%s] %s", self.ctx.runtime, line)

    def run(self, step: str, params: dict[str, Any], context: dict[str, Any], *, binds: list[str],
            timeout: float | None, placement: Placement) -> tuple[StepResult, int | None]:
        self.check(placement)
        install = self.ctx.get_runtime()
        with self._files(step, params, context) as (request_path, result_path, scratch):
            base_binds = [self.package_parent, str(self.ctx.state_dir)]
            step_binds = [str(Path(request_path).parent), scratch, *binds]
            code = self._execute(install, base_binds, step_binds, request_path, result_path, step, timeout)
            try:
                return StepResult.read(result_path), code
            except ContractError as err:
                raise RuntimeStepFailed(
                    f"step {step} in runtime {self.ctx.runtime} exited with code {code} and no usable result: {err}",
                    step=step,
                ) from None

    def _execute(self, install, base_binds, step_binds, request_path, result_path, step, timeout) -> int | None:
        command, process_env = runtime_command(
            install, ["python", "-m", "airflow_mlops.runtime_side.entrypoint", request_path, result_path],
            env=self.env, binds=[*base_binds, *step_binds])
        self.ctx.log.info("running step %s in runtime %s (%s at %s)", step, self.ctx.runtime, install.isolation,
                           install.path)
        self._process = RuntimeProcess(command, process_env, self.on_line).start()
        try:
            return self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise RuntimeStepFailed(f"step {step} timed out after {timeout} s", step=step) from err
        finally:
            self._process = None

    def kill(self) -> None:
        process = self._process
        if process is not None:
            self.ctx.log.warning("stopping the step running in runtime %s", self.ctx.runtime)
            process.terminate()


class WarmRunner(ProcessRunner):
    """The runtime's warm process (libraries imported once, a fork per step); a fresh process when
    it cannot be started or reached (:mod:`airflow_mlops.runtimes.warm`)."""

    kind = "warm"

    def _execute(self, install, base_binds, step_binds, request_path, result_path, step, timeout) -> int | None:
        from airflow_mlops.runtimes.specs import get_runtime_spec
        from airflow_mlops.runtimes.warm import ServerGone, WarmRuntime, WarmRuntimeError

        ctx = self.ctx
        # one warm runtime serves every state directory: the state directory is bound into it for the step
        # (like the step's own paths) instead of being part of what the server is (a server per state directory
        # paid the libraries' import again for each: ~20 starts in a test run)
        state = str(ctx.state_dir)
        warm = WarmRuntime(install, base_binds=[b for b in base_binds if b != state], env=self.env,
                           preload=get_runtime_spec(ctx.runtime).preload,
                           idle_timeout=ctx.settings.warm_runtime_idle_timeout,
                           max_running=ctx.settings.max_warm_runtimes)
        try:
            pid = warm.ensure_started(log=lambda line: ctx.log.info("%s", line))
            warm.bind([state, *step_binds])
        except (WarmRuntimeError, OSError) as err:
            ctx.log.warning("warm runtime unavailable, running step %s in a fresh process: %s", step, err)
            return super()._execute(install, base_binds, step_binds, request_path, result_path, step, timeout)
        ctx.log.info("running step %s in warm runtime %s (pid %s, %s at %s)", step, ctx.runtime, pid,
                      install.isolation, install.path)
        self._process = warm
        try:
            return warm.run(request_path, result_path, self.on_line, timeout=timeout)
        except ServerGone as err:  # stopped before the step started (to make room for another): nothing ran
            ctx.log.warning("warm runtime gone, running step %s in a fresh process: %s", step, err)
        except TimeoutError as err:
            raise RuntimeStepFailed(f"step {step} timed out after {timeout} s", step=step) from err
        except WarmRuntimeError as err:
            raise RuntimeStepFailed(f"step {step}: {err}", step=step) from err
        finally:
            self._process = None
        return super()._execute(install, base_binds, step_binds, request_path, result_path, step, timeout)


# -- Kubernetes -------------------------------------------------------------------------
def _pod_settings(ctx: RunnerContext, runtime: str) -> PodSettings:
    """Where and how ``runtime``'s pods run (:func:`~airflow_mlops.kubernetes.pods.pod_settings`)."""
    from airflow_mlops.kubernetes.pods import pod_settings

    return pod_settings(ctx.settings, runtime, state_dir=ctx.state_dir,
                        connection_namespace=lambda: ctx.kubernetes().get_namespace())


@contextlib.contextmanager
def _api_errors(step: str, where: str) -> Iterator[None]:
    """A failed API call (or a pod that never gave a result) as the task's :class:`RuntimeStepFailed`."""
    try:
        yield
    except KubernetesApiError as err:  # a pod that hit a limit says which (``fault``): OOMKilled is not retried
        raise limit_failure(getattr(err, "fault", None))(f"step {step} in {where}: {err}", step=step) from err


class PodRunner(StepRunner):
    """A pod of the runtime's image per step (:mod:`airflow_mlops.kubernetes.pods`): named from the task
    instance, so that a retry reattaches to its earlier try's pod."""

    kind = "pod"
    can_defer = True

    def __init__(self, ctx: RunnerContext, **kwargs: Any):
        super().__init__(ctx, **kwargs)
        self._calls: dict[str, int] = {}
        self._runner: Any = None

    def check(self, placement: Placement) -> None:
        if placement.distributed:
            raise InvalidArgumentError("a distributed step runs as a training job, not in one pod")

    def _pods(self):
        from airflow_mlops.kubernetes.pods import PodStepRunner

        return PodStepRunner(self.ctx.kubernetes().core_v1_client, prefix=f"[{self.ctx.runtime}] ")

    def manifest(self, step: str, params: dict[str, Any], context: dict[str, Any], timeout: float | None):
        """The pod that runs ``step`` for the task instance of ``context``, its labels and settings."""
        from airflow_mlops.kubernetes.pods import CALL_LABEL, RUNTIME_LABEL, STEP_LABEL, step_pod

        settings = _pod_settings(self.ctx, self.ctx.runtime)
        dag_id, task_id = context.get("dag_id") or "adhoc", context.get("task_id") or step
        # no task run named (the CLI, a test): a pod of its own, never one to adopt
        run_id = context.get("run_id") or f"adhoc-{uuid.uuid4().hex}"
        map_index = context.get("map_index")
        map_index = -1 if map_index is None else int(map_index)
        # a task may run a step more than once: its n-th call has the same name in every try
        # (unless the caller asks for a pod of its own with ``pod_key``: a sensor's repeated checks)
        call = self._calls[step] = self._calls.get(step, 0) + 1
        if context.get("pod_key"):
            run_id = f"{run_id}#{context['pod_key']}"
        labels = {**owner_labels(dag_id, task_id, run_id, map_index), STEP_LABEL: step.replace(".", "-"),
                  RUNTIME_LABEL: self.ctx.runtime, CALL_LABEL: str(call)}
        name = object_name(f"{self.ctx.runtime}-{step}-{call}", dag_id, task_id, run_id, map_index)
        request = StepRequest(step=step, params=params, context=context)
        return step_pod(name, request, settings, labels=labels, run_id=run_id, timeout=timeout), labels, settings

    def run(self, step: str, params: dict[str, Any], context: dict[str, Any], *, binds: list[str],
            timeout: float | None, placement: Placement) -> tuple[StepResult, int | None]:
        self.check(placement)
        manifest, labels, settings = self.manifest(step, params, context, timeout)
        self.ctx.log.info("running step %s as pod %s/%s (image %s)", step, settings.namespace,
                           manifest["metadata"]["name"], settings.image)
        self._runner = self._pods()
        try:
            with _api_errors(step, self.where):
                return self._runner.run(manifest, labels, on_finish_action=settings.on_finish_action,
                                        startup_timeout=settings.startup_timeout), 0
        finally:
            self._runner = None

    def start(self, step: str, params: dict[str, Any], context: dict[str, Any], *, timeout: float | None,
              placement: Placement) -> dict[str, Any]:
        self.check(placement)
        manifest, labels, settings = self.manifest(step, params, context, timeout)
        with _api_errors(step, self.where):
            pod = self._pods().start(manifest, labels)
        phase = getattr(pod.status, "phase", None)
        return {"runner": self.kind, "step": step, "name": manifest["metadata"]["name"],
                "namespace": settings.namespace, "labels": labels, "on_finish_action": settings.on_finish_action,
                "startup_timeout": settings.startup_timeout, "phase": phase,
                "ended": phase in ("Succeeded", "Failed")}

    def trigger(self, handle: dict[str, Any], poll_interval: float) -> BaseTrigger:
        from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger

        from airflow_mlops.kubernetes.pods import CONTAINER

        return KubernetesPodTrigger(
            pod_name=handle["name"], pod_namespace=handle["namespace"],
            trigger_start_time=datetime.datetime.now(tz=datetime.timezone.utc),
            base_container_name=CONTAINER, kubernetes_conn_id=self.ctx.kubernetes_conn_id,
            poll_interval=poll_interval, get_logs=False, startup_timeout=handle["startup_timeout"],
            schedule_timeout=handle["startup_timeout"], on_finish_action="keep_pod",
        )

    def collect(self, handle: dict[str, Any], event: dict[str, Any] | None) -> StepResult:
        if event is not None and event.get("status") not in ("success", "failed"):
            # the pod never started or the trigger gave up: say why, and remove the pod
            self.delete(handle)
            raise MlopsException(f"pod {handle['namespace']}/{handle['name']} of step {handle['step']}: "
                                 f"{event.get('status')}: {event.get('message')}")
        with _api_errors(handle["step"], self.where):
            return self._pods().collect(handle["name"], handle["namespace"],
                                        on_finish_action=handle["on_finish_action"])

    def delete(self, handle: dict[str, Any]) -> None:
        self._pods().delete(handle["name"], handle["namespace"])

    def kill(self) -> None:
        runner = self._runner
        if runner is not None:
            runner.kill()


class DistributedJobRunner(StepRunner):
    """A distributed step on Kubernetes: a training job whose launcher pod runs the step once and whose
    other pods hold its ranks, of the kind the placement's ``launcher`` names: an MPIJob
    (``kubeflow.org/v2beta1``, :mod:`airflow_mlops.kubernetes.mpijob`) or a Kubeflow Trainer v2 TrainJob
    (``trainer.kubeflow.org/v1alpha1``, :mod:`airflow_mlops.kubernetes.trainjob`). Everything that differs
    between them comes from the launcher's :class:`~airflow_mlops.kubernetes.launchers.HorovodLauncher`
    (spec, manifest, state, controller, trigger, the launcher's container), so this code is the same for
    both. The job is named from the task instance: a retry reattaches to its earlier try's job (or, when
    that one failed, replaces it). A handle names the launcher; one without (made before TrainJobs) is an
    MPIJob's.
    """

    #: the kind of the runner when it ran MPIJobs only: the handles of deferred tasks name it, and the
    #: hook keeps one runner per kind (a task runs one distributed step)
    kind = "mpijob"
    can_defer = True

    def __init__(self, ctx: RunnerContext, **kwargs: Any):
        super().__init__(ctx, **kwargs)
        self._job: tuple[HorovodLauncher, str, str] | None = None
        self._followed = False

    @staticmethod
    def launcher(name: Any) -> HorovodLauncher:
        """The launcher called ``name`` (:data:`~airflow_mlops.kubernetes.launchers.LAUNCHERS`).

        :raises InvalidArgumentError: naming the known ones.
        """
        from airflow_mlops.kubernetes.launchers import horovod_launcher

        try:
            return horovod_launcher(name)
        except ValueError as err:
            raise InvalidArgumentError(f"launcher: {err}") from None

    def jobs(self, launcher: HorovodLauncher) -> JobController:
        """The controller of ``launcher``'s jobs on this context's cluster."""
        return launcher.controller(self.ctx.kubernetes().api_client)

    def check(self, placement: Placement) -> None:
        """Refuse what the placement alone decides: the launcher, the ``run_policy`` keys, and the job's fields
        it gives (elastic training on a TrainJob, a ``run_policy`` value...), so that the pipeline's first task
        names them; the rest (image, namespace, name) is checked with the job itself (:meth:`spec`)."""
        launcher = self.launcher(placement.launcher)
        unknown = sorted(set(placement.run_policy) - set(RUN_POLICY_KEYS))
        if unknown:
            raise InvalidArgumentError(f"unknown run_policy key(s) {unknown}; known: {list(RUN_POLICY_KEYS)}")
        self._valid(launcher, launcher.spec_class(name="check", image="check", command=["check"],
                                                  **self._placement_fields(placement)))

    @staticmethod
    def _placement_fields(placement: Placement, *, timeout: float | None = None,
                          resources: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The job's fields that the placement gives (``resources``: the workers' where it names none)."""
        policy = dict(placement.run_policy)
        if timeout and "active_deadline_seconds" not in policy:
            policy["active_deadline_seconds"] = int(timeout)
        worker_resources = placement.worker_resources if placement.worker_resources is not None else resources
        return {"num_workers": placement.workers, "gpus_per_worker": placement.gpus_per_worker,
                "min_workers": placement.min_workers, "max_workers": placement.max_workers,
                "worker_resources": worker_resources or {}, **policy}

    @staticmethod
    def _valid(launcher: HorovodLauncher, spec: Any) -> Any:
        if problems := spec.errors():
            raise InvalidArgumentError(f"the {launcher.kind} would be invalid: " + "; ".join(problems))
        return spec

    def spec(self, step: str, params: dict[str, Any], context: dict[str, Any], timeout: float | None,
             placement: Placement):
        """The job (an :class:`~airflow_mlops.kubernetes.mpijob.MPIJobSpec` or its TrainJob subclass) that
        runs the step for the task instance of ``context``, and its labels."""
        from airflow_mlops.kubernetes.mpijob import job_name
        from airflow_mlops.kubernetes.pods import RUNTIME_LABEL, STEP_COMMAND
        from airflow_mlops.runtimes.contract import REQUEST_ENV

        self.check(placement)
        launcher = self.launcher(placement.launcher)
        request = StepRequest(step=step, params=params, context=context)
        pods = _pod_settings(self.ctx, f"{self.ctx.runtime}-cuda" if placement.gpus_per_worker else self.ctx.runtime)
        map_index = -1 if context.get("map_index") is None else int(context["map_index"])
        labels = {**owner_labels(context["dag_id"], context["task_id"], context["run_id"], map_index),
                  RUNTIME_LABEL: pods.image.rsplit("/", 1)[-1].split(":")[0][:63].strip("-_.")}
        spec = launcher.spec_class(
            name=job_name(context["dag_id"], context["task_id"], context["run_id"], map_index),
            image=pods.image, command=list(STEP_COMMAND), namespace=pods.namespace, labels=labels,
            env={"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "1", REQUEST_ENV: request.to_json()},
            service_account=pods.service_account, node_selector=pods.node_selector, tolerations=pods.tolerations,
            horovodrun=False, volume_claim=pods.volume_claim, mount_path=pods.mount_path,
            **self._placement_fields(placement, timeout=timeout, resources=pods.resources),
        )
        return self._valid(launcher, spec), labels

    def _submit(self, step, params, context, timeout, placement) -> tuple[Any, str]:
        from airflow_mlops.kubernetes.schema import ManifestError

        launcher = self.launcher(placement.launcher)
        spec, labels = self.spec(step, params, context, timeout, placement)
        where = f"{launcher.kind} {spec.namespace}/{spec.name}"
        with _api_errors(step, where):
            try:
                job, adopted = self.jobs(launcher).submit(launcher.build(spec), labels)
            except ManifestError as err:  # e.g. no TrainingRuntime, or one of another image: retrying cannot help
                raise InvalidArgumentError(f"step {step}: {err}") from None
        self._job = (launcher, spec.name, spec.namespace)
        state = launcher.state(job)[0]
        self.ctx.log.info("%s %s: %d worker(s) x %d slot(s), image %s (%s)",
                           "reattached to" if adopted else "created", where,
                           spec.max_workers or spec.num_workers, spec.slots_per_worker, spec.image, state)
        return spec, state

    def run(self, step: str, params: dict[str, Any], context: dict[str, Any], *, binds: list[str],
            timeout: float | None, placement: Placement) -> tuple[StepResult, int | None]:
        launcher = self.launcher(placement.launcher)
        spec, _ = self._submit(step, params, context, timeout, placement)
        jobs = self.jobs(launcher)
        self._followed = False
        with _api_errors(step, f"{launcher.kind} {spec.namespace}/{spec.name}"):
            final = jobs.wait(spec.name, spec.namespace, poll_interval=self.poll_interval,
                              follow=lambda pod: self._follow_launcher(jobs, pod))
            log_text = jobs.launcher_log(spec.name, spec.namespace)
        if not self._followed:  # the job ended before its launcher was seen running (or a retry found it ended)
            self._print_launcher_log(log_text)
        state, reason, message = final
        return self._result(launcher, step, spec.name, spec.namespace, state, reason, message, log_text=log_text), 0

    def start(self, step: str, params: dict[str, Any], context: dict[str, Any], *, timeout: float | None,
              placement: Placement) -> dict[str, Any]:
        launcher = self.launcher(placement.launcher)
        spec, state = self._submit(step, params, context, timeout, placement)
        return {"runner": self.kind, "launcher": launcher.name, "step": step, "name": spec.name,
                "namespace": spec.namespace, "ended": state in launcher.final_states}

    def _handle_launcher(self, handle: dict[str, Any]) -> HorovodLauncher:
        return self.launcher(handle.get("launcher", Placement.launcher))

    def trigger(self, handle: dict[str, Any], poll_interval: float) -> BaseTrigger:
        return self._handle_launcher(handle).trigger(handle["name"], handle["namespace"], self.ctx.kubernetes_conn_id,
                                                     poll_interval=poll_interval)

    def collect(self, handle: dict[str, Any], event: dict[str, Any] | None) -> StepResult:
        name, namespace, step = handle["name"], handle["namespace"], handle["step"]
        launcher = self._handle_launcher(handle)
        jobs = self.jobs(launcher)
        self._job = (launcher, name, namespace)
        with _api_errors(step, f"{launcher.kind} {namespace}/{name}"):
            if event is None:  # it had ended when the task found it
                state, reason, message = jobs.wait(name, namespace, poll_interval=self.poll_interval)
            else:
                state = {"success": "Succeeded", "failed": "Failed"}.get(event["status"], event["status"])
                reason, message = event.get("reason", ""), event.get("message", "")
            log_text = jobs.launcher_log(name, namespace)
        self._print_launcher_log(log_text)
        return self._result(launcher, step, name, namespace, state, reason, message, log_text=log_text)

    def _print_launcher_log(self, log_text: str) -> None:
        from airflow_mlops.runtimes.contract import is_result_line

        for line in log_text.splitlines():
            if not is_result_line(line):
                self.ctx.log.info("[launcher] %s", line)

    def _follow_launcher(self, jobs: JobController, pod: Any) -> None:
        from airflow.providers.cncf.kubernetes.utils.pod_manager import PodManager

        from airflow_mlops.runtimes.contract import is_result_line

        self._followed = True

        def formatter(container: str, line: str) -> str:
            return "[launcher] (the node's result)" if is_result_line(line) else f"[launcher] {line}"

        PodManager(jobs.core).fetch_container_logs(pod, jobs.launcher_container, follow=True, log_formatter=formatter)

    def _result(self, launcher: HorovodLauncher, step: str, name: str, namespace: str, state: str, reason: str,
                message: str, log_text: str) -> StepResult:
        from airflow_mlops.runtimes.contract import is_result_line, result_from_log

        where = f"{launcher.kind} {namespace}/{name}"
        if state != "Succeeded":
            tail = [line for line in log_text.splitlines() if not is_result_line(line)][-40:]
            try:
                result = result_from_log(log_text)
            except ContractError:
                result = StepResult(status="failed", error={})
            error = result.error or {}
            # the node's own error decides whether a retry can help (a module without run_fn cannot),
            # as for a step run locally or in a pod
            raise step_failure(error)(
                f"{where} ended {state}" + (f" ({reason})" if reason else "") + (f": {message}" if message else "")
                + (f"\nthe TFX node failed: {error.get('type')}: {error.get('message')}" if error else "")
                + ("\nlast lines of the launcher's log:\n  " + "\n  ".join(tail) if tail else
                   "\nthe launcher left no log (it never started, or its pod is gone)"),
                step=step, error=error,
            )
        try:
            return result_from_log(log_text)
        except ContractError as exc:
            raise RuntimeStepFailed(f"{where} succeeded but its launcher's log has no result: {exc}",
                                    step=step) from None

    def delete(self, handle: dict[str, Any]) -> None:
        self.jobs(self._handle_launcher(handle)).delete(handle["name"], handle["namespace"])

    def kill(self) -> None:
        job = self._job
        if job is None:
            return
        launcher, name, namespace = job
        self.ctx.log.warning("deleting %s %s/%s", launcher.kind, namespace, name)
        try:
            self.jobs(launcher).delete(name, namespace)
        except KubernetesApiError as exc:
            self.ctx.log.warning("could not delete %s %s/%s: %s", launcher.kind, namespace, name, exc)


#: Every runner kind, by the ``kind`` a handle names.
RUNNERS: dict[str, type[StepRunner]] = {r.kind: r for r in (ProcessRunner, WarmRunner, PodRunner,
                                                               DistributedJobRunner)}
BACKENDS = ("local", "kubernetes")


def choose_runner(ctx: RunnerContext, placement: Placement) -> type[StepRunner]:
    """The one place that decides where a step runs: the backend and ``warm_runtimes`` settings, and
    whether the step is distributed (its training job is then of the kind the placement's ``launcher``
    names: one runner, :class:`DistributedJobRunner`, runs either kind).

    :raises MlopsException: the backend is not one of :data:`BACKENDS`.
    """
    backend = ctx.settings.backend
    if backend == "kubernetes":
        return DistributedJobRunner if placement.distributed else PodRunner
    if backend == "local":
        return WarmRunner if ctx.settings.warm_runtimes else ProcessRunner
    raise MlopsException(f"[mlops] backend must be one of {BACKENDS}, got {backend!r}")


def runner_for_handle(ctx: RunnerContext, handle: dict[str, Any], *, poll_interval: float = 10.0) -> StepRunner:
    """The runner that collects the step of ``handle`` (a deferred task resumed on a fresh operator)."""
    kind = handle.get("runner")
    if kind not in RUNNERS or not RUNNERS[kind].can_defer:
        raise MlopsException(f"a deferred step's handle names no runner that can collect it: {handle!r}")
    return RUNNERS[kind](ctx, poll_interval=poll_interval)
