from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import CRD_DIR, HAVE_CRDS, NO_CRDS


@pytest.fixture(scope="session")
def crd() -> Path:
    """The real SeldonDeployment CRD; its tests skip, saying why, in a clone without ``../shared/k8s-crds``."""
    if not HAVE_CRDS:
        pytest.skip(NO_CRDS)
    return CRD_DIR / "machinelearning.seldon.io_seldondeployments.yaml"
