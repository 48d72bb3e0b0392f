"""The step sandbox on a real worker and broker: what a step must not reach, it does not.

Each test runs the ``te_escape`` component with one forbidden action; the step must fail with the
error the sandbox causes, and the host must show no trace of the attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_task_worker import (
    collect,
    ended,
    final,
    processes_in,
    running_worker,
    task_run,
    work_dir,
)

from brokers import Broker
from fedcore import topics
from fedcore.bus import Bus
from fedcore.settings import PartySettings
from task_engine.runtime import ProcessRuntime
from task_engine.sandbox import (
    STEP_GID,
    STEP_UID,
    BubblewrapRuntime,
    SandboxLimits,
    SandboxUnavailable,
    select_runtime,
)
from task_engine.worker import Worker

PARTY = "70000"
MEMORY_MB = 512
MAX_PROCS = 64


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sandbox")


@pytest.fixture(scope="module")
async def bus(kafka: Broker) -> AsyncIterator[Bus]:
    async with Bus(kafka.bootstrap, "test-sandbox") as bus:
        yield bus


@pytest.fixture(scope="module")
async def worker(kafka: Broker, bus: Bus, state: Path) -> AsyncIterator[Worker]:
    limits = {"step_memory_mb": MEMORY_MB, "step_max_procs": MAX_PROCS, "task_timeout_s": 30}
    async with running_worker(kafka, PARTY, state, worker_concurrency=3, **limits) as worker:
        yield worker


async def run_escape(bus: Bus, state: Path, action: str, target: Any) -> tuple[str, str, str]:
    """Run ``te_escape``; its final (state, reason) and the job id."""
    job = uuid.uuid4().hex
    args = {"try": action, "target": target}
    await bus.publish(
        topics.TASKS, task_run(job, "escape", "te_escape", "guest", PARTY, state, args=args)
    )
    done = final(await collect(bus, topics.STATUS, job, ended()))
    return done.body["state"], done.body["reason"] or "", job


async def test_a_step_has_no_network(worker: Worker, bus: Bus, state: Path) -> None:
    accepted = 0

    async def on_connect(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        outcome, reason, _ = await run_escape(bus, state, "connect", port)
    assert outcome == "failed"
    assert reason.startswith("ConnectionRefusedError"), reason  # its own loopback, not ours
    assert accepted == 0


async def test_a_step_cannot_read_another_jobs_files(worker: Worker, bus: Bus, state: Path) -> None:
    secret = work_dir(state, PARTY, "other-job", "train") / "model.bin"
    secret.parent.mkdir(parents=True)
    secret.write_text("the other job's model")
    secret.chmod(0o644)  # readable by anyone on the host: only the sandbox keeps it out
    party_file = state / PARTY / "flow_server.db"
    party_file.write_text("the party's database")
    party_file.chmod(0o644)
    for target in (secret, party_file):
        outcome, reason, job = await run_escape(bus, state, "read", str(target))
        assert outcome == "failed"
        assert reason.startswith("FileNotFoundError"), reason
        logs = await collect(
            bus, topics.LOGS, job, lambda es: any("Trace" in e.body["line"] for e in es)
        )
        assert not any("other job" in e.body["line"] or "database" in e.body["line"] for e in logs)


async def test_a_step_cannot_write_outside_its_work_and_output_dirs(
    worker: Worker, bus: Bus, state: Path
) -> None:
    sibling = work_dir(state, PARTY, "other-job", "intersect")
    sibling.mkdir(parents=True)
    sibling.chmod(0o777)  # writable by anyone on the host: only the sandbox keeps it out
    code_dir = Path(__file__).parent  # bound read-only (the test components live there)
    targets = [sibling / "planted", code_dir / "planted.py", state / PARTY / "planted"]
    for target in targets:
        outcome, reason, _ = await run_escape(bus, state, "write", str(target))
        assert outcome == "failed"
        # Read-only where the path is visible; missing where the state dir is hidden.
        assert reason.startswith(("OSError: [Errno 30]", "FileNotFoundError")), reason
    assert not any(t.exists() for t in targets)


async def test_a_fork_bomb_is_contained(worker: Worker, bus: Bus, state: Path) -> None:
    outcome, reason, job = await run_escape(bus, state, "fork", 500)
    assert outcome == "failed"
    assert reason.startswith("RuntimeError: fork refused after"), reason
    assert int(reason.split("after ")[1].split()[0]) < MAX_PROCS
    # The step's PID namespace went with it: none of its children is left on the host.
    assert processes_in(work_dir(state, PARTY, job, "escape")) == []


async def test_the_memory_limit_is_enforced(worker: Worker, bus: Bus, state: Path) -> None:
    outcome, reason, _ = await run_escape(bus, state, "allocate", 2 * MEMORY_MB)
    assert outcome == "failed"
    assert reason.startswith("MemoryError"), reason
    outcome, reason, _ = await run_escape(bus, state, "allocate", MEMORY_MB // 8)
    assert outcome == "success", reason


async def test_without_a_working_sandbox_the_worker_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    config = PartySettings(party_id="71000", kafka_bootstrap="127.0.0.1:1", state_dir=tmp_path)
    worker = Worker(config)
    with pytest.raises(SandboxUnavailable, match="STEP_RUNTIME=process"):
        await worker.run()
    await worker.shutdown()


async def test_the_plain_process_runtime_is_explicit_and_loud(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base = {"party_id": "72000", "kafka_bootstrap": "127.0.0.1:1", "state_dir": tmp_path}
    with caplog.at_level(logging.INFO, logger="task_engine.sandbox"):
        async with contextlib.AsyncExitStack() as stack:
            sandboxed = await select_runtime(PartySettings.model_validate(base), stack=stack)
            assert not any(r.levelno >= logging.WARNING for r in caplog.records)
            plain = await select_runtime(
                PartySettings.model_validate(base | {"step_runtime": "process"}), stack=stack
            )
    assert isinstance(sandboxed, BubblewrapRuntime) and isinstance(plain, ProcessRuntime)
    warning = next(r for r in caplog.records if r.levelno == logging.WARNING)
    assert "WITHOUT a sandbox" in warning.getMessage()
    from_env = PartySettings.from_env(environ={"PARTY_ID": "1", "STEP_RUNTIME": "process"})
    assert from_env.step_runtime == "process"


async def sandboxed(runtime: BubblewrapRuntime, work: Path, code: str) -> tuple[int, str]:
    """Run Python ``code`` in ``runtime``'s sandbox: (exit code, stdout)."""
    await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(work, STEP_UID, STEP_GID)
    proc = await asyncio.create_subprocess_exec(
        *runtime.argv(work, [sys.executable, "-c", code]), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_the_cpu_limit_kills_a_spinning_step(tmp_path: Path) -> None:
    runtime = BubblewrapRuntime(state_dir=tmp_path, limits=SandboxLimits(cpu_s=1))
    code, _ = await sandboxed(runtime, tmp_path / "work" / "j" / "s" / "0", "while True: pass")
    assert code - 128 in (signal.SIGXCPU, signal.SIGKILL)  # soft limit, then hard


async def test_the_workers_environment_does_not_reach_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://tessera:secret@db/tessera")
    runtime = BubblewrapRuntime(state_dir=tmp_path, extra_env={"STEP_ONLY": "1"})
    code, out = await sandboxed(
        runtime,
        tmp_path / "work" / "j" / "s" / "0",
        "import os, socket; print(sorted(os.environ), socket.gethostname(), os.getpid())",
    )
    assert code == 0
    assert "DATABASE_URL" not in out and "'STEP_ONLY'" in out
    assert out.split()[-2:] == ["tessera-step", "2"]  # its own UTS and PID namespaces
