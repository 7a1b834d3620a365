"""A FAKE Kubernetes API server for tests: it is not Kubernetes and runs no Seldon.

The project fakes only the Kubernetes API, at the HTTP level, so that the code under
test goes through the real ``kubernetes`` client. :class:`FakeKubeAPI` is a threaded
``http.server`` on ``127.0.0.1:0`` serving just the SeldonDeployment custom-object
endpoints (``/apis/machinelearning.seldon.io/v1/namespaces/{ns}/seldondeployments``
with GET/POST, and ``.../{name}`` with GET/PUT/DELETE), answering as the API server does:

* errors are ``kind: Status`` objects with ``code``, ``reason`` and ``message``
  (404 NotFound, 409 AlreadyExists/Conflict, 422 Invalid, 400 BadRequest);
* ``metadata.resourceVersion`` changes on every write; ``metadata.generation`` grows on
  every ``.spec`` change only; ``.status`` is a subresource (writes to it are ignored);
* optimistic concurrency: a PUT must carry the current ``resourceVersion`` (stale:
  409 Conflict, missing: 422 Invalid, as for custom resources);
* a scripted "Seldon controller" writes ``.status`` when the object is read: after a
  spec change, ``stale_polls`` reads still see the old status, then ``creating_polls``
  reads see ``Creating``, then :meth:`FakeKubeAPI.outcome` of the spec decides:
  a model URI containing ``broken`` is ``Failed``, ``stuck`` stays ``Creating``,
  anything else is ``Available`` (each with ``observedGeneration``).

Every request is recorded in :attr:`FakeKubeAPI.requests` (method, path, query, body);
:meth:`fail_next` injects an error answer and :meth:`before_next` runs a change "by
another client" just before a request is handled.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

GROUP = "machinelearning.seldon.io"
VERSION = "v1"
PLURAL = "seldondeployments"
RESOURCE = f"{PLURAL}.{GROUP}"
_PATH = re.compile(rf"^/apis/{re.escape(GROUP)}/{VERSION}/namespaces/([^/]+)/{PLURAL}(?:/([^/]+))?/?$")
_REASONS = {400: "BadRequest", 403: "Forbidden", 404: "NotFound", 409: "Conflict", 422: "Invalid", 500: "InternalError"}


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    query: str
    body: Any


def status_object(code: int, message: str, *, reason: str | None = None, name: str | None = None) -> dict:
    """A ``kind: Status`` failure as the API server sends it."""
    details = {"group": GROUP, "kind": PLURAL, **({"name": name} if name else {})}
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or _REASONS.get(code, "Unknown"),
        "details": details,
        "code": code,
    }


def model_uris(spec: dict) -> list[str]:
    """The model URIs of a SeldonDeployment spec (graph ``modelUri`` or ``MODEL_URI`` env)."""
    uris = []
    for p in spec.get("predictors") or []:
        uris.append((p.get("graph") or {}).get("modelUri") or "")
        for component in p.get("componentSpecs") or []:
            for container in component.get("spec", {}).get("containers") or []:
                uris += [e.get("value") or "" for e in container.get("env") or [] if e.get("name") == "MODEL_URI"]
    return uris


class FakeKubeAPI:
    """A FAKE API server for SeldonDeployments (see the module docstring). Use as a context manager.

    :param stale_polls: reads after a spec change that still see the previous status.
    :param creating_polls: reads after those that see ``Creating``.
    """

    def __init__(self, *, stale_polls: int = 1, creating_polls: int = 1) -> None:
        self.stale_polls = stale_polls
        self.creating_polls = creating_polls
        self.objects: dict[tuple[str, str], dict] = {}
        self.requests: list[Recorded] = []
        self._polls: dict[tuple[str, str], int] = {}
        self._faults: list[list[Any]] = []  # [method, requests to let through, code, message]
        self._before: list[list[Any]] = []  # [method, requests to let through, action]
        self._version = 1000
        self._uid = 0
        self._lock = threading.RLock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-kube-api", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeKubeAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # -- scripting ------------------------------------------------------------------------
    def outcome(self, spec: dict) -> tuple[str, str] | None:
        """How the fake controller ends a rollout of ``spec``: ``(state, description)``, None: never."""
        uris = model_uris(spec)
        if broken := [u for u in uris if "broken" in u]:
            return "Failed", f"failed to download the model from {broken[0]}: storage initializer exited with code 1"
        if any("stuck" in u for u in uris):
            return None
        return "Available", ""

    def fail_next(self, method: str, code: int, message: str, *, skip: int = 0) -> None:
        """Answer the next ``method`` request (after ``skip`` of them) with a Status error ``code``."""
        with self._lock:
            self._faults.append([method, skip, code, message])

    def before_next(self, method: str, action: Callable[[FakeKubeAPI], None], *, skip: int = 0) -> None:
        """Run ``action(self)`` just before handling the next ``method`` request (after ``skip`` of them)."""
        with self._lock:
            self._before.append([method, skip, action])

    def seed(self, manifest: dict, *, state: str = "Available", description: str = "") -> dict:
        """Store ``manifest`` as if created and rolled out already (status of its generation)."""
        with self._lock:
            obj = self._create(copy.deepcopy(manifest), manifest["metadata"]["namespace"])
            obj["status"] = {"state": state, "description": description, "observedGeneration": 1}
            return copy.deepcopy(obj)

    def modify(self, namespace: str, name: str, change: Callable[[dict], None]) -> None:
        """Change a stored object as another client would (new resourceVersion, generation on spec change)."""
        with self._lock:
            obj = self.objects[(namespace, name)]
            before = copy.deepcopy(obj.get("spec"))
            change(obj)
            self._bump(obj, spec_changed=obj.get("spec") != before)

    def requests_of(self, method: str) -> list[Recorded]:
        """The recorded requests of one method."""
        return [r for r in self.requests if r.method == method]

    # -- the API --------------------------------------------------------------------------
    def handle(self, method: str, target: str, body: Any) -> tuple[int, dict]:
        """Answer one request: ``(HTTP status, JSON body)``."""
        parts = urlsplit(target)
        with self._lock:
            self.requests.append(Recorded(method, parts.path, parts.query, copy.deepcopy(body)))
            for i, hook in enumerate(self._before):
                if hook[0] == method:
                    if hook[1] > 0:
                        hook[1] -= 1
                        break
                    del self._before[i]
                    hook[2](self)
                    break
            for i, fault in enumerate(self._faults):
                if fault[0] == method:
                    if fault[1] > 0:
                        fault[1] -= 1
                        break
                    del self._faults[i]
                    return fault[2], status_object(fault[2], fault[3])
            match = _PATH.match(parts.path)
            if not match:
                return 404, status_object(404, "the server could not find the requested resource")
            namespace, name = match.groups()
            handler = getattr(self, f"_{method.lower()}_{'item' if name else 'collection'}", None)
            if handler is None:
                return 405, status_object(
                    405, f"the server does not allow this method on {parts.path}", reason="MethodNotAllowed"
                )
            return handler(namespace, name, body) if name else handler(namespace, body)

    def _get_collection(self, namespace: str, body: Any) -> tuple[int, dict]:
        items = [copy.deepcopy(o) for (ns, _), o in sorted(self.objects.items()) if ns == namespace]
        return 200, {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SeldonDeploymentList",
            "metadata": {"resourceVersion": str(self._version)},
            "items": items,
        }

    def _post_collection(self, namespace: str, body: Any) -> tuple[int, dict]:
        if not isinstance(body, dict) or not (body.get("metadata") or {}).get("name"):
            return 422, status_object(422, f"{RESOURCE} is invalid: metadata.name: Required value: name is required")
        name = body["metadata"]["name"]
        if body["metadata"].get("namespace", namespace) != namespace:
            return 400, status_object(
                400, "the namespace of the provided object does not match the namespace sent on the request", name=name
            )
        if (namespace, name) in self.objects:
            return 409, status_object(409, f'{RESOURCE} "{name}" already exists', reason="AlreadyExists", name=name)
        return 201, copy.deepcopy(self._create(copy.deepcopy(body), namespace))

    def _get_item(self, namespace: str, name: str, body: Any) -> tuple[int, dict]:
        obj = self.objects.get((namespace, name))
        if obj is None:
            return 404, status_object(404, f'{RESOURCE} "{name}" not found', name=name)
        self._reconcile((namespace, name), obj)
        return 200, copy.deepcopy(obj)

    def _put_item(self, namespace: str, name: str, body: Any) -> tuple[int, dict]:
        obj = self.objects.get((namespace, name))
        if obj is None:
            return 404, status_object(404, f'{RESOURCE} "{name}" not found', name=name)
        metadata = (body or {}).get("metadata") or {}
        if metadata.get("name") != name or metadata.get("namespace", namespace) != namespace:
            return 400, status_object(400, "the name of the object does not match the name on the URL", name=name)
        version = metadata.get("resourceVersion")
        if not version:
            return 422, status_object(
                422,
                f'{RESOURCE} "{name}" is invalid: metadata.resourceVersion: Invalid '
                "value: 0x0: must be specified for an update",
                name=name,
            )
        if version != obj["metadata"]["resourceVersion"]:
            return 409, status_object(
                409,
                f'Operation cannot be fulfilled on {RESOURCE} "{name}": the object has '
                "been modified; please apply your changes to the latest version and try "
                "again",
                name=name,
            )
        spec_changed = body.get("spec") != obj.get("spec")
        server_owned = {k: obj["metadata"][k] for k in ("uid", "creationTimestamp", "generation", "resourceVersion")}
        obj["metadata"] = {**copy.deepcopy(metadata), **server_owned}
        obj["spec"] = copy.deepcopy(body.get("spec"))
        self._bump(obj, spec_changed=spec_changed)
        return 200, copy.deepcopy(obj)

    def _delete_item(self, namespace: str, name: str, body: Any) -> tuple[int, dict]:
        obj = self.objects.pop((namespace, name), None)
        if obj is None:
            return 404, status_object(404, f'{RESOURCE} "{name}" not found', name=name)
        self._polls.pop((namespace, name), None)
        return 200, {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "group": GROUP, "kind": PLURAL, "uid": obj["metadata"]["uid"]},
        }

    # -- internals ------------------------------------------------------------------------
    def _create(self, obj: dict, namespace: str) -> dict:
        self._uid += 1
        obj.pop("status", None)
        obj["metadata"].update(
            namespace=namespace,
            uid=f"00000000-0000-0000-0000-{self._uid:012d}",
            generation=1,
            creationTimestamp="2025-01-01T00:00:00Z",
        )
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        key = (namespace, obj["metadata"]["name"])
        self.objects[key] = obj
        self._polls[key] = 0
        return obj

    def _bump(self, obj: dict, *, spec_changed: bool) -> None:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        if spec_changed:
            obj["metadata"]["generation"] += 1
            self._polls[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = 0

    def _reconcile(self, key: tuple[str, str], obj: dict) -> None:
        """The scripted Seldon controller: one step per read of the object."""
        generation = obj["metadata"]["generation"]
        status = obj.get("status") or {}
        if status.get("observedGeneration") == generation and status.get("state") in ("Available", "Failed"):
            return  # settled
        self._polls[key] = polls = self._polls.get(key, 0) + 1
        if polls <= self.stale_polls:
            return
        done = self.outcome(obj.get("spec") or {}) if polls > self.stale_polls + self.creating_polls else None
        state, description = done or ("Creating", "")
        obj["status"] = {"state": state, "description": description, "observedGeneration": generation}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stall per request

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            code, answer = 400, status_object(400, "the request body is not JSON")
        else:
            code, answer = self.server.fake.handle(self.command, self.path, body)  # type: ignore[attr-defined]
        data = json.dumps(answer).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        pass
