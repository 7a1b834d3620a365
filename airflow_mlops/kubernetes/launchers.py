"""The two ways a distributed Horovod step runs on Kubernetes, behind one interface.

``HorovodTrainerOperator(launcher=...)`` names one of :data:`LAUNCHERS`: ``"mpijob"`` (a Kubeflow MPI
Operator ``MPIJob``, :mod:`.mpijob`) or ``"trainjob"`` (a Kubeflow Trainer v2 ``TrainJob``,
:mod:`.trainjob`). A :class:`HorovodLauncher` bundles what a runner needs of one of them, so the
runner's code is the same for both::

    launcher = horovod_launcher(name)
    spec = launcher.spec_class(name=..., image=..., command=..., ...)   # MPIJobSpec's arguments
    problems = spec.errors()                                            # e.g. elastic on "trainjob"
    jobs = launcher.controller(api_client)                              # submit/get/delete/wait/...
    job, adopted = jobs.submit(launcher.build(spec), labels)
    state, reason, message = launcher.state(job)
    trigger = launcher.trigger(name, namespace, conn_id, poll_interval=10.0)
    jobs.launcher_container                                             # whose log is the step's
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_mlops.kubernetes import mpijob, trainjob
from airflow_mlops.kubernetes.jobs import FINAL_STATES, JobController


@dataclass(frozen=True)
class HorovodLauncher:
    """One kind of training job: its spec, manifest builder, state reader, controller and trigger.

    :param name: what ``launcher=`` says (``"mpijob"``, ``"trainjob"``).
    :param kind: the resource's kind, for messages (``MPIJob``, ``TrainJob``).
    :param spec_class: :class:`~.mpijob.MPIJobSpec` or its subclass :class:`~.trainjob.TrainJobSpec`
        (same arguments).
    :param build: spec -> manifest (raises :class:`~.schema.ManifestError` listing the spec's problems).
    :param state: job object -> ``(state, reason, message)``, states as :func:`~.mpijob.mpijob_state`.
    :param controller_class: a :class:`~.jobs.JobController`.
    :param trigger_path: the class path of its trigger (imported on use: it imports Airflow).
    """

    name: str
    kind: str
    spec_class: type[mpijob.MPIJobSpec]
    build: Callable[[Any], dict[str, Any]]
    state: Callable[[Mapping[str, Any]], tuple[str, str, str]]
    controller_class: type[JobController]
    trigger_path: str
    final_states: tuple[str, ...] = FINAL_STATES

    def controller(self, api_client: Any, **kwargs: Any) -> JobController:
        """The controller of this kind of job on ``api_client`` (``backoff``/``sleep`` may be given)."""
        return self.controller_class(api_client, **kwargs)

    def trigger(self, name: str, namespace: str, kubernetes_conn_id: str, *, poll_interval: float = 10.0,
                timeout: float | None = None) -> Any:
        """The trigger that waits in the triggerer until the job ends."""
        module, _, cls = self.trigger_path.rpartition(".")
        return getattr(importlib.import_module(module), cls)(name, namespace, kubernetes_conn_id,
                                                             poll_interval=poll_interval, timeout=timeout)


LAUNCHERS: dict[str, HorovodLauncher] = {
    "mpijob": HorovodLauncher("mpijob", mpijob.KIND, mpijob.MPIJobSpec, mpijob.build_mpijob, mpijob.mpijob_state,
                              mpijob.MPIJobController, "airflow_mlops.triggers.mpijob.MPIJobTrigger"),
    "trainjob": HorovodLauncher("trainjob", trainjob.KIND, trainjob.TrainJobSpec, trainjob.build_trainjob,
                                trainjob.trainjob_state, trainjob.TrainJobController,
                                "airflow_mlops.triggers.trainjob.TrainJobTrigger"),
}


def horovod_launcher(name: str) -> HorovodLauncher:
    """The launcher called ``name``; ValueError naming the known ones otherwise."""
    try:
        return LAUNCHERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown Horovod launcher {name!r}; known: {sorted(LAUNCHERS)}") from None
