"""The real Kafka brokers the fixtures start, and free ports for them and for services.

A plain module (not conftest) so test modules can import it unambiguously.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Broker:
    port: int
    data_dir: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"
