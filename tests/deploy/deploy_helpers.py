"""What the deploy tests share: the tools built by deploy/tools/install.sh, party env files with
real keys, rendering through deploy.sh --dry-run, and kubeconform against the offline schemas."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_SH = ROOT / "deploy" / "deploy.sh"
CHART = ROOT / "deploy" / "helm" / "tessera"
ENV_DIR = ROOT / "deploy" / "env"
INSTALL = "deploy/tools/install.sh"

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Tools:
    helm: Path
    kubeconform: Path
    schemas: Path


def find_tools() -> Tools:
    """The deploy tools, or a test failure that says how to install them (never a skip)."""
    install = (ROOT / INSTALL).read_text()
    version = re.search(r'K8S_VERSION="\$\{K8S_VERSION:-(v[0-9.]+)\}"', install)
    assert version, f"{INSTALL} no longer pins K8S_VERSION"
    tools = Tools(
        helm=ROOT / ".cache" / "bin" / "helm",
        kubeconform=ROOT / ".cache" / "bin" / "kubeconform",
        schemas=ROOT / ".cache" / "k8s-schemas" / version[1],
    )
    missing = [str(p) for p in (tools.helm, tools.kubeconform) if not os.access(p, os.X_OK)]
    if not (tools.schemas / ".complete").exists():
        missing.append(str(tools.schemas))
    if missing:
        pytest.fail(
            f"deploy tools missing ({', '.join(missing)}): run `{INSTALL}` "
            "(or `make deploy-tools`) first",
            pytrace=False,
        )
    return tools


def write_party_keys(env_dir: Path, party: str) -> None:
    """What `deploy.sh keygen` writes, made with cryptography (no openssl needed)."""
    keys = env_dir / "keys" / party
    keys.mkdir(parents=True, exist_ok=True)
    sk = ed25519.Ed25519PrivateKey.generate()
    (keys / "private.pem").write_bytes(
        sk.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (keys / "public.pem").write_bytes(
        sk.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    tls = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"party-{party}")])
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(tls.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(tls, hashes.SHA256())
    )
    (keys / "bridge-tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (keys / "bridge-tls.key").write_bytes(
        tls.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def env_file(env_dir: Path, party: str, **overrides: str) -> Path:
    """A copy of the example env file tessera-<party>.sh in env_dir, with variables replaced."""
    text = (ENV_DIR / f"tessera-{party}.sh").read_text()
    for key, value in overrides.items():
        text, n = re.subn(rf"^{key}=.*$", f"{key}={value}", text, flags=re.M)
        if not n:
            text += f"\n{key}={value}\n"
    path = env_dir / f"tessera-{party}-{abs(hash(tuple(overrides.items())))}.sh"
    path.write_text(text)
    return path


def run_deploy(
    tools: Tools, *args: str | Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HELM": str(tools.helm)}
    return subprocess.run(
        [str(DEPLOY_SH), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=60,
        check=False,
    )


def render_text(tools: Tools, path: Path) -> str:
    """What `deploy.sh --dry-run setup path` prints."""
    result = run_deploy(tools, "--dry-run", "setup", path)
    assert result.returncode == 0, result.stderr
    return result.stdout


def render(tools: Tools, path: Path) -> list[Manifest]:
    """The manifests of `deploy.sh --dry-run setup path`, parsed."""
    return [doc for doc in yaml.safe_load_all(render_text(tools, path)) if doc]


def kubeconform(tools: Tools, docs: Iterable[Manifest | str], work: Path) -> None:
    """Validate strictly against the offline schemas; fail with kubeconform's report. A str is
    rendered YAML as it is (so duplicate keys, which PyYAML would let through, are caught)."""
    work.mkdir(parents=True, exist_ok=True)
    files = []
    for i, doc in enumerate(docs):
        if isinstance(doc, str):
            f = work / f"{i:03d}.yaml"
            f.write_text(doc)
        else:
            f = work / f"{i:03d}-{doc['kind']}.json"
            f.write_text(json.dumps(doc))
        files.append(str(f))
    assert files, "nothing to validate"
    location = str(tools.schemas) + "/{{ .ResourceKind }}{{ .KindSuffix }}.json"
    result = subprocess.run(
        [
            str(tools.kubeconform),
            "-strict",
            "-summary",
            "-output",
            "text",
            "-schema-location",
            location,
            *files,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Invalid: 0, Errors: 0, Skipped: 0" in result.stdout, result.stdout


def by_kind(docs: Iterable[Manifest], kind: str) -> dict[str, Manifest]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_specs(docs: Iterable[Manifest]) -> dict[str, Mapping[str, Any]]:
    """Every pod template of the manifests, by '<Kind>/<name>'."""
    return {
        f"{d['kind']}/{d['metadata']['name']}": d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet", "Job")
    }


def has_openssl() -> bool:
    return shutil.which("openssl") is not None
