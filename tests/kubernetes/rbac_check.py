"""Which Role rule each request to the FAKE API server needs, checked against ``kubernetes/rbac.py``.

Tests that drive the operators against the fake call :func:`assert_allowed`: a request the Role of
``deploy/kubernetes/base/role.yaml`` would forbid fails the test, so the Role cannot fall behind the code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from airflow_mlops.kubernetes.rbac import REQUIRED_RULES

_CORE = re.compile(r"^/api/v1/namespaces/[^/]+/(?P<resource>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$")
_GROUP = re.compile(r"^/apis/(?P<group>[^/]+)/[^/]+/namespaces/[^/]+/(?P<resource>[^/]+)"
                    r"(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$")
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def needed(method: str, path: str, query: str = "") -> tuple[str, str, str] | None:
    """``(apiGroup, resource, verb)`` of one request; None for discovery and non-namespaced paths."""
    match = _CORE.match(path) or _GROUP.match(path)
    if not match:
        return None
    group = match.groupdict().get("group") or ""
    resource = match["resource"] + (f"/{match['sub']}" if match["sub"] and match["sub"] != "status" else "")
    if method == "GET":
        verb = "get" if match["name"] else ("watch" if "watch=true" in query.lower() else "list")
    else:
        verb = _VERBS.get(method, method.lower())
    return group, resource, verb


def forbidden(requests: Iterable) -> list[str]:
    """The requests (``Recorded``) the Role would refuse, as ``METHOD path (verb group/resource)``."""
    refused = []
    for r in requests:
        rule = needed(r.method, r.path, r.query)
        if rule and rule[2] not in REQUIRED_RULES.get((rule[0], rule[1]), ()):
            refused.append(f"{r.method} {r.path} ({rule[2]} {rule[0] or 'core'}/{rule[1]})")
    return refused


def assert_allowed(fake) -> None:
    refused = forbidden(fake.requests)
    assert not refused, "requests the provider's Role does not allow (add them to kubernetes/rbac.py " \
                        "and deploy/kubernetes/base/role.yaml, or stop making them):\n  " + "\n  ".join(refused)
