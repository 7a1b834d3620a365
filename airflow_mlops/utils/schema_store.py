"""Reference schemas: the schema every new span is validated against, kept and versioned.

Layout under ``root`` (``{state_dir}/schemas``)::

    <pipeline>/v1/schema.pbtxt   v1/reference.json   CURRENT  (holds "1")

A curated schema given by the user always wins; otherwise the schema of the first
accepted run is promoted to ``v1`` and later runs are validated against ``CURRENT``.
Versions are written to a temporary directory and renamed; ``CURRENT`` is replaced
atomically, so a reader sees the old reference or the new one, never half of one.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

_VERSION_DIR = re.compile(r"^v(\d+)$")
_FEATURE = re.compile(r'(?m)^feature\s*\{\s*name:\s*"((?:[^"\\]|\\.)*)"')


class ReferenceSchemaError(ValueError):
    """A reference schema that cannot serve as one (empty, unreadable, missing); the message says what to do."""


def schema_features(schema_file: str | os.PathLike[str]) -> list[str]:
    """The top-level feature names of a ``schema.pbtxt`` (text format), read without TensorFlow."""
    return _FEATURE.findall(Path(schema_file).read_text())


def fix_hint(pipeline: str) -> str:
    return (f"inspect it with `airflow-mlops schema show {pipeline}`, replace it with `airflow-mlops schema set "
            f"{pipeline} SCHEMA.pbtxt`, or reset it with `airflow-mlops schema reset {pipeline}` (the next "
            "accepted span's schema becomes the reference)")


@dataclass(frozen=True)
class ReferenceSchema:
    pipeline: str
    version: int
    schema_file: Path
    meta: dict


class ReferenceSchemaStore:
    """Versioned reference schemas of each pipeline under ``root``."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def _dir(self, pipeline: str) -> Path:
        return self.root / pipeline

    def versions(self, pipeline: str) -> list[int]:
        directory = self._dir(pipeline)
        if not directory.is_dir():
            return []
        return sorted(int(m.group(1)) for e in directory.iterdir() if (m := _VERSION_DIR.match(e.name)))

    def get(self, pipeline: str, version: int) -> ReferenceSchema:
        vdir = self._dir(pipeline) / f"v{version}"
        if not (vdir / "schema.pbtxt").is_file():
            raise FileNotFoundError(f"pipeline {pipeline!r} has no reference schema v{version} in {self.root}")
        meta = json.loads((vdir / "reference.json").read_text())
        return ReferenceSchema(pipeline, version, vdir / "schema.pbtxt", meta)

    def current(self, pipeline: str) -> ReferenceSchema | None:
        pointer = self._dir(pipeline) / "CURRENT"
        if not pointer.is_file():
            return None
        return self.get(pipeline, int(pointer.read_text().strip()))

    def checked_current(self, pipeline: str) -> ReferenceSchema | None:
        """:meth:`current`, refused with what to do when it is unreadable or has no feature."""
        try:
            current = self.current(pipeline)
            if current is None:
                return None
            features = schema_features(current.schema_file)
        except (OSError, ValueError) as err:
            raise ReferenceSchemaError(f"the reference schema of pipeline {pipeline!r} in {self.root} cannot be "
                                       f"read ({err}): {fix_hint(pipeline)}") from None
        if not features:
            raise ReferenceSchemaError(f"reference schema v{current.version} of pipeline {pipeline!r} "
                                       f"({current.schema_file}) has no feature, so every span would fail against "
                                       f"it: {fix_hint(pipeline)}")
        return current

    def reset(self, pipeline: str) -> int | None:
        """Stop using a reference (the versions stay for inspection); return the version that was current."""
        directory = self._dir(pipeline)
        pointer = directory / "CURRENT"
        if not pointer.exists():
            return None
        with open(directory / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            text = pointer.read_text().strip()
            pointer.unlink()
        return int(text) if text.isdigit() else None

    def promote(self, pipeline: str, schema_file: str | os.PathLike[str], **meta: object) -> ReferenceSchema:
        """Keep ``schema_file`` as the next version and make it current."""
        schema_file = Path(schema_file)
        if not schema_file.is_file():
            raise FileNotFoundError(f"schema file {schema_file} does not exist")
        if not schema_features(schema_file):
            raise ReferenceSchemaError(f"schema file {schema_file} has no feature: it cannot be a reference schema")
        directory = self._dir(pipeline)
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            version = max(self.versions(pipeline), default=0) + 1
            tmp = Path(tempfile.mkdtemp(dir=directory, prefix=f".v{version}."))
            try:
                shutil.copyfile(schema_file, tmp / "schema.pbtxt")
                record = {"version": version, "source": str(schema_file),
                          "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **meta}
                (tmp / "reference.json").write_text(json.dumps(record, indent=2, default=str))
                tmp.rename(directory / f"v{version}")
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            pointer_tmp = directory / f".CURRENT.{os.getpid()}"
            pointer_tmp.write_text(f"{version}\n")
            os.replace(pointer_tmp, directory / "CURRENT")
        return self.get(pipeline, version)
