"""deploy/deploy.sh: validation before anything is applied, --dry-run, cleanup's confirmation."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from deploy_helpers import DEPLOY_SH, ENV_DIR, Tools, env_file, has_openssl, run_deploy


def errors_of(tools: Tools, path: Path, command: str = "setup") -> str:
    result = run_deploy(tools, "--dry-run", command, path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == "", "nothing may be rendered or applied"
    assert "nothing was applied" in result.stderr
    return result.stderr


def test_a_party_without_a_web_certificate_is_warned_loudly(tools: Tools, env_dir: Path) -> None:
    plain = run_deploy(tools, "--dry-run", "setup", env_file(env_dir, "20000"))
    assert plain.returncode == 0 and "WARNING" in plain.stderr and "PLAIN HTTP" in plain.stderr
    named = env_file(env_dir, "20000", INGRESS_TLS_SECRET="party-b-tls")
    assert "WARNING" not in run_deploy(tools, "--dry-run", "setup", named).stderr
    both = env_file(
        env_dir, "20000", INGRESS_TLS_SECRET="party-b-tls", INGRESS_TLS_CERT="keys/x.crt"
    )
    assert "both name the web certificate" in errors_of(tools, both)


def test_dry_run_prints_the_manifests(tools: Tools, env_dir: Path) -> None:
    result = run_deploy(tools, "--dry-run", "setup", env_file(env_dir, "20000"))
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert {d["kind"] for d in docs} >= {"Deployment", "StatefulSet", "Ingress", "NetworkPolicy"}
    assert "# Source: tessera/templates/" in result.stdout


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"PARTY_ID": ""}, "PARTY_ID is not set"),
        ({"PARTY_ID": "party-a"}, "PARTY_ID='party-a' is malformed"),
        ({"DOMAIN": "Party_A"}, "DOMAIN='Party_A' is malformed"),
        ({"OTHER_PARTIES": "20000,x"}, "OTHER_PARTIES names 'x'"),
        ({"PARTY_MQ_HTTP_URL_20000": ""}, "PARTY_MQ_HTTP_URL_20000 is not set"),
        ({"PARTY_MQ_HTTP_URL_20000": "http://b:1"}, "PARTY_MQ_HTTP_URL_20000='http://b:1' is"),
        ({"EXPOSE_MQ_HTTP_PORT": "9370"}, "a NodePort bridge needs 30000-32767"),
        ({"BRIDGE_SERVICE_TYPE": "ClusterIP"}, "BRIDGE_SERVICE_TYPE='ClusterIP' is malformed"),
        ({"INTERNAL_MQ_TCP_PORT": "70000"}, "INTERNAL_MQ_TCP_PORT='70000' is malformed"),
        ({"DISABLED_COMPONENTS": "kafka,spark"}, "DISABLED_COMPONENTS names 'spark'"),
        ({"DISABLED_COMPONENTS": "postgres"}, "DATABASE_URL is not set"),
        ({"DISABLED_COMPONENTS": "kafka", "INTERNAL_MQ_HOST": ""}, "INTERNAL_MQ_HOST is not set"),
        ({"PARTY_PRIVATE_KEY": "keys/none.pem"}, "PARTY_PRIVATE_KEY: cannot read"),
        ({"PARTY_PUBLIC_KEY_20000": "keys/10000/private.pem"}, "is not a PEM PUBLIC KEY"),
        ({"BRIDGE_TLS_CERT": ""}, "BRIDGE_TLS_CERT is not set"),
        ({"SERVICE_IMAGE": "tessera/service"}, "SERVICE_IMAGE='tessera/service' is malformed"),
        ({"TESSERA_API_TOKEN": "short"}, "TESSERA_API_TOKEN is malformed"),
        ({"PARTY_MQ_CA_20000": "keys/20000/public.pem"}, "is not a PEM CERTIFICATE"),
        ({"TASK_TIMEOUT_S": "1h"}, "TASK_TIMEOUT_S='1h' is malformed: expected a number of"),
        ({"ACCEPT_TIMEOUT_S": "0"}, "ACCEPT_TIMEOUT_S='0' is malformed"),
        ({"HEARTBEAT_INTERVAL_S": "-1"}, "HEARTBEAT_INTERVAL_S='-1' is malformed"),
        ({"HEARTBEAT_TIMEOUT_S": "4"}, "HEARTBEAT_TIMEOUT_S=4 must exceed HEARTBEAT_INTERVAL_S=5"),
        ({"PLATFORM_RETRIES": "two"}, "PLATFORM_RETRIES='two' is malformed: expected a whole"),
        (
            {"HEARTBEAT_INTERVAL_S": "0.5", "HEARTBEAT_TIMEOUT_S": "0.5"},
            "HEARTBEAT_TIMEOUT_S=0.5 must exceed HEARTBEAT_INTERVAL_S=0.5",
        ),
    ],
)
def test_each_bad_variable_is_named(
    tools: Tools, env_dir: Path, overrides: dict[str, str], expected: str
) -> None:
    assert expected in errors_of(tools, env_file(env_dir, "10000", **overrides))


def test_all_problems_are_reported_at_once(tools: Tools, env_dir: Path) -> None:
    stderr = errors_of(tools, env_file(env_dir, "10000", PARTY_ID="", DOMAIN="", SERVICE_IMAGE=""))
    assert "has 3 problem(s)" in stderr


def test_template_itself_is_rejected_until_filled_in(tools: Tools) -> None:
    stderr = errors_of(tools, ENV_DIR / "_party_env.sh")
    assert "PARTY_ID is not set" in stderr and "DOMAIN is not set" in stderr


def test_usage_errors(tools: Tools, env_dir: Path) -> None:
    assert run_deploy(tools, "install", env_file(env_dir, "10000")).returncode == 2
    missing = run_deploy(tools, "setup", env_dir / "nope.sh")
    assert missing.returncode == 2 and "cannot read env file" in missing.stderr


def test_cleanup_needs_confirmation(tools: Tools, env_dir: Path) -> None:
    path = env_file(env_dir, "10000")
    refused = run_deploy(tools, "cleanup", path, stdin="")
    assert refused.returncode == 2 and "pass --yes" in refused.stderr
    planned = run_deploy(tools, "--dry-run", "cleanup", path)
    assert planned.returncode == 0
    assert "helm uninstall tessera-10000 -n tessera-10000" in planned.stdout


def test_missing_helm_is_a_clear_error(tools: Tools, env_dir: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "grep", "sed", "tr", "mktemp", "rm", "cat"):
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    chart_copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY_SH.parent, chart_copy, ignore=shutil.ignore_patterns("env"))
    result = subprocess.run(
        [str(chart_copy / "deploy.sh"), "--dry-run", "setup", str(env_file(env_dir, "10000"))],
        capture_output=True,
        text=True,
        env={"PATH": str(bin_dir)},
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "helm not found: run deploy/tools/install.sh" in result.stderr


def test_keygen_writes_what_validation_needs(tools: Tools, tmp_path: Path) -> None:
    if not has_openssl():
        pytest.skip("keygen uses openssl, which is not installed")  # reported, not silent
    path = env_file(tmp_path, "10000", OTHER_PARTIES="")
    assert run_deploy(tools, "keygen", path).returncode == 0
    result = run_deploy(tools, "--dry-run", "setup", path)
    assert result.returncode == 0, result.stderr
    again = run_deploy(tools, "keygen", path)  # keeps what exists
    assert again.returncode == 0 and "wrote" not in again.stderr


def fake_cluster_tools(tmp_path: Path) -> tuple[Path, Path]:
    """helm and kubectl stand-ins that log their arguments (no cluster here)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for tool in ("helm", "kubectl"):
        script = bin_dir / tool
        script.write_text(f'#!/usr/bin/env bash\necho "{tool} $*" >> "{log}"\n')
        script.chmod(0o755)
    return bin_dir, log


def test_setup_installs_waits_and_diagnoses_each_peer(
    tools: Tools, env_dir: Path, tmp_path: Path
) -> None:
    bin_dir, log = fake_cluster_tools(tmp_path)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HELM": str(bin_dir / "helm")}
    result = subprocess.run(
        [str(DEPLOY_SH), "setup", str(env_file(env_dir, "10000"))],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    install = next(c for c in calls if c.startswith("helm upgrade --install tessera-10000 "))
    assert "-n tessera-10000 --create-namespace" in install and "--wait" in install
    assert any(
        c.startswith("kubectl -n tessera-10000 wait --for=condition=Ready pod") for c in calls
    )
    assert (
        "kubectl -n tessera-10000 exec deploy/flow-server -- tessera diagnose 20000"
        in "\n".join(calls)
    )
    assert calls.index(install) < len(calls) - 1, "diagnose runs after the install"


def test_upgrade_refuses_a_party_that_is_not_installed(
    tools: Tools, env_dir: Path, tmp_path: Path
) -> None:
    bin_dir, _ = fake_cluster_tools(tmp_path)
    (bin_dir / "helm").write_text("#!/usr/bin/env bash\nexit 1\n")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HELM": str(bin_dir / "helm")}
    result = subprocess.run(
        [str(DEPLOY_SH), "upgrade", str(env_file(env_dir, "10000"))],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1 and "is not installed" in result.stderr
