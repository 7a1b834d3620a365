"""Versioned model store: ``<base>/<version>/`` SavedModels (TF Serving's layout) plus a record per version.

Standard library only, so both the TFX runtime (the Pusher writes) and Airflow (deploy and
rollback operators read) use it. Layout under ``base`` (``{state_dir}/models/<pipeline>``)::

    1/saved_model.pb, 1/variables/...      # version 1, complete before it appears
    2/...
    .registry/1.json                       # version, run, model artifact, metrics, status
    .registry/.lock                        # held while a version is added

A version is published in three steps under the lock: its record is written ``copying``,
the model is copied to a hidden directory and renamed to ``<version>`` (so a model server
never sees half a model; ``saved_model.pb`` is copied last), then the record becomes
``ready``. A retry that publishes the same trained model (same ``model_uri``) finishes or
reuses its version, so one training run never becomes two versions.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from airflow_mlops.runtimes.contract import directory_lock, write_json_atomic

REGISTRY_DIR = ".registry"
READY = "ready"
COPYING = "copying"


class ModelRegistryError(Exception):
    """The model store is unusable or a requested version does not exist."""


@dataclass
class ModelVersion:
    """One pushed model version.

    :param version: the numeric version (its directory name).
    :param path: the SavedModel directory of this version.
    :param model_uri: the Trainer's model artifact it was copied from.
    :param status: ``ready``, or ``copying`` while (or if a crash left it) being copied.
    :param approval: a human's decision on deploying it, when one was asked for (``approved``, ``by``,
        ``reason``, ``at``: epoch seconds); see :meth:`ModelRegistry.annotate`.
    """

    version: int
    path: str
    model_uri: str
    pipeline_name: str = ""
    run_id: str = ""
    model_artifact_id: int | None = None
    blessing_artifact_id: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    pushed_at: float = 0.0
    status: str = COPYING
    approval: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelVersion:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def copy_saved_model(source: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Copy a SavedModel directory, ``saved_model.pb`` last (readers take it as "complete")."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("saved_model.pb"))
    pb = Path(source) / "saved_model.pb"
    if pb.exists():
        shutil.copy2(pb, Path(dest) / "saved_model.pb")


class ModelRegistry:
    """The versions of one pipeline's models under ``base``.

    :param base: the directory holding the numeric version directories.
    """

    def __init__(self, base: str | os.PathLike[str]) -> None:
        self.base = Path(base)
        self.records = self.base / REGISTRY_DIR

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with directory_lock(self.records):
            yield

    def _record_path(self, version: int) -> Path:
        return self.records / f"{version}.json"

    def _write(self, entry: ModelVersion) -> None:
        write_json_atomic(self._record_path(entry.version), json.dumps(asdict(entry), indent=2, sort_keys=True))

    def _all(self) -> list[ModelVersion]:
        if not self.records.is_dir():
            return []
        found = []
        for path in self.records.glob("*.json"):
            if path.stem.isdigit():
                try:
                    found.append(ModelVersion.from_dict(json.loads(path.read_text())))
                except (OSError, ValueError, TypeError) as err:
                    raise ModelRegistryError(f"unreadable model version record {path}: {err}") from err
        return sorted(found, key=lambda v: v.version)

    def versions(self) -> list[ModelVersion]:
        """Every ready version, oldest first."""
        return [v for v in self._all() if v.status == READY and Path(v.path).is_dir()]

    def get(self, version: int | str) -> ModelVersion:
        """Version ``version``; ``"latest"`` is the newest ready one."""
        ready = self.versions()
        if version == "latest":
            if not ready:
                raise ModelRegistryError(f"no model has been pushed to {self.base} yet")
            return ready[-1]
        try:
            number = int(version)
        except (TypeError, ValueError):
            raise ModelRegistryError(f"model version must be a number or 'latest', got {version!r}") from None
        for candidate in ready:
            if candidate.version == number:
                return candidate
        raise ModelRegistryError(
            f"model version {number} is not in {self.base}; ready versions: {[v.version for v in ready] or 'none'}"
        )

    def annotate(self, version: int, /, **fields: Any) -> ModelVersion:
        """Set ``fields`` in the record of version ``version`` (under the lock); return the record.

        Only fields :class:`ModelVersion` declares can be set, and not ``version`` itself.
        """
        settable = set(ModelVersion.__dataclass_fields__) - {"version"}
        if unknown := sorted(set(fields) - settable):
            raise ModelRegistryError(f"cannot annotate model version {version} with {unknown}: a model version "
                                     f"record can be given {sorted(settable)}")
        with self._locked():
            path = self._record_path(int(version))
            try:
                entry = ModelVersion.from_dict(json.loads(path.read_text()))
            except FileNotFoundError:
                known = [v.version for v in self._all()]
                raise ModelRegistryError(
                    f"model version {version} is not in {self.base}; versions: {known or 'none'}") from None
            except (OSError, ValueError, TypeError) as err:
                raise ModelRegistryError(f"unreadable model version record {path}: {err}") from err
            for name, value in fields.items():
                setattr(entry, name, value)
            self._write(entry)
            return entry

    def _next_version(self) -> int:
        numbers = [v.version for v in self._all()]
        if self.base.is_dir():
            numbers += [int(p.name) for p in self.base.iterdir() if p.name.isdigit()]
        return max(numbers, default=0) + 1

    def publish(
        self,
        source: str | os.PathLike[str],
        *,
        model_uri: str,
        extra_files: dict[str, str] | None = None,
        **record: Any,
    ) -> tuple[ModelVersion, bool]:
        """Add the SavedModel at ``source`` as the next version; return it and whether it was new.

        The same ``model_uri`` published again (a retried push) returns its existing version.

        :param extra_files: ``{relative path: text}`` written into the version beside the model's own
            files (those the model has are kept), before the version appears.
        """
        if not (Path(source) / "saved_model.pb").exists():
            raise ModelRegistryError(f"{source} is not a SavedModel directory (no saved_model.pb)")
        with self._locked():
            existing = next((v for v in self._all() if v.model_uri == model_uri), None)
            if existing is not None and existing.status == READY and Path(existing.path).is_dir():
                return existing, False
            entry = existing or ModelVersion(
                version=self._next_version(), path="", model_uri=model_uri, pushed_at=time.time(), **record
            )
            entry.path = str(self.base / str(entry.version))
            entry.status = COPYING
            self._write(entry)
            if not Path(entry.path).is_dir():
                staging = self.base / f".incoming-{entry.version}-{os.getpid()}"
                shutil.rmtree(staging, ignore_errors=True)
                copy_saved_model(source, staging)
                for relative, text in (extra_files or {}).items():
                    target = staging / relative
                    if not target.exists():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_text(text)
                os.rename(staging, entry.path)
            entry.status = READY
            self._write(entry)
            return entry, existing is None
