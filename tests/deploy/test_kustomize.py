"""The Kubernetes manifests in ``deploy/kubernetes/base``: built, typed, wired together, no secrets.

Nothing here talks to a cluster. The kustomization is built by :mod:`.minikustomize` (which
refuses any kustomize feature it does not implement) and, where a ``kubectl`` binary exists,
checked against ``kubectl kustomize``. Each object then goes through the kubernetes client's
model classes and back, which drops misspelled or misplaced fields, so a difference means the
API server would not see what the file says.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml
from kubernetes.client import ApiClient

from airflow_mlops.config import OPTIONS
from airflow_mlops.kubernetes.rbac import REQUIRED_RULES, role_rules
from tests.deploy import minikustomize as mk

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "kubernetes"
BASE = DEPLOY / "base"
README = DEPLOY / "README.md"
ENV_EXAMPLE = BASE / "mysql.env.example"

NAMESPACE = "mlops"
SERVICE_ACCOUNT = "airflow-mlops"
ROLE = "airflow-mlops"
CLAIM = "airflow-mlops-data"
MYSQL = "mlmd-mysql"
RBAC = "rbac.authorization.k8s.io/v1"

#: (apiVersion, kind) -> the kubernetes client's model class: the only kinds base/ may contain
KNOWN_KINDS = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "PersistentVolumeClaim"): "V1PersistentVolumeClaim",
    ("v1", "Service"): "V1Service",
    ("v1", "Secret"): "V1Secret",
    ("apps/v1", "StatefulSet"): "V1StatefulSet",
    (RBAC, "Role"): "V1Role",
    (RBAC, "RoleBinding"): "V1RoleBinding",
}

EXPECTED_OBJECTS = {
    ("v1", "Namespace", "", NAMESPACE),
    ("v1", "ServiceAccount", NAMESPACE, SERVICE_ACCOUNT),
    (RBAC, "Role", NAMESPACE, ROLE),
    (RBAC, "RoleBinding", NAMESPACE, ROLE),
    ("v1", "PersistentVolumeClaim", NAMESPACE, CLAIM),
    ("v1", "Service", NAMESPACE, MYSQL),
    ("apps/v1", "StatefulSet", NAMESPACE, MYSQL),
    ("v1", "Secret", NAMESPACE, MYSQL),
}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def kustomization() -> dict:
    return mk.load_kustomization(BASE)


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory) -> Path:
    """A copy of base/ with mysql.env made from the committed example, as the README says."""
    target = tmp_path_factory.mktemp("kustomize") / "base"
    shutil.copytree(BASE, target, ignore=shutil.ignore_patterns("mysql.env"))
    shutil.copyfile(ENV_EXAMPLE, target / "mysql.env")
    return target


@pytest.fixture(scope="session")
def objects(build_dir) -> list[dict]:
    return mk.build(build_dir)


@pytest.fixture(scope="session")
def by_id(objects) -> dict[tuple[str, str, str, str], dict]:
    return {mk.resource_id(o): o for o in objects}


def get(by_id, api_version: str, kind: str, name: str, namespace: str = NAMESPACE) -> dict:
    key = (api_version, kind, namespace if kind != "Namespace" else "", name)
    assert key in by_id, f"no {kind} {name} in the build"
    return by_id[key]


@pytest.fixture(scope="session")
def statefulset(by_id) -> dict:
    return get(by_id, "apps/v1", "StatefulSet", MYSQL)


@pytest.fixture(scope="session")
def mysql_container(statefulset) -> dict:
    containers = statefulset["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["mysql"]
    return containers[0]


@pytest.fixture(scope="session")
def api_client():
    with ApiClient() as api:
        yield api


def _object_ids():
    """Parametrize ids for the built objects, computed from the files (collection time)."""
    ids = []
    for entry in mk.load_kustomization(BASE).get("resources") or []:
        for doc in mk.load_resource_file(BASE / entry):
            ids.append(f"{doc['kind']}/{doc['metadata']['name']}")
    for gen in mk.load_kustomization(BASE).get("secretGenerator") or []:
        ids.append(f"Secret/{gen['name']}")
    return ids


OBJECT_IDS = _object_ids()


@pytest.fixture(params=range(len(OBJECT_IDS)), ids=OBJECT_IDS)
def obj(request, objects) -> dict:
    assert len(objects) == len(OBJECT_IDS)
    return objects[request.param]


# --------------------------------------------------------------------------- the kustomization


def test_every_listed_resource_exists_and_every_yaml_file_is_listed(kustomization):
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    for entry in listed:
        assert (BASE / entry).is_file(), f"{entry} is listed in kustomization.yaml but does not exist"
    on_disk = {p.name for p in BASE.iterdir() if p.suffix in (".yaml", ".yml")} - set(mk.KUSTOMIZATION_NAMES)
    assert on_disk == set(listed), "every YAML file of base/ must be listed in resources (and only those)"


def test_build_has_exactly_the_expected_objects(by_id, objects):
    assert len(by_id) == len(objects)
    assert set(by_id) == EXPECTED_OBJECTS


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl: the mini build is the only build")
def test_mini_build_equals_kubectl_kustomize(build_dir, by_id):
    result = subprocess.run(["kubectl", "kustomize", str(build_dir)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    real = {mk.resource_id(o): o for o in yaml.safe_load_all(result.stdout) if o}
    assert set(real) == set(by_id)
    for key, obj in real.items():
        assert by_id[key] == obj, f"{key}: the mini build differs from kubectl kustomize"


@pytest.mark.parametrize(
    ("kustomization_text", "files", "message"),
    [
        ("resources: [a.yaml]\ncommonLabels: {a: b}\n", {}, "commonLabels"),
        ("resources: [a.yaml]\npatches: [{path: p.yaml}]\n", {}, "patches"),
        ("resources: [a.yaml]\nimages: [{name: mysql, newTag: '8.4'}]\n", {}, "images"),
        ("resources: [a.yaml]\nlabels: [{pairs: {a: b}, includeSelectors: true}]\n", {}, "includeSelectors"),
        ("resources: [a.yaml]\nlabels: [{pairs: {a: b}, fields: []}]\n", {}, "fields"),
        ("resources: [sub]\n", {"sub/kustomization.yaml": "resources: []\n"}, "directories"),
        ("resources: [https://example.com/x.yaml]\n", {}, "remote"),
        ("resources: [../a.yaml]\n", {}, "inside"),
        ("resources: [missing.yaml]\n", {}, "no such file"),
        ("secretGenerator: [{name: s, envs: [s.env]}]\n", {"s.env": "A=1\n"}, "hash"),
        ("secretGenerator: [{name: s, literals: [A=1]}]\ngeneratorOptions: {disableNameSuffixHash: true}\n",
         {}, "literals"),
        ("secretGenerator: [{name: s, envs: [s.env]}]\ngeneratorOptions: {disableNameSuffixHash: true}\n",
         {"s.env": "FROM_ENVIRONMENT\n"}, "no '='"),
        ("secretGenerator: [{name: s, envs: [s.env]}]\ngeneratorOptions: {disableNameSuffixHash: true, labels: {}}\n",
         {"s.env": "A=1\n"}, "labels"),
        ("namespace: other\nresources: [ns.yaml]\n",
         {"ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n"}, "Namespace"),
        ("namespace: n\nresources: [crd.yaml]\n",
         {"crd.yaml": "apiVersion: kubeflow.org/v2beta1\nkind: MPIJob\nmetadata: {name: x}\n"}, "scope unknown"),
        ("namespace: n\nresources: [rb.yaml]\n",
         {"rb.yaml": "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: x}\n"
                     "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}\n"
                     "subjects: [{kind: ServiceAccount, name: s}]\n"}, "subject"),
    ],
    ids=["commonLabels", "patches", "images", "includeSelectors", "label-fields", "directory", "remote",
         "outside", "missing", "hash-suffix", "literals", "env-from-environment", "generator-labels",
         "namespace-rename", "unknown-kind", "subject-namespace"],
)
def test_mini_build_refuses_what_it_does_not_implement(tmp_path, kustomization_text, files, message):
    (tmp_path / "kustomization.yaml").write_text(kustomization_text)
    (tmp_path / "a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    with pytest.raises(mk.KustomizeError, match=message):
        mk.build(tmp_path)


def test_env_file_is_read_as_kustomize_reads_it():
    text = "\ufeff# comment\n\n   A=1\nB=x=y\nC=\nD= spaced # not a comment\n"
    assert mk.parse_env_file(text) == {"A": "1", "B": "x=y", "C": "", "D": " spaced # not a comment"}


# --------------------------------------------------------------------------- every object


def test_object_is_a_known_core_apps_or_rbac_kind(obj):
    assert (obj["apiVersion"], obj["kind"]) in KNOWN_KINDS


def test_object_round_trips_through_the_client_models(obj, api_client):
    """Deserialize into the model class and serialize back: a misspelled or misplaced field is
    dropped on the way (or a required one missing raises), so the two differ."""

    class Response:
        data = json.dumps(obj)

    model = api_client.deserialize(Response(), KNOWN_KINDS[(obj["apiVersion"], obj["kind"])])
    assert api_client.sanitize_for_serialization(model) == obj


def test_object_ends_in_the_mlops_namespace(obj):
    if obj["kind"] == "Namespace":
        assert obj["metadata"]["name"] == NAMESPACE
        assert "namespace" not in obj["metadata"]
    else:
        assert obj["metadata"].get("namespace") == NAMESPACE


def test_object_carries_the_common_labels(obj, kustomization):
    for entry in kustomization["labels"]:
        assert entry["pairs"].items() <= obj["metadata"]["labels"].items()


# --------------------------------------------------------------------------- RBAC


def test_role_rules_are_exactly_role_rules(by_id):
    role = get(by_id, RBAC, "Role", ROLE)
    assert role["rules"] == role_rules()


def test_rolebinding_binds_the_role_to_the_service_account(by_id):
    binding = get(by_id, RBAC, "RoleBinding", ROLE)
    get(by_id, "v1", "ServiceAccount", SERVICE_ACCOUNT)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}]


def test_no_other_object_grants_or_binds_anything(objects):
    rbac = [o for o in objects if o["apiVersion"] == RBAC]
    assert sorted(o["kind"] for o in rbac) == ["Role", "RoleBinding"]


def test_step_pods_get_no_api_token_by_default(by_id):
    assert get(by_id, "v1", "ServiceAccount", SERVICE_ACCOUNT)["automountServiceAccountToken"] is False


# --------------------------------------------------------------------------- storage


def test_state_volume_claim_is_read_write_many(by_id):
    claim = get(by_id, "v1", "PersistentVolumeClaim", CLAIM)
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["resources"]["requests"]["storage"]


# --------------------------------------------------------------------------- ML Metadata on MySQL


def test_statefulset_is_governed_by_a_headless_service_that_selects_its_pods(by_id, statefulset, mysql_container):
    service = get(by_id, "v1", "Service", statefulset["spec"]["serviceName"])
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert statefulset["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    ports = {p["name"]: p["containerPort"] for p in mysql_container["ports"]}
    for port in service["spec"]["ports"]:
        assert port["port"] == 3306
        target = port["targetPort"]
        assert target in ports or target in ports.values(), f"targetPort {target} is no container port"


def _secret_refs(pod_spec: dict) -> list[tuple[str, str | None]]:
    """(secret name, key or None for the whole secret) of every reference in a pod spec."""
    refs = []
    for container in pod_spec.get("initContainers", []) + pod_spec["containers"]:
        for env in container.get("env", []):
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                refs.append((ref["name"], ref["key"]))
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                refs.append((source["secretRef"]["name"], None))
    for volume in pod_spec.get("volumes", []):
        if "secret" in volume:
            refs.append((volume["secret"]["secretName"], None))
    return refs


def test_secret_references_resolve_after_generation(by_id, statefulset):
    refs = _secret_refs(statefulset["spec"]["template"]["spec"])
    assert refs, "the database's credentials come from a Secret"
    example_keys = set(mk.parse_env_file(ENV_EXAMPLE.read_text()))
    for name, key in refs:
        secret = get(by_id, "v1", "Secret", name)
        if key is not None:
            assert key in secret["data"], f"Secret {name} has no key {key}"
            assert key in example_keys, f"{ENV_EXAMPLE.name} does not list {key}"


def test_env_example_commits_no_password():
    values = mk.parse_env_file(ENV_EXAMPLE.read_text())
    passwords = {k: v for k, v in values.items() if "PASSWORD" in k}
    assert passwords, "the example lists the password keys"
    assert all(v == "" for v in passwords.values()), "the example leaves every password empty"


def test_mysql_env_is_ignored_by_git():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("no git, or not a git checkout")
    result = subprocess.run(["git", "check-ignore", "-q", "deploy/kubernetes/base/mysql.env"], cwd=REPO, check=False)
    assert result.returncode == 0, "deploy/kubernetes/base/mysql.env must be ignored by git"


def test_mysql_container_is_probed_sized_and_unprivileged(statefulset, mysql_container):
    pod = statefulset["spec"]["template"]["spec"]
    assert mysql_container["image"].split("@")[0] == "mysql:8.0"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert probe in mysql_container, f"no {probe}"
    resources = mysql_container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    assert mysql_container["securityContext"]["allowPrivilegeEscalation"] is False
    assert mysql_container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False


def test_mysql_lets_ml_metadata_log_in(mysql_container):
    """MLMD's bundled client only speaks mysql_native_password (google/ml-metadata#178)."""
    assert "--default-authentication-plugin=mysql_native_password" in mysql_container["args"]


def test_mysql_data_is_on_its_own_read_write_once_claim(statefulset, mysql_container):
    templates = {t["metadata"]["name"]: t for t in statefulset["spec"]["volumeClaimTemplates"]}
    volumes = {v["name"] for v in statefulset["spec"]["template"]["spec"].get("volumes", [])}
    for mount in mysql_container["volumeMounts"]:
        assert mount["name"] in templates or mount["name"] in volumes, \
            f"volumeMount {mount['name']} resolves to nothing"
    data = next(m for m in mysql_container["volumeMounts"] if m["mountPath"] == "/var/lib/mysql")
    assert templates[data["name"]]["spec"]["accessModes"] == ["ReadWriteOnce"]
    datadir = [a for a in mysql_container["args"] if a.startswith("--datadir=")]
    assert datadir and datadir[0].removeprefix("--datadir=").startswith("/var/lib/mysql/"), \
        "the data directory is below the volume's root (which may hold lost+found)"


# --------------------------------------------------------------------------- the documented Airflow side


def _readme_mlops_settings() -> dict[str, str]:
    text = README.read_text()
    block = re.search(r"```ini\n\[mlops\]\n(.*?)```", text, re.DOTALL)
    assert block, "README.md has an ```ini [mlops] block"
    settings = {}
    for line in block.group(1).splitlines():
        if line.strip() and not line.lstrip().startswith(("#", ";")):
            key, value = (part.strip() for part in line.split("=", 1))
            settings[key] = value
    return settings


def test_readme_mlops_settings_match_the_manifests(by_id, statefulset, mysql_container):
    settings = _readme_mlops_settings()
    assert set(settings) <= set(OPTIONS), f"unknown [mlops] options: {set(settings) - set(OPTIONS)}"
    assert settings["backend"] == "kubernetes"
    assert settings["kubernetes_namespace"] == NAMESPACE
    assert settings["kubernetes_service_account"] == SERVICE_ACCOUNT
    assert settings["kubernetes_volume_claim"] == CLAIM
    assert settings["state_dir"] == "/srv/mlops"
    uri = urlparse(settings["metadata_uri"])
    database = next(e["value"] for e in mysql_container["env"] if e["name"] == "MYSQL_DATABASE")
    assert uri.scheme == "mysql"
    assert uri.hostname == f"{statefulset['spec']['serviceName']}.{NAMESPACE}.svc"
    assert uri.port == 3306
    assert uri.path.strip("/") == database
    assert unquote(uri.username) == mk.parse_env_file(ENV_EXAMPLE.read_text())["MYSQL_USER"]
    assert "{runtime}" in settings["kubernetes_image"] and "{version}" in settings["kubernetes_image"]


def _can_i_lines() -> list[str]:
    who = f"--as=system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT} -n {NAMESPACE}"
    lines = []
    for (group, resource), verbs in sorted(REQUIRED_RULES.items()):
        base, _, sub = resource.partition("/")
        target = f"{base}.{group}" if group else base
        if sub:
            target += f" --subresource={sub}"
        lines += [f"kubectl auth can-i {verb} {target} {who}" for verb in sorted(verbs)]
    return lines


@pytest.mark.parametrize("line", _can_i_lines())
def test_readme_checks_every_granted_verb(line):
    assert line in README.read_text(), f"README.md should list: {line}"


# --------------------------------------------------------------------------- no committed credential

PLACEHOLDERS = re.compile(
    r"^(|password|passwd|secret|changeme|change-me|change_me|x+|\*+|\.\.\.|…|<[^<>]*>|\$.*)$", re.IGNORECASE)
SECRET_ASSIGNMENT = re.compile(
    r"""["']?\b([\w.-]*?(?:password|passwd|pwd))["']?[ \t]*[:=][ \t]*("[^"\n]*"|'[^'\n]*'|[^\s,}]*)""", re.IGNORECASE)
#: names that end in "password" but are authentication plugins or server options, not secrets
NOT_SECRETS = re.compile(r"(native|sha2|sha256)[_-]password$", re.IGNORECASE)
#: shorter values are words of prose or option values ("ON"), not passwords
MIN_LENGTH = 6
URL_CREDENTIALS = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@]+:([^\s@/]*)@", re.IGNORECASE)
LONG_HEX = re.compile(r"(?<![:\w])[0-9a-f]{32,}\b", re.IGNORECASE)


def real_looking_passwords(text: str) -> list[str]:
    """Values that look like real credentials: a password assigned a value of at least
    MIN_LENGTH characters that is no placeholder, a URL with a real password, or a long hex
    string (e.g. `openssl rand -hex` output)."""
    found = []
    for match in SECRET_ASSIGNMENT.finditer(text):
        value = match.group(2).strip("\"'")
        if NOT_SECRETS.search(match.group(1)) or len(value) < MIN_LENGTH:
            continue
        if not PLACEHOLDERS.match(value):
            found.append(match.group(0))
    for match in URL_CREDENTIALS.finditer(text):
        if not PLACEHOLDERS.match(unquote(match.group(1))):
            found.append(match.group(0))
    found += [m.group(0) for m in LONG_HEX.finditer(text)]
    return found


@pytest.mark.parametrize(
    ("text", "leaks"),
    [
        ("MYSQL_PASSWORD=\n", False),
        ("MYSQL_PASSWORD=hunter2hunter2\n", True),
        ('  echo "MYSQL_ROOT_PASSWORD=$(openssl rand -hex 24)"', False),
        ("password: s3cr3t-Pa55\n", True),
        ('"password": "<password>"', False),
        ("mysql://mlmd:<password>@mlmd-mysql.mlops.svc:3306/mlmd", False),
        ("mysql://user:password@host/db", False),
        ("mysql://mlmd:${MLMD_PASSWORD}@mlmd-mysql.mlops.svc:3306/mlmd", False),
        ("mysql://mlmd:Tr0ub4dor%263@mlmd-mysql:3306/mlmd", True),
        ("MYSQL_PWD=\"$MYSQL_PASSWORD\" exec mysql", False),
        ("key: MYSQL_PASSWORD\n", False),
        ("--default-authentication-plugin=mysql_native_password", False),
        ("# mysql_native_password: the MySQL client", False),
        ("--mysql-native-password=ON", False),
        ("0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a6978", True),
        ("image: mysql@sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0", False),
    ],
)
def test_password_detector(text, leaks):
    assert bool(real_looking_passwords(text)) is leaks


def _committable_files() -> list[Path]:
    """Files under deploy/ that git would commit (tracked or untracked, not ignored)."""
    if shutil.which("git") and (REPO / ".git").exists():
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", "deploy"],
                             cwd=REPO, capture_output=True, check=True).stdout.decode()
        return sorted(REPO / p for p in out.split("\0") if p and (REPO / p).is_file())
    return sorted(p for p in (REPO / "deploy").rglob("*") if p.is_file() and p.name != "mysql.env")


def test_no_committed_file_contains_a_real_looking_password():
    files = _committable_files()
    assert BASE / "kustomization.yaml" in files and README in files
    assert BASE / "mysql.env" not in files
    leaks = {str(p.relative_to(REPO)): found for p in files if (found := real_looking_passwords(p.read_text()))}
    assert not leaks, f"real-looking credentials in files that would be committed: {leaks}"


def test_no_committed_manifest_holds_secret_data():
    for path in sorted(BASE.glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Secret":
                assert not doc.get("data") and not doc.get("stringData"), f"{path.name} commits secret data"
