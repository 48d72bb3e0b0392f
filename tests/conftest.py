"""Session fixtures: two real Apache Kafka brokers (one per party), started once per session."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from brokers import Broker, free_port

ROOT = Path(__file__).resolve().parents[1]
KAFKA_SH = ROOT / "deploy" / "kafka" / "kafka.sh"
SHARED_DATA = ROOT.parent / "shared" / "data"


def _start_broker(data_dir: Path) -> Broker:
    port, ctrl = free_port(), free_port()
    subprocess.run([str(KAFKA_SH), "start", str(port), str(data_dir), str(ctrl)], check=True)
    return Broker(port, data_dir)


@pytest.fixture(scope="session")
def kafka_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, Broker]]:
    """Two brokers, one per party: (party 10000's, party 20000's)."""
    root = tmp_path_factory.mktemp("kafka")
    brokers: list[Broker] = []
    try:
        for name in ("10000", "20000"):
            brokers.append(_start_broker(root / name))
        yield brokers[0], brokers[1]
    finally:
        for broker in brokers:
            subprocess.run([str(KAFKA_SH), "stop", str(broker.data_dir)], check=False)


@pytest.fixture(scope="session")
def kafka(kafka_pair: tuple[Broker, Broker]) -> Broker:
    """One real broker, for tests of a single party's services."""
    return kafka_pair[0]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared FL datasets are not at {SHARED_DATA}")
    return SHARED_DATA
