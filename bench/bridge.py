"""Bridge benchmark: two parties on loopback, each with its own Kafka broker and bridge process.

End to end, as a job sees it: a producer on party A's ``fl.out.fed`` and a consumer on party B's
``fl.in.fed``, through both bridges (signed batches over HTTP, verified, de-duplicated, produced).

- ``throughput``: envelopes with 1 MiB payloads (each is two chunk records on the wire) written as
  fast as the producer takes them; MB/s of payload from the first write to the last arrival.
- ``latency``: small envelopes written one every few milliseconds; p50/p99 of write -> arrival.

Prints one JSON object. Run as ``python -m bench bridge`` (or ``python -m bench.bridge``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.common import Options, emit, peak_rss_mb
from fedcore import topics
from fedcore.bus import PARTITIONS, Bus, ensure_topics
from fedcore.envelope import Envelope
from tessera.envfiles import ROOT, free_ports

KAFKA_SH = ROOT / "deploy" / "kafka" / "kafka.sh"
A, B = "10000", "20000"
MIB = 1024 * 1024
BIG_COUNT = 200  # 1 MiB payloads for throughput
SMALL_COUNT = 1000  # small records for latency
SMALL_GAP_S = 0.004
TARGET_MB_S = 50.0
TARGET_P99_MS = 50.0


class _Party:
    def __init__(self, root: Path, party: str, peer: str, ports: dict[str, int]) -> None:
        self.party = party
        self.dir = root / party
        self.kafka_port, self.ctrl_port = ports[f"kafka-{party}"], ports[f"ctrl-{party}"]
        self.bridge_port = ports[f"bridge-{party}"]
        self.bootstrap = f"127.0.0.1:{self.kafka_port}"
        self.env_file = self.dir / "party.env"
        self.dir.mkdir(parents=True)
        lines = {
            "PARTY_ID": party,
            "INTERNAL_MQ_HOST": "127.0.0.1",
            "INTERNAL_MQ_TCP_PORT": str(self.kafka_port),
            "EXPOSE_MQ_HTTP_PORT": str(self.bridge_port),
            "OTHER_PARTIES": peer,
            f"PARTY_MQ_HTTP_URL_{peer}": f"http://127.0.0.1:{ports[f'bridge-{peer}']}",
            f"PARTY_PUBLIC_KEY_{peer}": str(root / peer / "keys" / "public.pem"),
            "PARTY_PRIVATE_KEY": str(self.dir / "keys" / "private.pem"),
            "STATE_DIR": str(self.dir / "state"),
        }
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        self.proc: subprocess.Popen[bytes] | None = None

    def start_broker(self) -> None:
        cmd = [str(KAFKA_SH), "start", str(self.kafka_port), str(self.dir / "kafka")]
        subprocess.run([*cmd, str(self.ctrl_port)], check=True, capture_output=True)

    def stop_broker(self) -> None:
        subprocess.run([str(KAFKA_SH), "stop", str(self.dir / "kafka")], capture_output=True)

    def keygen(self) -> None:
        cmd = [sys.executable, "-m", "federation_bridge", "keygen", "--out"]
        subprocess.run([*cmd, str(self.dir / "keys")], check=True, cwd=ROOT, capture_output=True)

    def start_bridge(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PARTY_", "BRIDGE_"))}
        cmd = [sys.executable, "-m", "federation_bridge", "--env-file", str(self.env_file)]
        with (self.dir / "bridge.log").open("ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"bench: bridge {self.party} exited; see {self.dir}/bridge.log")
            try:
                if httpx.get(f"http://127.0.0.1:{self.bridge_port}/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"bench: bridge {self.party} did not come up")

    def stop_bridge(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


async def _consumer(bootstrap: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=5,
        max_partition_fetch_bytes=8 * MIB,
        fetch_max_bytes=32 * MIB,
    )
    await consumer.start()
    tps = [TopicPartition(topics.IN_FED, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)  # pin the end before anything is written
    return consumer


def _tag(record_headers: Any) -> tuple[str | None, bool]:
    """(the run tag of a record, whether it is the last chunk of its envelope)."""
    headers = dict(record_headers or ())
    chunk = headers.get("chunk")
    if chunk is None:
        last = True
    else:
        index, count = chunk.decode().split("/")
        last = int(index) + 1 == int(count)
    tag = headers.get("type")
    return (tag.decode() if tag else None), last


async def _throughput(bus: Bus, consumer: AIOKafkaConsumer) -> dict[str, Any]:
    run = f"tp-{uuid.uuid4().hex[:8]}"
    payload = os.urandom(MIB)
    jobs = [f"job-{i}" for i in range(6)]  # several jobs, so all three partitions carry data
    envs = [
        Envelope(
            type=run, job_id=jobs[i % len(jobs)], task="bench", src=A, dst=B, body={"p": payload}
        )
        for i in range(BIG_COUNT)
    ]
    arrived = 0
    start = time.perf_counter()

    async def produce() -> None:
        await asyncio.gather(*(bus.publish(topics.OUT_FED, env) for env in envs))

    producing = asyncio.create_task(produce())
    while arrived < BIG_COUNT:
        batches = await consumer.getmany(timeout_ms=1000)
        for records in batches.values():
            for r in records:
                tag, last = _tag(r.headers)
                arrived += tag == run and last
        if time.perf_counter() - start > 300:
            raise SystemExit(f"bench: only {arrived}/{BIG_COUNT} large envelopes arrived in 300 s")
    elapsed = time.perf_counter() - start
    await producing
    return {
        "payload_bytes": MIB,
        "count": BIG_COUNT,
        "seconds": round(elapsed, 2),
        "mb_per_s": round(BIG_COUNT * MIB / 1e6 / elapsed, 1),
    }


async def _latency(bus: Bus, consumer: AIOKafkaConsumer) -> dict[str, Any]:
    run = f"lat-{uuid.uuid4().hex[:8]}"
    sent: dict[str, float] = {}
    latencies: list[float] = []

    async def produce() -> None:
        for i in range(SMALL_COUNT):
            env = Envelope(
                type=run, job_id=f"job-{i % 6}", task="bench", src=A, dst=B, body={"i": i}
            )
            sent[env.id] = time.perf_counter()
            await bus.producer.send(
                topics.OUT_FED, env.to_bytes(), key=env.job_id.encode(), headers=env.headers()
            )
            await asyncio.sleep(SMALL_GAP_S)

    producing = asyncio.create_task(produce())
    deadline = time.perf_counter() + 120
    while len(latencies) < SMALL_COUNT and time.perf_counter() < deadline:
        for records in (await consumer.getmany(timeout_ms=200)).values():
            now = time.perf_counter()
            for r in records:
                headers = dict(r.headers or ())
                if headers.get("type") == run.encode():
                    latencies.append((now - sent[headers["id"].decode()]) * 1000)
    await producing
    latencies.sort()
    n = len(latencies)
    return {
        "count": n,
        "record_bytes": "~150",
        "interval_ms": SMALL_GAP_S * 1000,
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[min(n - 1, int(n * 0.99))], 2),
        "max_ms": round(latencies[-1], 2),
    }


async def _measure(a: _Party, b: _Party) -> dict[str, Any]:
    await ensure_topics(b.bootstrap)
    consumer = await _consumer(b.bootstrap)
    try:
        async with Bus(a.bootstrap, client_id="bench-producer") as bus:
            latency = await _latency(bus, consumer)  # first: a quiet pipe
            throughput = await _throughput(bus, consumer)
    finally:
        await consumer.stop()
    return {"throughput": throughput, "latency": latency}


def run(options: Options) -> None:
    root = Path(tempfile.mkdtemp(prefix="tessera-bench-bridge-"))
    names = [f"{kind}-{p}" for p in (A, B) for kind in ("kafka", "ctrl", "bridge")]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    a, b = _Party(root, A, B, ports), _Party(root, B, A, ports)
    try:
        for party in (a, b):
            party.keygen()
            party.start_broker()
        b.start_bridge()
        a.start_bridge()
        figures = asyncio.run(_measure(a, b))
    finally:
        for party in (a, b):
            party.stop_bridge()
            party.stop_broker()
    emit(
        {
            "bench": "bridge",
            **figures,
            "target": {"mb_per_s": TARGET_MB_S, "p99_ms": TARGET_P99_MS},
            "meets_target": figures["throughput"]["mb_per_s"] >= TARGET_MB_S
            and figures["latency"]["p99_ms"] < TARGET_P99_MS,
            "cpus": os.cpu_count(),
            "loadavg_1m": round(os.getloadavg()[0], 2),
            **peak_rss_mb(),
        },
        options,
    )
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    run(Options(dataset=None, data_dir=Path("."), out=None))
