"""The Helm chart (deploy/chart/slotpool): linted, rendered for several value sets and each
rendering sent to the real test API server as a server-side dry run (it validates and admits
every object, unknown fields refused), and wrong values refused with the value's path.

Its RBAC and a control plane running with its ServiceAccount: test_chart_rbac.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.api import create
from tests.e2e.helpers import wait_for
from tests.support.helm import CHART, Helm
from tests.support.kube import K8sTestEnv

VALUES = Path(__file__).parent / "values"
VALUE_SETS = sorted(path.name for path in VALUES.glob("*.yaml"))
CRD = Path(__file__).parent / "servicemonitor-crd.yaml"


def _kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(doc["kind"] for doc in docs)


def _only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}s"
    return found[0]


def _env(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    container = _only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {entry["name"]: entry for entry in container["env"]}


@pytest.mark.parametrize("values", VALUE_SETS)
def test_the_chart_lints_clean(helm: Helm, values: str) -> None:
    result = helm.run("lint", CHART, "--strict", "--values", VALUES / values)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.fixture(scope="module")
def crd(k8s: K8sTestEnv) -> K8sTestEnv:
    """The ServiceMonitor CRD installed (minimal) and served."""
    create(k8s, yaml.safe_load(CRD.read_text()))
    path = "/apis/monitoring.coreos.com/v1"
    wait_for(lambda: k8s.client.get(path).status_code == 200, what=f"{path} served", seconds=30)
    return k8s


@pytest.mark.parametrize("values", VALUE_SETS)
def test_each_rendering_is_accepted_by_the_api_server(
    helm: Helm, crd: K8sTestEnv, values: str
) -> None:
    namespace = f"chart-{Path(values).stem}"[:63]
    docs = helm.template("sp", namespace, [VALUES / values])
    # A dry run of what is in a namespace needs the namespace: the chart's own Namespaces are
    # created for real (as rendered), then any other namespace named, then the rest dry.
    namespaces = [doc for doc in docs if doc["kind"] == "Namespace"]
    named = {namespace} | {d["metadata"]["namespace"] for d in docs if "namespace" in d["metadata"]}
    named -= {doc["metadata"]["name"] for doc in namespaces}
    for doc in namespaces:
        create(crd, doc)
    for name in sorted(named):
        create(crd, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    for doc in docs:
        if doc["kind"] != "Namespace":
            create(crd, doc, dry_run=True)


def test_the_defaults_need_only_a_database_url(helm: Helm) -> None:
    docs = helm.template("sp", "slotpool", [VALUES / "minimal.yaml"])
    assert _kinds(docs) == [
        "Deployment",
        "Namespace",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Secret",
        "Service",
        "ServiceAccount",
    ]
    deployment = _only(docs, "Deployment")
    # Two replicas on the one PostgreSQL, replaced one at a time, a new one ready before an old
    # one stops.
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "slotpool:0.1.0"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["securityContext"]["runAsNonRoot"] is True
    env = _env(docs)
    assert env["SLOTPOOL_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "sp-slotpool",
        "key": "database-url",
    }
    assert "SLOTPOOL_ADMIN_TOKEN" not in env  # the server generates one and prints it once
    assert env["SLOTPOOL_PUBLIC_URL"]["value"] == "http://sp-slotpool.slotpool.svc:8080"
    assert env["SLOTPOOL_DEFAULT_NAMESPACE"]["value"] == "slotpool-agents"
    assert env["SLOTPOOL_KUBERNETES_IN_CLUSTER"]["value"] == "true"
    assert env["SLOTPOOL_LOCAL_RUNTIME"]["value"] == "false"
    # Each replica is named after its Pod; the lease settings as values.
    assert env["SLOTPOOL_REPLICA_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["SLOTPOOL_LEADER_LEASE_SECONDS"]["value"] == "15"
    assert env["SLOTPOOL_LEADER_RENEW_SECONDS"]["value"] == "5"
    # preStop gives the Service time to drop the Pod; SIGKILL comes only after preStop + lease.
    assert container["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "5"]}}
    assert pod["terminationGracePeriodSeconds"] == 45 > 5 + 15
    # Replicas spread over nodes where the scheduler can.
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert (
        term["podAffinityTerm"]["labelSelector"]["matchLabels"]
        == (deployment["spec"]["selector"]["matchLabels"])
    )
    # Two replicas: a drain evicts one at a time.
    budget = _only(docs, "PodDisruptionBudget")["spec"]
    assert budget["minAvailable"] == 1
    assert "maxUnavailable" not in budget
    assert budget["selector"] == deployment["spec"]["selector"]
    namespace = _only(docs, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_existing_secrets_ingress_and_service_monitor(helm: Helm) -> None:
    docs = helm.template("sp", "slotpool", [VALUES / "ingress-monitoring-existing-secrets.yaml"])
    assert "Secret" not in _kinds(docs)  # the existing ones are used
    env = _env(docs)
    assert env["SLOTPOOL_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "slotpool-db",
        "key": "url",
    }
    assert env["SLOTPOOL_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "slotpool-admin",
        "key": "admin-token",
    }
    ingress = _only(docs, "Ingress")["spec"]
    assert ingress["tls"] == [{"hosts": ["slotpool.example.com"], "secretName": "slotpool-tls"}]
    monitor = _only(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}
    ]
    service = _only(docs, "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )


def test_several_agent_namespaces_each_get_a_role(helm: Helm) -> None:
    docs = helm.template("sp", "slotpool", [VALUES / "several-agent-namespaces.yaml"])
    agents = ["ci-small", "ci-large", "ci-gpu"]
    assert sorted(d["metadata"]["name"] for d in docs if d["kind"] == "Namespace") == sorted(agents)
    for kind in ("Role", "RoleBinding"):
        assert sorted(d["metadata"]["namespace"] for d in docs if d["kind"] == kind) == sorted(
            agents
        )
    assert _env(docs)["SLOTPOOL_DEFAULT_NAMESPACE"]["value"] == "ci-small"
    policy = _only(docs, "NetworkPolicy")["spec"]
    agents_rule = policy["ingress"][0]["from"][0]
    assert agents_rule["namespaceSelector"]["matchExpressions"][0]["values"] == agents
    assert agents_rule["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/managed-by": "slotpool"}
    }
    api_rule = policy["egress"][1]
    assert api_rule["to"] == [
        {"ipBlock": {"cidr": "10.0.0.1/32"}},
        {"ipBlock": {"cidr": "192.168.10.0/24"}},
    ]


def test_an_existing_account_gets_no_rbac_and_no_namespaces(helm: Helm) -> None:
    docs = helm.template("sp", "slotpool", [VALUES / "existing-account-no-extras.yaml"])
    assert _kinds(docs) == ["Deployment", "Service"]
    pod = _only(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "slotpool-provided"
    assert pod["containers"][0]["image"] == "registry.example.com/platform/slotpool:0.1.0-3"
    assert _env(docs)["SLOTPOOL_RETAIN_TASKS_DAYS"]["value"] == "14"


def test_three_replicas_with_a_short_lease_one_per_node(helm: Helm) -> None:
    docs = helm.template("sp", "slotpool", [VALUES / "three-replicas-short-lease.yaml"])
    deployment = _only(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 40
    assert pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "10"]
    (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    env = _env(docs)
    assert env["SLOTPOOL_LEADER_LEASE_SECONDS"]["value"] == "4"
    assert env["SLOTPOOL_LEADER_RENEW_SECONDS"]["value"] == "1.5"
    assert _only(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == "66%"


def test_one_replica_gets_a_budget_that_never_blocks_a_drain(helm: Helm) -> None:
    docs = helm.template("sp", "slotpool", [VALUES / "one-replica.yaml"])
    deployment = _only(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    # The installer's affinity, nothing of the chart's.
    assert list(deployment["spec"]["template"]["spec"]["affinity"]) == ["nodeAffinity"]
    budget = _only(docs, "PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] == 1
    assert "minAvailable" not in budget


def test_lease_settings_given_on_the_command_line_are_taken(helm: Helm) -> None:
    """``--set`` makes 2.5 a string: the schema takes it, the Pod gets the number."""
    docs = helm.template(
        "sp",
        "slotpool",
        [VALUES / "minimal.yaml"],
        "leader.leaseSeconds=2.5,leader.renewSeconds=0.5",
    )
    env = _env(docs)
    assert env["SLOTPOOL_LEADER_LEASE_SECONDS"]["value"] == "2.5"
    assert env["SLOTPOOL_LEADER_RENEW_SECONDS"]["value"] == "0.5"


# -- wrong values ------------------------------------------------------------------------------

SCHEMA_REFUSALS = [
    # (--set value, what the error names)
    ("replicaCount=two", "replicaCount"),
    ("image.pullPolicy=Sometimes", "pullPolicy"),
    ("agents.namespaces[0]=CI_Agents", "namespaces"),
    ("adminToken.value=short", "adminToken"),
    ("service.port=70000", "port"),
    ("podDisruptionBudget.maxUnavailable=0", "maxUnavailable"),
    ("podDisruptionBudget.minAvailable=0", "minAvailable"),
    ("replicaCount=0", "replicaCount"),
    ("leader.leaseSeconds=0", "leaseSeconds"),
    ("leader.renewSeconds=soon", "renewSeconds"),
    ("shutdown.preStopSleepSeconds=-1", "preStopSleepSeconds"),
    ("podAntiAffinity=sometimes", "podAntiAffinity"),
    ("securityContext.allowPrivilegeEscalation=true", "allowPrivilegeEscalation"),
    ("networkPolicy.kubernetesApi.cidrs[0]=anywhere", "cidrs"),
    ("server.logFormat=xml", "logFormat"),
    ("server.extraEnv.RETAIN=1", "extraEnv"),
    ("databse.url=postgresql://x", "databse"),  # a misspelt key
]


@pytest.mark.parametrize(("value", "named"), SCHEMA_REFUSALS)
def test_the_schema_refuses_a_wrong_value_and_names_it(helm: Helm, value: str, named: str) -> None:
    result = helm.run("template", "sp", CHART, "--values", VALUES / "minimal.yaml", "--set", value)
    assert result.returncode != 0, result.stdout
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    assert named in result.stderr, result.stderr


CHART_REFUSALS = [
    (
        ["--set", "database.url=sqlite:////tmp/slotpool.db"],
        "database.url: SQLite is one process on one file, so it cannot serve replicaCount: 2",
    ),
    (
        ["--set", "database.url=sqlite:////tmp/slotpool.db", "--set", "replicaCount=1"],
        "database.url: SQLite would live in the Pod's emptyDir and be lost with the Pod",
    ),
    (
        ["--set", "leader.leaseSeconds=10", "--set", "leader.renewSeconds=5"],
        "leader.renewSeconds: 5 must be below leader.leaseSeconds / 2 (5)",
    ),
    (
        ["--set", "shutdown.terminationGracePeriodSeconds=20"],
        "shutdown.terminationGracePeriodSeconds: 20 must be above "
        "shutdown.preStopSleepSeconds + leader.leaseSeconds (20)",
    ),
    (
        ["--set", "replicaCount=3", "--set", "podDisruptionBudget.minAvailable=3"],
        "podDisruptionBudget.minAvailable: 3 with replicaCount: 3 would block every node drain; "
        "give at most 2",
    ),
    (["--set", "database.url="], "database: set database.existingSecret"),
    (
        ["--set", "database.existingSecret=db"],
        "give either database.url or database.existingSecret",
    ),
    (
        [
            "--set",
            "adminToken.value=a-token-of-at-least-24-chars",
            "--set",
            "adminToken.existingSecret=t",
        ],
        "give either adminToken.value or adminToken.existingSecret",
    ),
    (["--set", "agents.namespaces={a,b,a}"], 'agents.namespaces: "a" is listed twice'),
    (["--set", "server.extraEnv.SLOTPOOL_LOG_LEVEL=debug"], "server.extraEnv.SLOTPOOL_LOG_LEVEL"),
    (["--set", "server.extraEnv.SLOTPOOL_REPLICA_ID=a"], "server.extraEnv.SLOTPOOL_REPLICA_ID"),
    (["--set", "serviceAccount.create=false"], "serviceAccount.name: name the existing"),
]


@pytest.mark.parametrize(("args", "message"), CHART_REFUSALS)
def test_the_chart_refuses_what_the_schema_cannot_see(
    helm: Helm, args: list[str], message: str
) -> None:
    result = helm.run("template", "sp", CHART, "--values", VALUES / "minimal.yaml", *args)
    assert result.returncode != 0, result.stdout
    assert message in result.stderr, result.stderr
