"""The pages with backend = kubernetes: SeldonDeployments read through the real client from the FAKE Kubernetes
API server (tests/serving/fake_kube_api.py; only the API is faked, at the HTTP level). Authentication is
the real API server's business (test_app.py); here the app runs in-process with a signed-in user given."""

from __future__ import annotations

import pytest

from airflow_mlops.hooks.seldon import SeldonHook
from tests.operators.test_seldon_kubernetes import cluster, deploy  # noqa: F401 - the fixture

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def client(cluster, signed_in_client):  # noqa: F811 - the imported fixture
    return signed_in_client


def test_backend_lists_and_describes_seldondeployments(cluster):  # noqa: F811
    deploy(3)
    deploy(4, canary_traffic=10)
    backend = SeldonHook(mlops_conn_id=None).deployments
    assert backend.names() == ["taxi"]
    gets = len(cluster.requests_of("GET"))
    described = backend.describe("taxi")
    assert len(cluster.requests_of("GET")) == gets + 1  # the SeldonDeployment is read once
    assert (described.backend, described.version, described.namespace) == ("kubernetes", 3, "mlops")
    assert described.traffic == {"v3": 90, "v4": 10}
    assert [(p["version"], p["traffic"], p["shadow"]) for p in described.predictors] == [(3, 90, False),
                                                                                        (4, 10, False)]


def test_deployment_pages_show_the_canary_split_and_offer_promotion(client):
    deploy(3)
    deploy(4, canary_traffic=10)
    listing = client.get("/api/deployments").json()
    assert listing["errors"] == [] and [d["name"] for d in listing["deployments"]] == ["taxi"]
    assert listing["deployments"][0]["traffic"] == {"v3": 90, "v4": 10}
    page = client.get("/deployments/taxi")
    assert page.status_code == 200
    assert "v3: v3 90%" in page.text and "v4: v4 10%" in page.text
    assert "Promote the canary v4" in page.text and '"promote": true' in page.text
    assert "Undeploy" in page.text
    assert client.get("/deployments/nothing").status_code == 404


def test_an_unreachable_cluster_is_said_on_the_page(client, cluster):  # noqa: F811
    cluster.fail_next("GET", 403, "seldondeployments is forbidden", times=10)
    page = client.get("/deployments")
    assert page.status_code == 200 and "the deployments cannot be listed" in page.text


def test_no_rollback_button_where_the_backend_cannot_roll_back(client):
    deploy(3)
    page = client.get("/deployments/taxi").text
    assert "Roll back to" not in page and "deploying the earlier version" in page


def test_a_deployment_that_cannot_be_read_is_said_on_the_list(client, cluster):  # noqa: F811
    deploy(3)
    cluster.fail_next("GET", 403, "seldondeployments is forbidden", path_contains="/seldondeployments/taxi")
    page = client.get("/deployments")
    assert page.status_code == 200 and "taxi: " in page.text and "forbidden" in page.text
