"""Bridges as real processes for the tests: start from an env file, stop, SIGKILL; topic tails;
self-signed TLS material. A plain module (not conftest) so test modules import it explicitly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self

import httpx
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from fedcore.envelope import Envelope

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
A, B = "10000", "20000"
_SCRUB = (
    "PARTY_",
    "OTHER_PARTIES",
    "INTERNAL_MQ_",
    "EXPOSE_MQ_",
    "STATE_DIR",
    "BRIDGE_",
    "KAFKA_BOOTSTRAP",
    "TESSERA_ENV_FILE",
    "BIND_HOST",
)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(root: Path, *parties: str) -> Path:
    for party in parties:
        subprocess.run(
            [PYTHON, "-m", "federation_bridge", "keygen", "--out", str(root / party)],
            check=True,
            cwd=ROOT,
            capture_output=True,
        )
    return root


class BridgeProcess:
    """One party's bridge, started with an env file like production, stopped with SIGTERM."""

    def __init__(
        self,
        root: Path,
        party: str,
        bootstrap: str,
        port: int,
        peers: dict[str, int],
        keys: Path,
        extra: dict[str, str] | None = None,
        *,
        scheme: str = "http",
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.party, self.port = party, port
        self.url = f"{scheme}://127.0.0.1:{port}"
        self.internal_port = free_port()
        # /health and /metrics: plain HTTP on the internal port, whatever the peers' port speaks
        self.internal_url = f"http://127.0.0.1:{self.internal_port}"
        self.verify = verify
        self.log = root / f"bridge-{party}.log"
        host, kafka_port = bootstrap.split(":")
        lines = {
            "PARTY_ID": party,
            "INTERNAL_MQ_HOST": host,
            "INTERNAL_MQ_TCP_PORT": kafka_port,
            "EXPOSE_MQ_HTTP_PORT": str(port),
            "BRIDGE_INTERNAL_PORT": str(self.internal_port),
            "OTHER_PARTIES": ",".join(peers),
            "STATE_DIR": str(root / f"state-{party}"),
            "PARTY_PRIVATE_KEY": str(keys / party / "private.pem"),
            "BRIDGE_RETRY_INITIAL_S": "0.1",
            "BRIDGE_RETRY_MAX_S": "0.5",
            "BRIDGE_SHUTDOWN_GRACE_S": "1",
        }
        for peer, peer_port in peers.items():
            lines[f"PARTY_MQ_HTTP_URL_{peer}"] = f"{scheme}://127.0.0.1:{peer_port}"
            lines[f"PARTY_PUBLIC_KEY_{peer}"] = str(keys / peer / "public.pem")
        lines.update(extra or {})
        self.env_file = root / f"party-{party}.env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "federation_bridge", "--env-file", str(self.env_file)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 90  # a loaded machine starts Kafka clients slowly
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"bridge {self.party} exited:\n{self.tail()}"
            try:
                resp = httpx.get(f"{self.internal_url}/health", timeout=1)
                if resp.status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"bridge {self.party} did not come up:\n{self.tail()}")

    def stop(self) -> bool:
        """SIGTERM; whether it shut down cleanly (uvicorn re-raises the signal once it has)."""
        if self.proc is None:
            return True
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20) in (0, -signal.SIGTERM)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self.proc = None

    def kill(self) -> None:
        """SIGKILL: no shutdown path runs, nothing is committed or flushed."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None

    async def health(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=5) as client:
            resp = await client.get(f"{self.internal_url}/health")
        assert resp.status_code == 200, resp.text
        data: dict[str, Any] = resp.json()
        return data

    async def metrics(self) -> dict[str, float]:
        """The /metrics samples as ``name{labels}`` -> value."""
        async with httpx.AsyncClient(timeout=5) as client:
            resp = await client.get(f"{self.internal_url}/metrics")
        assert resp.status_code == 200, resp.text
        out: dict[str, float] = {}
        for line in resp.text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@contextlib.contextmanager
def stopped_after(*bridges: BridgeProcess) -> Iterator[None]:
    """Stop every bridge on leaving; then, unless the block failed, require clean stops."""
    try:
        yield
    finally:
        clean = [bridge.stop() for bridge in bridges]
    assert all(clean), "unclean stop:\n" + "\n".join(bridge.tail() for bridge in bridges)


class Tail:
    """Records appended to some topics of one broker after the tail was opened."""

    def __init__(self, bootstrap: str, *names: str) -> None:
        self._bootstrap, self._names = bootstrap, list(names)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )

    async def __aenter__(self) -> Self:
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics(self._names)
        finally:
            await admin.close()
        tps = [
            TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]
        ]
        await self._consumer.start()
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:
            await self._consumer.position(tp)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def collect(
        self,
        match: Callable[[ConsumerRecord], bool],
        *,
        count: int,
        settle_s: float = 1.5,
        timeout_s: float = 30,
    ) -> list[ConsumerRecord]:
        """Matching records: once ``count`` arrived, wait ``settle_s`` more to catch duplicates."""
        found: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout_s
        settle_until: float | None = None
        while True:
            for records in (await self._consumer.getmany(timeout_ms=200)).values():
                found.extend(r for r in records if match(r))
            now = time.monotonic()
            if len(found) >= count and settle_until is None:
                settle_until = now + settle_s
            if (settle_until is not None and now >= settle_until) or now >= deadline:
                return found


def has_id(env_id: str) -> Callable[[ConsumerRecord], bool]:
    return lambda r: ("id", env_id.encode()) in (r.headers or ())


def id_in(ids: set[bytes]) -> Callable[[ConsumerRecord], bool]:
    return lambda r: dict(r.headers or ()).get("id") in ids


def fed(src: str, dst: str, **body: Any) -> Envelope:
    return Envelope(
        type="fed",
        job_id=uuid.uuid4().hex,
        task="train",
        src=src,
        dst=dst,
        body={"tag": "t", "attempt": 0, **body},
    )
