"""Envelopes of a small two-party job, and a way to serve a dashboard app on a real port."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI

from brokers import free_port
from dashboard.server import Server
from fedcore.envelope import Envelope

GUEST, HOST = "10000", "20000"
# job ids are 32 lowercase hex digits (fedcore.messages); these stay recognisable in pages
DONE = "d0e" + "0" * 29
BROKEN = "b0b" + "0" * 29
JOB = "a" * 32
OTHER = "c" * 32
EVIL = "e" * 32
STEPS = ["intersect", "train", "evaluate"]
LOSSES = [0.69, 0.52, 0.44, 0.40, 0.38]
T = TypeVar("T")


def job_status(job_id: str, state: str, ts: float, **body: Any) -> Envelope:
    return Envelope(
        type="job.status", job_id=job_id, src=GUEST, ts=ts, body={"state": state, **body}
    )


def task_status(
    job_id: str, step: str, party: str, state: str, ts: float, reason: str | None = None
) -> Envelope:
    body = {"party": party, "state": state, "reason": reason}
    return Envelope(type="task.status", job_id=job_id, task=step, src=party, ts=ts, body=body)


def metric(
    job_id: str, step: str, party: str, name: str, value: Any, ts: float, iteration: int | None
) -> Envelope:
    body = {"party": party, "name": name, "value": value, "step": iteration}
    return Envelope(type="metric", job_id=job_id, task=step, src=party, ts=ts, body=body)


def log(job_id: str, step: str, party: str, line: str, ts: float, level: str = "info") -> Envelope:
    body = {"party": party, "level": level, "line": line}
    return Envelope(type="log", job_id=job_id, task=step, src=party, ts=ts, body=body)


def sample_job(job_id: str, t0: float | None = None) -> list[Envelope]:
    """A hetero-LR job that runs its three steps on both parties and succeeds."""
    t = time.time() if t0 is None else t0
    common = {
        "initiator": GUEST,
        "parties": [f"{GUEST}=guest", f"{HOST}=host"],
        "pipeline": "hetero-lr",
        "steps": STEPS,
        "components": {"intersect": "intersect", "train": "hetero_lr", "evaluate": "evaluation"},
        "depends": {"intersect": [], "train": ["intersect"], "evaluate": ["train"]},
    }
    envs = [job_status(job_id, "waiting", t, **common), job_status(job_id, "running", t + 1)]
    for i, step in enumerate(STEPS):
        ts = t + 10 * (i + 1)
        envs += [task_status(job_id, step, p, "running", ts) for p in (GUEST, HOST)]
        if step == "train":
            envs += [
                metric(job_id, step, GUEST, "loss", loss, ts + n, iteration=n)
                for n, loss in enumerate(LOSSES)
            ]
            envs.append(log(job_id, step, GUEST, "epoch 4 done", ts + 5))
        if step == "evaluate":
            envs += [
                metric(job_id, step, GUEST, "auc", 0.8125, ts + 1, None),
                metric(job_id, step, GUEST, "ks", 0.5, ts + 1, None),
                metric(
                    job_id,
                    step,
                    GUEST,
                    "roc",
                    {"fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 0.75, 1.0]},
                    ts + 1,
                    None,
                ),
            ]
        envs += [task_status(job_id, step, p, "success", ts + 8) for p in (GUEST, HOST)]
    envs.append(job_status(job_id, "success", t + 40, **common))
    return envs


async def eventually(
    probe: Callable[[], Awaitable[T | None]], timeout_s: float = 30.0, every_s: float = 0.1
) -> T:
    """``probe()``'s first non-None result, or AssertionError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(every_s)


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app`` under uvicorn (lifespan included) on a free port; stop it on exit."""
    port = free_port()
    server = Server(app, host="127.0.0.1", port=port, log_level="warning")
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        if task.done():
            task.result()  # raise what stopped it
        if time.monotonic() > deadline:
            raise AssertionError("the dashboard did not start")
        await asyncio.sleep(0.02)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        server.request_stop()
        await asyncio.wait_for(task, 10)
