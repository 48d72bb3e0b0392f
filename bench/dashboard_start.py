"""How long the dashboard takes to start with 0 and with 1,000 finished jobs in its database.

A Kafka broker of its own (``deploy/kafka/kafka.sh`` on free ports) and the dashboard's default
SQLite in a temporary state dir, or with ``--database postgresql`` a database per size on a
throwaway PostgreSQL cluster (``deploy/postgres/postgres.sh``). For each size, generated
finished jobs (a hetero-LR job of three steps on two parties: states, a 20-iteration loss per
party, AUC/KS, a 100-point ROC, ten log lines; 67 records each) are published to the dashboard's
topics and read once by a dashboard, as a running one would have (``catch_up_s``: from its
start until it has stored every record, i.e. what reading the whole history costs, which the
dashboard used to pay at every start). Then the dashboard is started :data:`RUNS` more times on
that database and its committed offsets: ``healthy_s`` is from the server's start until
``/health`` is ok, ``start_s`` until the first page of jobs (JSON and HTML) is served with every
job counted, ``page_ms`` what such a pair of pages costs afterwards. One JSON line per start.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Final

import httpx
import psycopg
from sqlalchemy import text

from bench.common import Options, emit
from dashboard.app import create_app
from dashboard.server import Server
from fedcore import topics
from fedcore.bus import Bus, RawRecord
from fedcore.dburl import make_engine
from fedcore.envelope import Envelope
from fedcore.settings import PartySettings
from tessera.envfiles import ROOT, free_ports

KAFKA_SH: Final = ROOT / "deploy" / "kafka" / "kafka.sh"
POSTGRES_SH: Final = ROOT / "deploy" / "postgres" / "postgres.sh"
SIZES: Final = (0, 1000)
RUNS: Final = 3
GUEST, HOST = "10000", "20000"
STEPS: Final = ("intersect", "train", "evaluate")
TOPIC_OF: Final = {"job.status": topics.STATUS, "task.status": topics.STATUS, "log": topics.LOGS}


def finished_job(job_id: str, t0: float) -> list[Envelope]:
    """The records of one finished hetero-LR job, as its party's services publish them."""

    def env(type_: str, ts: float, body: dict[str, Any], task: str | None = None) -> Envelope:
        return Envelope(type=type_, job_id=job_id, task=task, src=GUEST, ts=ts, body=body)

    common = {
        "initiator": GUEST,
        "parties": [f"{GUEST}=guest", f"{HOST}=host"],
        "pipeline": "hetero-lr",
        "steps": list(STEPS),
        "components": {"intersect": "intersect", "train": "hetero_lr", "evaluate": "evaluation"},
        "depends": {"intersect": [], "train": ["intersect"], "evaluate": ["train"]},
    }
    envs = [env("job.status", t0, {"state": "running", **common})]
    for i, step in enumerate(STEPS):
        ts = t0 + 100 * (i + 1)
        for party in (GUEST, HOST):
            envs.append(env("task.status", ts, {"party": party, "state": "running"}, step))
        envs += [
            env("log", ts + n, {"party": GUEST, "level": "info", "line": f"{step}: {n}"}, step)
            for n in range(3 if step != "train" else 4)
        ]
        if step == "train":
            envs += [
                env(
                    "metric",
                    ts + n,
                    {"party": p, "name": "loss", "value": 0.7 / (n + 1), "step": n},
                    step,
                )
                for p in (GUEST, HOST)
                for n in range(20)
            ]
        if step == "evaluate":
            grid = [k / 99 for k in range(100)]
            roc = {"fpr": grid, "tpr": [min(1.0, 1.2 * x) for x in grid], "thresholds": grid[::-1]}
            for name, value in (("auc", 0.81), ("ks", 0.5), ("roc", roc)):
                envs.append(
                    env("metric", ts + 5, {"party": GUEST, "name": name, "value": value}, step)
                )
        for party in (GUEST, HOST):
            envs.append(env("task.status", ts + 50, {"party": party, "state": "success"}, step))
    envs.append(env("job.status", t0 + 400, {"state": "success", **common}))
    return envs


def _record(env: Envelope) -> RawRecord:
    topic = TOPIC_OF.get(env.type, topics.RESULTS)
    return RawRecord(topic, env.job_id.encode(), env.to_bytes(), env.headers())


async def _publish(bootstrap: str, jobs: int) -> int:
    """Publish ``jobs`` finished jobs; the number of records."""
    records = [
        _record(e)
        for i in range(jobs)
        for e in finished_job(uuid.uuid4().hex, 1_700_000_000.0 + 1000 * i)
    ]
    async with Bus(bootstrap, "bench-dashboard") as bus:
        for start in range(0, len(records), 5000):
            delivered = await bus.queue_raw_many(records[start : start + 5000])
            await delivered
    return len(records)


async def _start(
    settings: PartySettings, jobs: int, timeout_s: float, records: int = 0
) -> tuple[dict[str, float], Server, asyncio.Task[None]]:
    """Start a dashboard: seconds until ``/health`` is ok (``healthy_s``) and until it has
    stored ``records`` records and the first pages count every job (``start_s``), then a page's
    cost (``page_ms``: the median of five ``/api/jobs`` + ``/`` pairs)."""
    server = Server(
        create_app(settings), host="127.0.0.1", port=settings.dashboard_port, log_level="warning"
    )
    started = time.monotonic()
    task = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{settings.dashboard_port}"
    healthy: float | None = None
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        while True:
            if task.done():
                task.result()
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(f"the dashboard did not serve {jobs} jobs in {timeout_s} s")
            try:
                if healthy is None:
                    if (await client.get("/health")).status_code == 200:
                        healthy = time.monotonic() - started
                    else:
                        await asyncio.sleep(0.01)
                    continue
                stored = (await client.get("/health")).json()["consumer"]["records"]
                if stored >= records and await _pages(client) == jobs:
                    served = time.monotonic() - started
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.01)
        pages = []
        for _ in range(5):
            begun = time.monotonic()
            await _pages(client)
            pages.append(time.monotonic() - begun)
    figures = {
        "healthy_s": round(healthy, 3),
        "start_s": round(served, 3),
        "page_ms": round(1000 * statistics.median(pages), 1),
    }
    return figures, server, task


async def _pages(client: httpx.AsyncClient) -> int | None:
    """The first page of jobs as JSON and as HTML; the jobs counted, None unless both served."""
    listed = await client.get("/api/jobs")
    page = await client.get("/")
    if listed.status_code != 200 or page.status_code != 200:
        return None
    total: int = listed.json()["total"]
    return total


async def _stop(server: Server, task: asyncio.Task[None]) -> None:
    server.request_stop()
    await asyncio.wait_for(task, 30)


def _database_mb(settings: PartySettings) -> float:
    engine = make_engine(settings.dashboard_db_url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar()
            else:
                conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))  # what the WAL holds too
                pages = conn.execute(text("PRAGMA page_count")).scalar() or 0
                size = pages * (conn.execute(text("PRAGMA page_size")).scalar() or 0)
    finally:
        engine.dispose()
    return round(float(size or 0) / 2**20, 1)


async def _measure(
    bootstrap: str, root: Path, port: int, jobs: int, database_url: str | None, options: Options
) -> None:
    state = root / f"state-{jobs}"
    settings = PartySettings(
        party_id=str(40_000 + jobs),  # a consumer group of its own
        kafka_bootstrap=bootstrap,
        dashboard_port=port,
        state_dir=state,
        dashboard_database_url=database_url,
    )
    records = await _publish(bootstrap, jobs)
    catch_up, server, task = await _start(settings, jobs, timeout_s=1800, records=records)
    await _stop(server, task)
    for run in range(RUNS):
        figures, server, task = await _start(settings, jobs, timeout_s=120)
        await _stop(server, task)
        emit(
            {
                "bench": "dashboard_start",
                "jobs": jobs,
                "records": records,
                "run": run,
                **figures,
                "catch_up_s": round(catch_up["start_s"], 2),
                "database": options.database,
                "database_mb": _database_mb(settings),
                "loadavg_1m": round(os.getloadavg()[0], 2),
            },
            options,
        )


def _new_database(port: int, name: str) -> str:
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@127.0.0.1:{port}/{name}"


def run(options: Options) -> None:
    root = Path(tempfile.mkdtemp(prefix="tessera-bench-dashboard-"))
    root.chmod(0o711)  # as root the cluster runs as the postgres user, which must get through
    kafka_port, ctrl_port, http_port, pg_port = free_ports(4)
    kafka_dir, pg_dir = root / "kafka", root / "postgres"
    postgres = options.database == "postgresql"
    subprocess.run(
        [str(KAFKA_SH), "start", str(kafka_port), str(kafka_dir), str(ctrl_port)], check=True
    )
    try:
        if postgres:
            subprocess.run([str(POSTGRES_SH), "start", str(pg_port), str(pg_dir)], check=True)
        for jobs in SIZES:
            url = _new_database(pg_port, f"bench_dashboard_{jobs}") if postgres else None
            asyncio.run(_measure(f"127.0.0.1:{kafka_port}", root, http_port, jobs, url, options))
    finally:
        if postgres:
            stop = [str(POSTGRES_SH), "stop", str(pg_dir)]
            subprocess.run(stop, capture_output=True, check=False)
        subprocess.run([str(KAFKA_SH), "stop", str(kafka_dir)], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
