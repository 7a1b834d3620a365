"""A local PEP 503 package index for the build tests: folders of wheels served over HTTP on loopback.

``serve_indexes({"pypi/simple": wheels_a, "pytorch/whl/cpu": wheels_b})`` lays each group of
distribution files out as ``<root>/<path>/<project>/<file>`` (project names normalised as pip
asks for them) and serves the tree with the standard library's HTTP server, whose directory
listings are the simple index's pages of links. Every request path is recorded, so a test can
tell which index a build used. Standing in for PyPI and PyPI-like indexes (PyTorch's); nothing
leaves the machine.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


def project_of(filename: str) -> str:
    """The normalised project name of a wheel or sdist file name (PEP 503)."""
    stem = filename[: -len(".whl")] if filename.endswith(".whl") else re.sub(r"\.(tar\.gz|zip)$", "", filename)
    name = stem.split("-")[0] if filename.endswith(".whl") else stem.rsplit("-", 1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class LocalIndexes:
    base_url: str
    requests: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.strip('/')}"

    def asked(self, prefix: str) -> list[str]:
        """Request paths under ``prefix`` (e.g. ``/pytorch/whl/cpu/``)."""
        return [p for p in self.requests if p.startswith(prefix)]


@contextmanager
def serve_indexes(root: Path, indexes: dict[str, Iterable[Path]]) -> Iterator[LocalIndexes]:
    """Serve each ``path -> distribution files`` as a simple index under ``root``; yield their base URL."""
    for path, files in indexes.items():
        for dist in files:
            folder = root / path / project_of(dist.name)
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / dist.name
            if not target.exists():
                os.symlink(dist.resolve(), target)
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format, *args):  # noqa: A002 - the base class's name
            requests.append(self.path)

    handler = functools.partial(Handler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LocalIndexes(f"http://127.0.0.1:{server.server_address[1]}", requests)
    finally:
        server.shutdown()
        server.server_close()
