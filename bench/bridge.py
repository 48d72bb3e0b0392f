"""Bridge benchmark: two parties on loopback, each with its own Kafka broker and bridge process.

End to end, as a job sees it: a producer on party A's ``fl.out.fed`` and, on party B's
``fl.in.fed``, the groupless subscription a step's worker reads with (``Bus.subscribe``:
reassembled, decoded envelopes), through both bridges (signed batches over HTTP, verified,
de-duplicated, produced). A warm-up (a run of each kind) goes through first and is not counted:
bridges run for days, and the first seconds of a fresh pair (consumer group join, cold JIT,
first log segments) are several times slower than what a job sees afterwards.

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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from bench.common import Options, emit, peak_rss_mb
from fedcore import topics
from fedcore.bus import Bus, ensure_topics
from fedcore.envelope import Envelope
from tessera.envfiles import ROOT, free_ports

KAFKA_SH = ROOT / "deploy" / "kafka" / "kafka.sh"
A, B = "10000", "20000"
MIB = 1024 * 1024
BIG_COUNT = 200  # 1 MiB payloads for throughput
SMALL_COUNT = 1000  # small records for latency
SMALL_GAP_S = 0.004
WARM_LARGE = 20
DEADLINE_S = 300.0
TARGET_MB_S = 50.0
TARGET_P99_MS = 50.0


class _Party:
    """One party's broker and bridge; the bridge runs from ``tree`` (this checkout unless
    another is given, see :mod:`bench.bridge_compare`)."""

    def __init__(
        self, root: Path, party: str, peer: str, ports: dict[str, int], tree: Path = ROOT
    ) -> None:
        self.party = party
        self.tree = tree
        self.dir = root / party
        self.kafka_port, self.ctrl_port = ports[f"kafka-{party}"], ports[f"ctrl-{party}"]
        self.bridge_port = ports[f"bridge-{party}"]
        self.internal_port = ports[f"internal-{party}"]
        self.bootstrap = f"127.0.0.1:{self.kafka_port}"
        self.env_file = self.dir / "party.env"
        self.dir.mkdir(parents=True)
        lines = {
            "PARTY_ID": party,
            "INTERNAL_MQ_HOST": "127.0.0.1",
            "INTERNAL_MQ_TCP_PORT": str(self.kafka_port),
            "EXPOSE_MQ_HTTP_PORT": str(self.bridge_port),
            "BRIDGE_INTERNAL_PORT": str(self.internal_port),
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
        if self.tree != ROOT:  # the other checkout's code, with this virtualenv's packages
            t = self.tree
            env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (t / "libs", t / "services", t))
        cmd = [sys.executable, "-m", "federation_bridge", "--env-file", str(self.env_file)]
        with (self.dir / "bridge.log").open("ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.tree, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        # an older bridge serves /health on the peers' port
        health = [f"http://127.0.0.1:{p}/health" for p in (self.internal_port, self.bridge_port)]
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"bench: bridge {self.party} exited; see {self.dir}/bridge.log")
            for url in health:
                try:
                    if httpx.get(url).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            time.sleep(0.2)
        raise SystemExit(f"bench: bridge {self.party} did not come up")

    def stop_bridge(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def _envelopes(run: str, count: int, body: dict[str, Any]) -> list[Envelope]:
    # several jobs, so all three partitions carry data
    return [
        Envelope(type=run, job_id=f"{i % 6:032x}", task="bench", src=A, dst=B, body=body)
        for i in range(count)
    ]


async def _arrivals(received: AsyncIterator[Envelope], run: str, count: int) -> AsyncIterator[str]:
    """The ids of ``run``'s envelopes as they arrive, until ``count`` did (or a deadline)."""
    deadline = time.perf_counter() + DEADLINE_S
    arrived = 0
    while arrived < count:
        try:
            env = await asyncio.wait_for(anext(received), deadline - time.perf_counter())
        except TimeoutError:
            late = f"bench: {arrived}/{count} of {run} arrived in {DEADLINE_S} s"
            raise SystemExit(late) from None
        if env.type == run:
            arrived += 1
            yield env.id


async def _warm_up(bus: Bus, received: AsyncIterator[Envelope]) -> dict[str, int]:
    """Uncounted large envelopes, then an uncounted latency run."""
    run = f"warm-{uuid.uuid4().hex[:8]}"
    envs = _envelopes(run, WARM_LARGE, {"p": os.urandom(MIB)})
    sending = asyncio.gather(*(bus.publish(topics.OUT_FED, env) for env in envs))
    async for _ in _arrivals(received, run, len(envs)):
        pass
    await sending
    await _latency(bus, received)
    return {"small": SMALL_COUNT, "large": WARM_LARGE}


async def _throughput(bus: Bus, received: AsyncIterator[Envelope]) -> dict[str, Any]:
    run = f"tp-{uuid.uuid4().hex[:8]}"
    envs = _envelopes(run, BIG_COUNT, {"p": os.urandom(MIB)})
    start = time.perf_counter()
    sending = asyncio.gather(*(bus.publish(topics.OUT_FED, env) for env in envs))
    async for _ in _arrivals(received, run, BIG_COUNT):
        pass
    elapsed = time.perf_counter() - start
    await sending
    return {
        "payload_bytes": MIB,
        "count": BIG_COUNT,
        "seconds": round(elapsed, 2),
        "mb_per_s": round(BIG_COUNT * MIB / 1e6 / elapsed, 1),
    }


async def _latency(bus: Bus, received: AsyncIterator[Envelope]) -> dict[str, Any]:
    run = f"lat-{uuid.uuid4().hex[:8]}"
    sent: dict[str, float] = {}
    latencies: list[float] = []

    async def produce() -> None:
        for i, env in enumerate(_envelopes(run, SMALL_COUNT, {})):
            env.body["i"] = i
            sent[env.id] = time.perf_counter()
            await bus.producer.send(
                topics.OUT_FED, env.to_bytes(), key=env.job_id.encode(), headers=env.headers()
            )
            await asyncio.sleep(SMALL_GAP_S)

    producing = asyncio.create_task(produce())
    async for env_id in _arrivals(received, run, SMALL_COUNT):
        latencies.append((time.perf_counter() - sent[env_id]) * 1000)
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
    since_ms = int(time.time() * 1000)
    async with (
        Bus(b.bootstrap, client_id="bench-consumer").subscribe(
            [topics.IN_FED], group_id=None, start_time_ms=since_ms
        ) as subscription,
        Bus(a.bootstrap, client_id="bench-producer") as bus,
    ):
        received = aiter(subscription)
        warm_up = await _warm_up(bus, received)
        latency = await _latency(bus, received)  # first: a quiet pipe
        throughput = await _throughput(bus, received)
    return {"throughput": throughput, "latency": latency, "warm_up": warm_up}


def start_pair(root: Path, tree: Path = ROOT) -> tuple[_Party, _Party]:
    """Parties A and B under ``root``, brokers and bridges (from ``tree``) up; on failure,
    whatever started is stopped."""
    names = [f"{kind}-{p}" for p in (A, B) for kind in ("kafka", "ctrl", "bridge", "internal")]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    a, b = _Party(root, A, B, ports, tree), _Party(root, B, A, ports, tree)
    try:
        for party in (a, b):
            party.keygen()
            party.start_broker()
        b.start_bridge()
        a.start_bridge()
    except BaseException:
        stop_pair(a, b)
        raise
    return a, b


def stop_pair(a: _Party, b: _Party) -> None:
    for party in (a, b):
        party.stop_bridge()
        party.stop_broker()


def run(options: Options) -> None:
    root = Path(tempfile.mkdtemp(prefix="tessera-bench-bridge-"))
    a, b = start_pair(root)
    try:
        figures = asyncio.run(_measure(a, b))
    finally:
        stop_pair(a, b)
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
