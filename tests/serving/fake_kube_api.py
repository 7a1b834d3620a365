"""The FAKE Kubernetes API server of the Seldon tests: now :mod:`tests.kubernetes.fake_api`.

It is not Kubernetes and runs no Seldon; this module only re-exports the generic fake (whose
``FakeKubeAPI`` keeps this module's API: ``stale_polls``/``creating_polls``, ``outcome``,
``fail_next``, ``before_next``, ``seed``, ``modify``, ``objects``, ``requests``).
"""

from __future__ import annotations

from tests.kubernetes.fake_api import (
    GROUP,
    PLURAL,
    RESOURCE,
    VERSION,
    FakeKubeAPI,
    Recorded,
    model_uris,
    status_object,
)

__all__ = ["GROUP", "PLURAL", "RESOURCE", "VERSION", "FakeKubeAPI", "Recorded", "model_uris", "status_object"]
