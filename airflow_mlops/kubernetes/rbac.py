"""The Kubernetes permissions the provider's operators need, and nothing more.

``deploy/kubernetes/base/role.yaml`` grants exactly :data:`REQUIRED_RULES` (a test keeps the
two equal), so the Role documents what the operators do and a new API call cannot slip in
without the Role being extended on purpose.
"""

from __future__ import annotations

#: (apiGroup, resource) -> verbs the provider uses. Pods: runtime steps run as pods (created,
#: followed, read back and deleted; a retry lists them by label to reattach); pods/log: the
#: step's log and result; events: why a pod did not start; mpijobs: Horovod training;
#: seldondeployments: serving (the controller replaces the whole object, it never patches).
REQUIRED_RULES: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "pods"): ("create", "delete", "get", "list", "watch"),
    ("", "pods/log"): ("get",),
    ("", "events"): ("list",),
    ("kubeflow.org", "mpijobs"): ("create", "delete", "get", "list", "watch"),
    ("machinelearning.seldon.io", "seldondeployments"): ("create", "delete", "get", "list", "update", "watch"),
}


def role_rules() -> list[dict[str, list[str]]]:
    """:data:`REQUIRED_RULES` as the ``rules`` of a Role (one rule per resource, sorted)."""
    return [
        {"apiGroups": [group], "resources": [resource], "verbs": sorted(verbs)}
        for (group, resource), verbs in sorted(REQUIRED_RULES.items())
    ]
