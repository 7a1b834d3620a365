"""The Kubernetes permissions the provider's operators need, and nothing more.

``deploy/kubernetes/base/role.yaml`` grants exactly :data:`REQUIRED_RULES` (a test keeps the
two equal), so the Role documents what the operators do and a new API call cannot slip in
without the Role being extended on purpose.
"""

from __future__ import annotations

#: (apiGroup, resource) -> verbs the provider uses. Pods: runtime steps run as pods (created, read,
#: deleted; an MPIJob's launcher pod is found by listing with its labels); pods/log: the step's log and
#: result; events: why a pod did not start; mpijobs: Horovod training (created, read, deleted on kill or
#: to train again after a failed try); seldondeployments: serving (the controller replaces the whole
#: object, it never patches); trainjobs: Horovod training on Kubeflow Trainer v2 (as mpijobs), whose
#: TrainingRuntime is read before a job is submitted. Nothing watches: waits poll.
#: tests/kubernetes/rbac_check.py fails any test whose operators make a request outside these rules.
REQUIRED_RULES: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "pods"): ("create", "delete", "get", "list"),
    ("", "pods/log"): ("get",),
    ("", "events"): ("list",),
    ("kubeflow.org", "mpijobs"): ("create", "delete", "get"),
    ("machinelearning.seldon.io", "seldondeployments"): ("create", "delete", "get", "update"),
    ("trainer.kubeflow.org", "trainjobs"): ("create", "delete", "get"),
    ("trainer.kubeflow.org", "trainingruntimes"): ("get",),
}


def role_rules() -> list[dict[str, list[str]]]:
    """:data:`REQUIRED_RULES` as the ``rules`` of a Role (one rule per resource, sorted)."""
    return [
        {"apiGroups": [group], "resources": [resource], "verbs": sorted(verbs)}
        for (group, resource), verbs in sorted(REQUIRED_RULES.items())
    ]
