"""The chart rendered for the example parties: valid Kubernetes, and what matters in it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_helpers import (
    CHART,
    Manifest,
    Tools,
    by_kind,
    env_file,
    kubeconform,
    pod_specs,
    render,
    render_text,
)

from fedcore.apitokens import is_loopback
from fedcore.settings import PartySettings

APPS = {"flow-server", "dashboard", "task-engine", "federation-bridge"}


def _party_flags(env_dir: Path, *sets: str) -> list[str]:
    """Party 10000's required values and key files, then ``sets`` (each a --set)."""
    keys = env_dir / "keys" / "10000"
    flags = [
        flag
        for value in ("party.id=10000", "party.domain=a.example", *sets)
        for flag in ("--set", value)
    ]
    return [
        *flags,
        "--set-file",
        f"keys.privateKey={keys}/private.pem",
        "--set-file",
        f"bridge.tls.cert={keys}/bridge-tls.crt",
        "--set-file",
        f"bridge.tls.key={keys}/bridge-tls.key",
    ]


def test_helm_lint(tools: Tools, env_dir: Path) -> None:
    result = subprocess.run(
        [
            str(tools.helm),
            "lint",
            "--strict",
            str(CHART),
            *_party_flags(env_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_manifests_validate_strictly(tools: Tools, env_dir: Path, tmp_path: Path) -> None:
    variants = [
        env_file(env_dir, "10000"),
        env_file(env_dir, "20000"),
        env_file(
            env_dir,
            "20000",
            BRIDGE_SERVICE_TYPE="LoadBalancer",
            EXPOSE_MQ_HTTP_PORT="443",
            INGRESS_TLS_SECRET="party-b-tls",
        ),
    ]
    texts = [render_text(tools, path) for path in variants]
    kubeconform(tools, texts, tmp_path)
    assert sum(t.count("\nkind: ") for t in texts) > 75


def test_both_parties_share_one_cluster(party_a: list[Manifest], party_b: list[Manifest]) -> None:
    for docs, party in ((party_a, "10000"), (party_b, "20000")):
        kinds = {d["kind"] for d in docs}
        assert not kinds & {
            "Namespace",
            "ClusterRole",
            "ClusterRoleBinding",
            "PersistentVolume",
            "IngressClass",
            "StorageClass",
        }, "a cluster-scoped object collides"
        assert all(d["metadata"].get("labels", {}).get("tessera.io/party") == party for d in docs)
        assert all(d["metadata"].get("namespace") in (None, f"tessera-{party}") for d in docs)
    ports = [
        by_kind(docs, "Service")["federation-bridge"]["spec"]["ports"][0]["nodePort"]
        for docs in (party_a, party_b)
    ]
    assert ports == [30370, 30371]
    hosts = [
        by_kind(docs, "Ingress")["tessera"]["spec"]["rules"][0]["host"]
        for docs in (party_a, party_b)
    ]
    assert len(set(hosts)) == 2


def test_ingress_paths(party_a: list[Manifest]) -> None:
    rule = by_kind(party_a, "Ingress")["tessera"]["spec"]["rules"][0]
    assert rule["host"] == "party-a.tessera.example"
    routes = {
        p["path"]: (p["pathType"], p["backend"]["service"]["name"]) for p in rule["http"]["paths"]
    }
    assert routes == {
        "/": ("Prefix", "dashboard"),
        "/pipelines": ("Prefix", "dashboard"),
        "/flow-server": ("Prefix", "flow-server"),
    }


def test_bridge_is_exposed_over_tls_only(party_a: list[Manifest]) -> None:
    service = by_kind(party_a, "Service")["federation-bridge"]
    assert service["spec"]["type"] == "NodePort"
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["https"]
    for name, svc in by_kind(party_a, "Service").items():
        if name != "federation-bridge":
            assert svc["spec"]["type"] == "ClusterIP", name
    pod = pod_specs(party_a)["Deployment/federation-bridge"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["BIND_HOST"] == "127.0.0.1", "plain HTTP must stay inside the pod"
    assert any(v.get("secret", {}).get("secretName") == "bridge-tls" for v in pod["volumes"])
    config = by_kind(party_a, "ConfigMap")["bridge-tls-proxy"]["data"]["nginx.conf"]
    assert "listen 9443 ssl;" in config and "proxy_pass http://127.0.0.1:9370;" in config


def test_the_bridge_health_and_metrics_stay_inside_the_party(party_a: list[Manifest]) -> None:
    config = by_kind(party_a, "ConfigMap")["bridge-tls-proxy"]["data"]["nginx.conf"]
    # peers reach the signed endpoints only: everything else ends at the proxy
    locations = " ".join(config.split()).split("location ")[1:]
    assert [loc.split(" {")[0] for loc in locations] == ["/v1/", "/"]
    assert locations[1].startswith("/ { return 404; }")
    bridge = pod_specs(party_a)["Deployment/federation-bridge"]["containers"][0]
    env = {e["name"]: e.get("value") for e in bridge["env"]}
    assert (env["BRIDGE_INTERNAL_HOST"], env["BRIDGE_INTERNAL_PORT"]) == ("0.0.0.0", "9390")
    for probe in (bridge["readinessProbe"], bridge["livenessProbe"]):
        assert probe["httpGet"] == {"path": "/health", "port": "internal"}
    assert bridge["ports"] == [{"name": "internal", "containerPort": 9390}]
    service = by_kind(party_a, "Service")["federation-bridge"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["https"]
    from_peers = by_kind(party_a, "NetworkPolicy")["bridge-from-peers"]["spec"]["ingress"]
    assert from_peers == [{"ports": [{"port": 9443, "protocol": "TCP"}]}]


def test_a_web_certificate_turns_tls_on_at_the_ingress(tools: Tools, env_dir: Path) -> None:
    keys = env_dir / "keys" / "10000"
    docs = render(
        tools,
        env_file(
            env_dir,
            "10000",
            INGRESS_TLS_CERT=f"{keys}/bridge-tls.crt",
            INGRESS_TLS_KEY=f"{keys}/bridge-tls.key",
        ),
    )
    secret = by_kind(docs, "Secret")["ingress-tls"]
    assert secret["type"] == "kubernetes.io/tls" and set(secret["data"]) == {"tls.crt", "tls.key"}
    ingress = by_kind(docs, "Ingress")["tessera"]["spec"]
    assert ingress["tls"] == [{"hosts": ["party-a.tessera.example"], "secretName": "ingress-tls"}]
    plain = by_kind(render(tools, env_file(env_dir, "10000")), "Ingress")["tessera"]["spec"]
    assert "tls" not in plain


def test_load_balancer_bridge(tools: Tools, env_dir: Path) -> None:
    docs = render(
        tools,
        env_file(env_dir, "10000", BRIDGE_SERVICE_TYPE="LoadBalancer", EXPOSE_MQ_HTTP_PORT="443"),
    )
    service = by_kind(docs, "Service")["federation-bridge"]
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["ports"][0]["port"] == 443


def test_no_privileged_pods(party_a: list[Manifest]) -> None:
    for name, pod in pod_specs(party_a).items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), name
        assert all("hostPath" not in v for v in pod.get("volumes", [])), name
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
        token = pod.get("automountServiceAccountToken")
        assert token is False or name == "Deployment/task-engine", name


def test_every_deployment_has_probes_and_limits(party_a: list[Manifest]) -> None:
    deployments = by_kind(party_a, "Deployment")
    assert set(deployments) == APPS
    for name, d in deployments.items():
        for c in d["spec"]["template"]["spec"]["containers"]:
            assert c["readinessProbe"] and c["livenessProbe"], (name, c["name"])
            assert {"cpu", "memory"} <= set(c["resources"]["limits"]), (name, c["name"])
            if c["name"] != "tls-proxy":
                assert c["securityContext"]["readOnlyRootFilesystem"] is True
    probe = deployments["flow-server"]["spec"]["template"]["spec"]["containers"][0]
    assert probe["readinessProbe"]["httpGet"]["path"] == "/flow-server/health"
    for name in ("dashboard", "task-engine"):
        c = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        assert c["livenessProbe"]["httpGet"]["path"] == "/health"


def test_bundled_kafka_and_postgres(party_a: list[Manifest]) -> None:
    sets = by_kind(party_a, "StatefulSet")
    assert set(sets) == {"kafka", "postgres"}
    kafka = sets["kafka"]["spec"]
    assert kafka["template"]["spec"]["containers"][0]["image"].startswith("apache/kafka:")
    env = {e["name"]: e.get("value") for e in kafka["template"]["spec"]["containers"][0]["env"]}
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert len(env["CLUSTER_ID"]) == 22
    assert kafka["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    party_env = by_kind(party_a, "ConfigMap")["party-env"]["data"]["party.env"]
    assert "KAFKA_BOOTSTRAP=kafka:9092" in party_env
    assert "PARTY_MQ_HTTP_URL_20000=https://bridge.party-b.tessera.example:30371" in party_env


def test_disabled_components_are_not_installed(tools: Tools, env_dir: Path) -> None:
    docs = render(
        tools,
        env_file(
            env_dir,
            "10000",
            DISABLED_COMPONENTS="dashboard,kafka,postgres,ingress",
            INTERNAL_MQ_HOST="kafka.shared.svc",
            INTERNAL_MQ_TCP_PORT="9094",
            DATABASE_URL="postgresql+psycopg://t:p@db.example:5432/tessera",
        ),
    )
    names = {f"{d['kind']}/{d['metadata']['name']}" for d in docs}
    assert (
        not {
            "Deployment/dashboard",
            "Service/dashboard",
            "StatefulSet/kafka",
            "StatefulSet/postgres",
            "Ingress/tessera",
        }
        & names
    )
    assert {
        "Deployment/flow-server",
        "Deployment/task-engine",
        "Deployment/federation-bridge",
    } <= names
    party_env = by_kind(docs, "ConfigMap")["party-env"]["data"]["party.env"]
    assert "KAFKA_BOOTSTRAP=kafka.shared.svc:9094" in party_env
    secret = by_kind(docs, "Secret")["party-secrets"]["stringData"]
    assert secret["database-url"] == "postgresql+psycopg://t:p@db.example:5432/tessera"
    assert "postgres-password" not in secret


def test_disabling_the_bridge_drops_its_exposure(tools: Tools, env_dir: Path) -> None:
    docs = render(tools, env_file(env_dir, "10000", DISABLED_COMPONENTS="federation-bridge"))
    names = {f"{d['kind']}/{d['metadata']['name']}" for d in docs}
    assert not {n for n in names if "bridge" in n}


def test_network_policies(party_a: list[Manifest]) -> None:
    policies = by_kind(party_a, "NetworkPolicy")
    deny = policies["default-deny-ingress"]["spec"]
    assert (
        deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    )
    # From outside the namespace: anyone to the bridge's TLS port, the ingress controller to
    # the web ports, nothing else.
    external = {
        n: p
        for n, p in policies.items()
        if any(
            not r.get("from") or any("namespaceSelector" in f or "ipBlock" in f for f in r["from"])
            for r in p["spec"].get("ingress", [])
        )
    }
    assert set(external) == {"bridge-from-peers", "web-from-ingress-controller"}
    bridge = policies["bridge-from-peers"]["spec"]
    assert bridge["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "federation-bridge"
    assert bridge["ingress"] == [{"ports": [{"port": 9443, "protocol": "TCP"}]}]
    web = policies["web-from-ingress-controller"]["spec"]
    assert {p["port"] for p in web["ingress"][0]["ports"]} == {8080, 9380}
    steps = policies["steps-isolated"]["spec"]
    assert steps["policyTypes"] == ["Ingress", "Egress"] and "egress" not in steps


def test_task_engine_rbac_is_namespaced_and_minimal(party_a: list[Manifest]) -> None:
    role = by_kind(party_a, "Role")["task-engine-steps"]
    rules = {
        (g, r): set(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert rules == {
        ("batch", "jobs"): {"create", "list", "watch", "delete"},
        ("", "pods"): {"list"},
        ("", "pods/log"): {"get"},
    }
    binding = by_kind(party_a, "RoleBinding")["task-engine-steps"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "task-engine", "namespace": "tessera-10000"}
    ]
    pod = pod_specs(party_a)["Deployment/task-engine"]
    assert pod["serviceAccountName"] == "task-engine"


def test_schemas_are_strict(tools: Tools, party_a: list[Manifest], tmp_path: Path) -> None:
    """A misspelt field fails validation (the offline schemas forbid unknown properties)."""
    deployment = dict(by_kind(party_a, "Deployment")["dashboard"])
    deployment["spec"] = {**deployment["spec"], "replica": 2}
    with pytest.raises(AssertionError, match="additional properties 'replica' not allowed"):
        kubeconform(tools, [deployment], tmp_path)


def test_state_volume_users_share_a_node(party_a: list[Manifest]) -> None:
    pods = pod_specs(party_a)
    claims = {
        name
        for name, pod in pods.items()
        for v in pod.get("volumes", [])
        if v.get("persistentVolumeClaim", {}).get("claimName") == "party-state"
    }
    assert claims == {"Deployment/flow-server", "Deployment/task-engine"}
    term = pods["Deployment/flow-server"]["affinity"]["podAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ][0]
    assert term["labelSelector"]["matchLabels"] == {"app.kubernetes.io/name": "task-engine"}
    env = {
        e["name"]: e.get("value") for e in pods["Deployment/task-engine"]["containers"][0]["env"]
    }
    assert env["STEP_RUNTIME"] == "kubernetes" and env["STEP_CLAIM"] == "party-state"


def test_peer_ca_is_mounted_and_named(party_a: list[Manifest]) -> None:
    party_env = by_kind(party_a, "ConfigMap")["party-env"]["data"]["party.env"]
    assert "PARTY_MQ_CA_20000=/etc/tessera/keys/ca-20000.pem" in party_env
    keys = by_kind(party_a, "Secret")["party-keys"]["stringData"]
    assert keys["ca-20000.pem"].startswith("-----BEGIN CERTIFICATE-----")
    assert set(keys) == {"private.pem", "public-10000.pem", "public-20000.pem", "ca-20000.pem"}


def _party_env(docs: list[Manifest]) -> dict[str, str]:
    text = by_kind(docs, "ConfigMap")["party-env"]["data"]["party.env"]
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_deadlines_and_heartbeats_default_to_the_services_defaults(
    party_a: list[Manifest],
) -> None:
    env = _party_env(party_a)
    assert env["ACCEPT_TIMEOUT_S"] == "60" and env["TASK_TIMEOUT_S"] == "3600"
    assert env["HEARTBEAT_INTERVAL_S"] == "5"
    assert "HEARTBEAT_TIMEOUT_S" not in env, "unset: the flow_server waits three intervals"
    assert env["PLATFORM_RETRIES"] == "2"


def test_the_partys_floors_and_images_reach_every_service(party_a: list[Manifest]) -> None:
    env = _party_env(party_a)
    assert (env["FLOOR_MIN_KEY_BITS"], env["FLOOR_MIN_BATCH_ROWS"], env["FLOOR_MAX_BINS"]) == (
        "2048",
        "64",
        "64",
    )
    settings = PartySettings.from_env(environ=env)
    assert settings.step_images == ("tessera/runtime:0.1.0",), "RUNTIME_IMAGE, and no other"
    assert settings.floors.min_key_bits == 2048


def test_deadlines_and_heartbeats_from_the_env_file(tools: Tools, env_dir: Path) -> None:
    docs = render(
        tools,
        env_file(
            env_dir,
            "10000",
            ACCEPT_TIMEOUT_S="300",
            TASK_TIMEOUT_S="1000000",
            HEARTBEAT_INTERVAL_S="0.5",
            HEARTBEAT_TIMEOUT_S="20",
            PLATFORM_RETRIES="0",
        ),
    )
    env = _party_env(docs)
    assert (
        env["ACCEPT_TIMEOUT_S"],
        env["TASK_TIMEOUT_S"],
        env["HEARTBEAT_INTERVAL_S"],
        env["HEARTBEAT_TIMEOUT_S"],
        env["PLATFORM_RETRIES"],
    ) == ("300", "1000000", "0.5", "20", "0")


def _helm_template(tools: Tools, env_dir: Path, *sets: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tools.helm), "template", "t", str(CHART), *_party_flags(env_dir, *sets)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (
            ("timing.taskTimeoutS=soon",),
            'timing.taskTimeoutS must be a number of seconds, got "soon"',
        ),
        (("timing.acceptTimeoutS=0",), "timing.acceptTimeoutS must be more than 0 seconds"),
        (
            ("timing.heartbeatIntervalS=10", "timing.heartbeatTimeoutS=10"),
            "timing.heartbeatTimeoutS (10) must exceed timing.heartbeatIntervalS (10)",
        ),
        (
            ("platformRetries=-1",),
            'platformRetries must be a whole number of retries (0 or more), got "-1"',
        ),
        (
            ("extraEnv.PLATFORM_RETRIES=5",),
            "extraEnv.PLATFORM_RETRIES: the chart sets PLATFORM_RETRIES from platformRetries",
        ),
        (
            ("extraEnv.HEARTBEAT_TIMEOUT_S=9",),
            "extraEnv.HEARTBEAT_TIMEOUT_S: the chart sets HEARTBEAT_TIMEOUT_S from "
            "timing.heartbeatTimeoutS",
        ),
    ],
)
def test_bad_timing_values_are_refused_by_the_chart(
    tools: Tools, env_dir: Path, sets: tuple[str, ...], expected: str
) -> None:
    result = _helm_template(tools, env_dir, *sets)
    assert result.returncode != 0 and expected in result.stderr, result.stderr


def test_step_jobs_are_owned_by_the_task_engine_pod(party_a: list[Manifest]) -> None:
    """The worker names its pod as the owner of its step Jobs (garbage-collected with it)."""
    (container,) = pod_specs(party_a)["Deployment/task-engine"]["containers"]
    fields = {
        e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
        for e in container["env"]
        if "fieldRef" in e.get("valueFrom", {})
    }
    assert fields["STEP_POD_NAME"] == "metadata.name"
    assert fields["STEP_POD_UID"] == "metadata.uid"


def test_services_log_json_on_kubernetes_unless_told_otherwise(
    party_a: list[Manifest], tools: Tools, env_dir: Path
) -> None:
    assert _party_env(party_a)["LOG_FORMAT"] == "json"
    rendered = _helm_template(tools, env_dir, "logFormat=text")
    assert rendered.returncode == 0, rendered.stderr
    assert "    LOG_FORMAT=text\n" in rendered.stdout


def test_the_acceptance_policy_comes_from_the_values(
    party_a: list[Manifest], tools: Tools, env_dir: Path
) -> None:
    env = _party_env(party_a)
    assert (env["ACCEPT_POLICY"], env["ACCEPT_MANUAL_PEERS"]) == ("auto", "")
    rendered = _helm_template(
        tools,
        env_dir,
        "acceptance.policy=manual",
        "acceptance.manualPeers={20000}",
        "acceptance.components={intersect,hetero_lr}",
    )
    assert rendered.returncode == 0, rendered.stderr
    for line in ("ACCEPT_POLICY=manual", "ACCEPT_MANUAL_PEERS=20000"):
        assert f"    {line}\n" in rendered.stdout
    assert "    ACCEPT_COMPONENTS=intersect,hetero_lr\n" in rendered.stdout
    refused = _helm_template(tools, env_dir, "acceptance.policy=sometimes")
    assert refused.returncode != 0
    assert 'acceptance.policy must be auto or manual, got "sometimes"' in refused.stderr


def _container_env(docs: list[Manifest], deployment: str) -> dict[str, Any]:
    (container,) = by_kind(docs, "Deployment")[deployment]["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_the_published_dashboard_requires_the_partys_api_tokens(
    party_a: list[Manifest], tools: Tools, env_dir: Path
) -> None:
    """It listens off loopback, where it requires a token (a login page or a bearer token), and
    reads the tokens from the flow_server's database; the ingress publishes nothing else of it."""
    env = _container_env(party_a, "dashboard")
    assert not is_loopback(env["BIND_HOST"]), "off loopback the dashboard requires a token"
    assert env["DATABASE_URL"] == _container_env(party_a, "flow-server")["DATABASE_URL"]
    assert env["DATABASE_URL"]["secretKeyRef"] == {"name": "party-secrets", "key": "database-url"}
    assert _party_env(party_a)["DATA_ROOTS"] == "/var/lib/tessera"

    hidden = [
        d
        for d in yaml.safe_load_all(
            _helm_template(tools, env_dir, "dashboard.publish=false").stdout
        )
        if d
    ]
    (ingress,) = [d for d in hidden if d["kind"] == "Ingress"]
    paths = {p["path"] for p in ingress["spec"]["rules"][0]["http"]["paths"]}
    assert paths == {"/flow-server"}


def _secret(docs: list[Manifest]) -> dict[str, str]:
    data: dict[str, str] = by_kind(docs, "Secret")["party-secrets"]["stringData"]
    return data


def test_the_dashboard_keeps_its_tables_in_the_partys_postgresql(
    party_a: list[Manifest], tools: Tools, env_dir: Path
) -> None:
    """Its job views, metrics and log tails live in PostgreSQL (it has no state volume): by
    default the party's database, beside the flow_server's tables; ``dashboard.databaseUrl``
    gives it one of its own."""
    env = _container_env(party_a, "dashboard")
    ref = {"name": "party-secrets", "key": "dashboard-database-url"}
    assert env["DASHBOARD_DATABASE_URL"]["secretKeyRef"] == ref
    assert "DASHBOARD_DATABASE_URL" not in _container_env(party_a, "flow-server")
    secret = _secret(party_a)
    assert secret["dashboard-database-url"] == secret["database-url"]
    assert secret["database-url"].startswith("postgresql+psycopg://tessera:")
    assert "state" not in {
        m["name"]
        for m in by_kind(party_a, "Deployment")["dashboard"]["spec"]["template"]["spec"][
            "containers"
        ][0]["volumeMounts"]
    }

    own = "postgresql+psycopg://d:p@dash.example:5432/dashboard"
    rendered = _helm_template(tools, env_dir, f"dashboard.databaseUrl={own}")
    assert rendered.returncode == 0, rendered.stderr
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    assert _secret(docs)["dashboard-database-url"] == own
    assert _secret(docs)["database-url"] != own

    external = render(
        tools,
        env_file(
            env_dir,
            "10000",
            DISABLED_COMPONENTS="postgres",
            DATABASE_URL="postgresql+psycopg://t:p@db.example:5432/tessera",
        ),
    )
    secret = _secret(external)
    assert secret["dashboard-database-url"] == secret["database-url"]
    assert secret["database-url"] == "postgresql+psycopg://t:p@db.example:5432/tessera"
