"""deploy/compose: no Docker Compose here, so a structural check of the two-party file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from deploy_helpers import ROOT

from fedcore.settings import PartySettings

COMPOSE = ROOT / "deploy" / "compose"


def load() -> dict[str, Any]:
    return yaml.safe_load((COMPOSE / "compose.yaml").read_text())


def test_two_parties_each_complete_and_separate() -> None:
    services = load()["services"]
    for party, peer in (("10000", "20000"), ("20000", "10000")):
        for name in ("kafka", "keygen", "flow-server", "task-engine", "bridge", "dashboard"):
            assert f"{name}-{party}" in services
        for name, svc in services.items():
            if name.endswith(party) and not name.startswith("keygen"):
                nets = set(svc["networks"])
                assert f"party-{peer}" not in nets, f"{name} reaches the other party's network"
                assert "federation" not in nets or name.startswith("bridge"), name
            for dep in svc.get("depends_on", {}):
                assert dep in services, (name, dep)
            env_file = svc.get("env_file")
            if env_file:
                assert (COMPOSE / env_file).exists()


def test_env_files_are_valid_party_settings() -> None:
    for party in ("10000", "20000"):
        settings = PartySettings.from_env(COMPOSE / f"party-{party}.env", environ={})
        assert settings.party_id == party
        assert settings.kafka_bootstrap == f"kafka-{party}:9092"
        (peer,) = settings.peers.values()
        assert peer.startswith("http://bridge-")


def test_published_ports_are_loopback_and_distinct() -> None:
    ports = [p for svc in load()["services"].values() for p in svc.get("ports", [])]
    assert all(p.startswith("127.0.0.1:") for p in ports)
    assert len({p.rsplit(":", 1)[0] for p in ports}) == len(ports)


def test_volumes_and_networks_are_declared() -> None:
    doc = load()
    for svc in doc["services"].values():
        for vol in svc.get("volumes", []):
            assert vol.split(":")[0] in doc["volumes"]
        for net in svc.get("networks", []):
            assert net in doc["networks"]
    assert Path(COMPOSE / "compose.yaml").read_text().count("STEP_RUNTIME") >= 1
