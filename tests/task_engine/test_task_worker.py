"""Workers on real brokers: two parties run a step together; failures, crashes, timeouts, stop.

The workers run their steps in the default runtime, the bubblewrap sandbox.

Party 10000's worker uses broker A and party 20000's broker B. The federation bridge is written
separately, so :func:`mirror_fed` below stands in for it: it copies ``fed`` records from one
party's ``fl.out.fed`` into the other's ``fl.in.fed`` (the end-to-end test uses the real bridge).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from brokers import Broker, free_port
from fedcore import topics
from fedcore.bus import Bus, ensure_topics
from fedcore.envelope import Envelope
from fedcore.settings import PartySettings
from task_engine.runtime import StepRuntime
from task_engine.worker import Worker

pytestmark = pytest.mark.kafka

HERE = Path(__file__).resolve().parent
COMPONENTS = ("task_engine_components",)
GUEST, HOST = "10000", "20000"
WAIT_S = 60.0
ENDED = ("success", "failed", "canceled", "timeout")


def now_ms() -> int:
    return int(time.time() * 1000)


async def start_group_at_end(bootstrap: str, group: str) -> None:
    """Commit ``group`` at the end of fl.tasks, so a worker ignores task.run records that other
    tests of this session left on the shared broker."""
    await ensure_topics(bootstrap)
    consumer = AIOKafkaConsumer(
        topics.TASKS, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        ends = await consumer.end_offsets(list(consumer.assignment()))
        await consumer.commit(dict(ends))
    finally:
        await consumer.stop()


def step_env() -> dict[str, str]:
    """The test components' directory on the steps' PYTHONPATH (bound read-only in a sandbox)."""
    return {
        "PYTHONPATH": os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
    }


@contextlib.asynccontextmanager
async def running_worker(
    broker: Broker,
    party: str,
    state_dir: Path,
    *,
    runtime: StepRuntime | None = None,
    **settings: Any,
) -> AsyncIterator[Worker]:
    """A worker of ``party`` whose state is ``state_dir/party``; its data roots default to
    ``state_dir``, where the tests put their inputs and outputs."""
    settings.setdefault("data_roots", [state_dir])
    config = PartySettings(
        party_id=party,
        kafka_bootstrap=broker.bootstrap,
        state_dir=state_dir / party,
        task_engine_port=free_port(),
        **settings,
    )
    worker = Worker(config, runtime=runtime, runtime_env=step_env(), component_modules=COMPONENTS)
    await start_group_at_end(broker.bootstrap, worker.group_id)
    serving = asyncio.create_task(worker.run())
    started = asyncio.create_task(worker.wait_started())
    await asyncio.wait({serving, started}, return_when=asyncio.FIRST_COMPLETED)
    if serving.done():
        started.cancel()
        serving.result()
    try:
        yield worker
    finally:
        await worker.shutdown()
        await serving


async def mirror_fed(src: Bus, dst: Bus, dst_party: str) -> None:
    """TEST STAND-IN FOR THE FEDERATION BRIDGE: copy ``fed`` envelopes for ``dst_party`` from
    ``src``'s fl.out.fed into ``dst``'s fl.in.fed (a fresh group reads from the beginning)."""
    group = f"test-mirror-{uuid.uuid4().hex}"
    async with src.subscribe([topics.OUT_FED], group_id=group) as sub:
        async for env in sub:
            if env.type == "fed" and env.dst == dst_party:
                await dst.publish(topics.IN_FED, env)


@pytest.fixture(scope="module")
async def buses(kafka_pair: tuple[Broker, Broker]) -> AsyncIterator[tuple[Bus, Bus]]:
    a, b = kafka_pair
    async with Bus(a.bootstrap, "test-a") as bus_a, Bus(b.bootstrap, "test-b") as bus_b:
        mirrors = [
            asyncio.create_task(mirror_fed(bus_a, bus_b, HOST)),
            asyncio.create_task(mirror_fed(bus_b, bus_a, GUEST)),
        ]
        yield bus_a, bus_b
        for task in mirrors:
            task.cancel()
        await asyncio.gather(*mirrors, return_exceptions=True)


@pytest.fixture(scope="module")
async def workers(
    kafka_pair: tuple[Broker, Broker],
    buses: tuple[Bus, Bus],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Worker, Worker]]:
    state = tmp_path_factory.mktemp("task_engine")
    a, b = kafka_pair
    roots = [tmp_path_factory.getbasetemp()]  # each test's tmp_path holds its inputs and outputs
    async with (
        running_worker(a, GUEST, state, task_timeout_s=60, data_roots=roots) as guest,
        running_worker(b, HOST, state, task_timeout_s=60, data_roots=roots) as host,
    ):
        yield guest, host


def task_run(
    job: str,
    step: str,
    component: str,
    role: str,
    party: str,
    output_dir: Path,
    *,
    parties: dict[str, list[str]] | None = None,
    args: dict[str, Any] | None = None,
    inputs: dict[str, str] | None = None,
    attempt: int = 1,
) -> Envelope:
    return Envelope(
        type="task.run",
        job_id=job,
        task=step,
        src=party,
        dst=party,
        body={
            "component": component,
            "role": role,
            "party_id": party,
            "parties": parties or {role: [party]},
            "args": args or {},
            "inputs": inputs or {},
            "output_dir": str(output_dir / party / job / step),
            "fed_since_ms": now_ms() - 1000,
            "attempt": attempt,
        },
    )


async def collect(
    bus: Bus,
    topic: str,
    job: str,
    until: Callable[[list[Envelope]], bool],
    timeout_s: float = WAIT_S,
) -> list[Envelope]:
    """The job's envelopes on ``topic``, once ``until`` holds for them.

    A fresh consumer group reads the topic from its beginning: a groupless subscription from a
    point in time could miss a record produced while it positions itself (see the report on
    fedcore's Subscription)."""
    got: list[Envelope] = []

    async def gather() -> None:
        async with bus.subscribe([topic], group_id=f"test-collect-{uuid.uuid4().hex}") as sub:
            async for env in sub:
                if env.job_id == job:
                    got.append(env)
                    if until(got):
                        return

    try:
        await asyncio.wait_for(gather(), timeout_s)
    except TimeoutError:
        pytest.fail(f"timed out on {topic} for job {job}; got {[e.body for e in got]}")
    return got


def ended(n: int = 1) -> Callable[[list[Envelope]], bool]:
    def check(envs: list[Envelope]) -> bool:
        return sum(e.body["state"] in ENDED for e in envs) >= n

    return check


def final(statuses: list[Envelope]) -> Envelope:
    return next(e for e in statuses if e.body["state"] in ENDED)


def read(path: str) -> str:
    return Path(path).read_text()


def processes_in(work_dir: Path) -> list[int]:
    """Live host pids whose current directory is ``work_dir`` (a step and what it started; pids
    inside a sandbox are its PID namespace's own, so the pid file does not name them)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone meanwhile
            continue
        if cwd == str(work_dir) and state != "Z":  # Z: exited, waiting to be reaped
            found.append(int(proc.name))
    return found


def work_dir(state_dir: Path, party: str, job: str, step: str, attempt: int = 1) -> Path:
    return state_dir / party / "work" / job / step / str(attempt)


async def test_two_parties_run_a_step_together(
    workers: tuple[Worker, Worker], buses: tuple[Bus, Bus], tmp_path: Path
) -> None:
    bus_a, bus_b = buses
    job = uuid.uuid4().hex
    parties = {"guest": [GUEST], "host": [HOST]}
    await bus_a.publish(
        topics.TASKS, task_run(job, "ping", "te_ping", "guest", GUEST, tmp_path, parties=parties)
    )
    await bus_b.publish(
        topics.TASKS, task_run(job, "ping", "te_ping", "host", HOST, tmp_path, parties=parties)
    )
    status_a, status_b = await asyncio.gather(
        collect(bus_a, topics.STATUS, job, ended()),
        collect(bus_b, topics.STATUS, job, ended()),
    )
    for statuses, party in ((status_a, GUEST), (status_b, HOST)):
        assert [e.body["state"] for e in statuses] == ["running", "success"], statuses
        done = statuses[-1]
        assert done.type == "task.status" and done.task == "ping" and done.src == party
        assert done.body["party"] == party and done.body["reason"] is None
        # Only outputs the component wrote are reported.
        assert list(done.body["outputs"]) == ["result"]
    outputs = {
        party: e[-1].body["outputs"]["result"] for party, e in ((GUEST, status_a), (HOST, status_b))
    }
    assert read(outputs[GUEST]) == f"[1, 2, 3] {2**100}"
    assert read(outputs[HOST]) == "host done"

    # Each step first reports where it computes (here: no spark-master-name, the local pool).
    metrics = await collect(bus_a, topics.RESULTS, job, lambda es: len(es) >= 2)
    assert all(m.type == "metric" for m in metrics)
    assert metrics[0].body["name"] == "computing"
    assert metrics[0].body["value"]["engine"] == "local"
    assert metrics[1].body == {"party": GUEST, "name": "pong_sum", "value": 6.0, "step": 1}
    host_metrics = await collect(bus_b, topics.RESULTS, job, lambda es: len(es) >= 2)
    assert host_metrics[1].body == {"party": HOST, "name": "host_seen", "value": 3, "step": None}

    logs = await collect(
        bus_b, topics.LOGS, job, lambda es: any("got ping" in e.body["line"] for e in es)
    )
    line = next(e for e in logs if "got ping" in e.body["line"])
    assert line.type == "log"
    assert line.body["party"] == HOST and line.body["level"] == "WARNING"
    assert "host got ping [0, 1, 2]" in line.body["line"]


async def test_the_real_intersect_component_aligns_both_parties_rows(
    workers: tuple[Worker, Worker], buses: tuple[Bus, Bus], tmp_path: Path
) -> None:
    bus_a, bus_b = buses
    job = uuid.uuid4().hex
    guest_csv, host_csv = tmp_path / "guest.csv", tmp_path / "host.csv"
    guest_csv.write_text("id,y,x1\n" + "".join(f"u{i},{i % 2},{i / 10}\n" for i in range(1, 9)))
    host_csv.write_text("id,x2\n" + "".join(f"u{i},{i * 3}\n" for i in range(12, 4, -1)))
    parties = {"guest": [GUEST], "host": [HOST]}
    for bus, role, party, csv in (
        (bus_a, "guest", GUEST, guest_csv),
        (bus_b, "host", HOST, host_csv),
    ):
        await bus.publish(
            topics.TASKS,
            task_run(
                job,
                "intersect",
                "intersect",
                role,
                party,
                tmp_path,
                parties=parties,
                inputs={"data": str(csv)},
            ),
        )
    status_a, status_b = await asyncio.gather(
        collect(bus_a, topics.STATUS, job, ended()), collect(bus_b, topics.STATUS, job, ended())
    )
    rows = {}
    for statuses in (status_a, status_b):
        done = final(statuses)
        assert done.body["state"] == "success", done.body["reason"]
        lines = read(done.body["outputs"]["data"]).splitlines()
        rows[done.body["party"]] = [line.split(",") for line in lines]
    assert rows[GUEST][0] == ["id", "y", "x1"] and rows[HOST][0] == ["id", "x2"]
    guest_ids = [r[0] for r in rows[GUEST][1:]]
    assert sorted(guest_ids) == ["u5", "u6", "u7", "u8"]
    assert [r[0] for r in rows[HOST][1:]] == guest_ids  # one shared order
    metrics = await collect(bus_b, topics.RESULTS, job, lambda es: len(es) >= 2)
    assert metrics[1].body["name"] == "intersection_size" and metrics[1].body["value"] == 4


async def test_a_failing_component_is_reported_with_its_reason(
    workers: tuple[Worker, Worker], buses: tuple[Bus, Bus], tmp_path: Path
) -> None:
    bus_a, _ = buses
    job = uuid.uuid4().hex
    await bus_a.publish(topics.TASKS, task_run(job, "bad", "te_fail", "guest", GUEST, tmp_path))
    statuses = await collect(bus_a, topics.STATUS, job, ended())
    assert final(statuses).body["state"] == "failed"
    assert final(statuses).body["reason"] == "ValueError: the input has no id column"
    assert final(statuses).body["code"] == "step_error", "what the other parties will be told"
    assert final(statuses).body["outputs"] == {}
    logs = await collect(
        bus_a, topics.LOGS, job, lambda es: any("Traceback" in e.body["line"] for e in es)
    )
    assert any(e.body["line"].endswith("about to fail") for e in logs)


async def test_the_step_is_held_to_the_partys_own_floors(
    workers: tuple[Worker, Worker], buses: tuple[Bus, Bus], tmp_path: Path
) -> None:
    bus_a, _ = buses
    job = uuid.uuid4().hex
    # the task's args cannot lower the floor: the worker hands the step its party's settings
    run = task_run(job, "bins", "te_floors", "guest", GUEST, tmp_path, args={"bins": 100})
    run.body["args"]["floors"] = {"max_bins": 1000}
    await bus_a.publish(topics.TASKS, run)
    done = final(await collect(bus_a, topics.STATUS, job, ended())).body
    assert (done["state"], done["code"]) == ("failed", "floor.max-bins")
    assert "100 bins per column exceed this party's maximum of 64" in done["reason"]


async def test_unknown_components_and_malformed_tasks_fail_with_a_reason(
    workers: tuple[Worker, Worker], buses: tuple[Bus, Bus], tmp_path: Path
) -> None:
    bus_a, _ = buses
    job = uuid.uuid4().hex
    await bus_a.publish(topics.TASKS, task_run(job, "x", "no_such", "guest", GUEST, tmp_path))
    broken = task_run(job, "y", "te_fail", "guest", GUEST, tmp_path)
    del broken.body["parties"]
    await bus_a.publish(topics.TASKS, broken)
    statuses = await collect(bus_a, topics.STATUS, job, ended(2))
    reasons = {e.task: e.body["reason"] for e in statuses if e.body["state"] == "failed"}
    assert "unknown component 'no_such'" in reasons["x"]
    assert "parties: Field required" in reasons["y"]


async def test_a_step_that_dies_without_reporting_fails_with_exit_code_and_stderr(
    workers: tuple[Worker, Worker], buses: tuple[Bus, Bus], tmp_path: Path
) -> None:
    bus_a, _ = buses
    job = uuid.uuid4().hex
    await bus_a.publish(topics.TASKS, task_run(job, "crash", "te_exit", "guest", GUEST, tmp_path))
    done = final(await collect(bus_a, topics.STATUS, job, ended())).body
    reason = done["reason"]
    assert done["code"] == "step_crashed"
    assert reason.startswith("step process exited with code 3")
    assert "native library exploded" in reason


TIMEOUT_S = 20


async def test_steps_over_their_timeout_are_killed_with_their_process_group(
    kafka: Broker, buses: tuple[Bus, Bus], tmp_path: Path
) -> None:
    """Also: with worker_concurrency=1 the second step starts only after the first has ended.

    The timeout must cover a sandboxed step's start-up on a busy machine (it was 2 s, and a step
    still starting was killed before it wrote its pids)."""
    bus_a, _ = buses
    job = uuid.uuid4().hex
    settings = {"task_timeout_s": TIMEOUT_S, "worker_concurrency": 1}
    async with running_worker(kafka, "30000", tmp_path, **settings) as worker:
        for step in ("slow1", "slow2"):
            args = {"pid_file": str(tmp_path / "30000" / job / step / "pids")}
            await bus_a.publish(
                topics.TASKS, task_run(job, step, "te_sleep", "guest", "30000", tmp_path, args=args)
            )
        statuses = await collect(bus_a, topics.STATUS, job, ended(2))
        assert worker.running == []
    order = [(e.task, e.body["state"]) for e in statuses]
    assert order == [
        ("slow1", "running"),
        ("slow1", "timeout"),
        ("slow2", "running"),
        ("slow2", "timeout"),
    ]
    for env in statuses[1::2]:
        assert env.body["reason"] == f"step timed out after {TIMEOUT_S} s and was killed"
    for step in ("slow1", "slow2"):
        assert read(str(tmp_path / "30000" / job / step / "pids"))  # it did start
        assert processes_in(work_dir(tmp_path, "30000", job, step)) == []


async def test_shutdown_kills_running_steps_and_reports_them(
    kafka: Broker, buses: tuple[Bus, Bus], tmp_path: Path
) -> None:
    bus_a, _ = buses
    job = uuid.uuid4().hex
    pid_file = tmp_path / "40000" / job / "long" / "pids"  # in the step's output dir
    async with running_worker(kafka, "40000", tmp_path) as worker:
        await bus_a.publish(
            topics.TASKS,
            task_run(
                job,
                "long",
                "te_sleep",
                "guest",
                "40000",
                tmp_path,
                args={"pid_file": str(pid_file)},
            ),
        )
        await collect(bus_a, topics.STATUS, job, lambda es: len(es) >= 1)
        port = worker.settings.task_engine_port
        async with httpx.AsyncClient() as client:
            health = (await client.get(f"http://127.0.0.1:{port}/health")).json()
        assert health["party"] == "40000"
        assert [(s["job_id"], s["task"]) for s in health["running"]] == [(job, "long")]
        for _ in range(100):
            if pid_file.exists() and pid_file.read_text():
                break
            await asyncio.sleep(0.05)
        assert len(processes_in(work_dir(tmp_path, "40000", job, "long"))) >= 2
        await worker.shutdown()
        await worker.shutdown()  # idempotent
    statuses = await collect(bus_a, topics.STATUS, job, ended())
    assert final(statuses).body == {
        "party": "40000",
        "state": "failed",
        "reason": "worker stopped",
        "code": "stopped",
        "outputs": {},
        "attempt": 1,
    }
    assert processes_in(work_dir(tmp_path, "40000", job, "long")) == []


async def test_the_service_entry_point_serves_health_and_stops_on_sigterm(
    kafka: Broker, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PARTY_ID": "50000",
        "KAFKA_BOOTSTRAP": kafka.bootstrap,
        "TASK_ENGINE_PORT": str(port),
        "STATE_DIR": str(tmp_path),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "task_engine", env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                try:
                    response = await client.get(f"http://127.0.0.1:{port}/health")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("the task_engine health endpoint never answered")
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "party": "50000", "running": []}
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, stderr.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_busy_health_port_is_a_plain_error_and_shutdown_is_safe(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        config = PartySettings(
            party_id="60000",
            kafka_bootstrap="127.0.0.1:1",  # never reached: the port is checked first
            state_dir=tmp_path,
            task_engine_port=taken.getsockname()[1],
        )
        worker = Worker(config)
        with pytest.raises(OSError):
            await worker.run()
    await worker.shutdown()
    await worker.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        await worker.run()


def _control(kind: str, job: str, party: str, **body: Any) -> Envelope:
    return Envelope(type=kind, job_id=job, src=party, dst=party, body=body)


def _ticks(path: Path) -> int:
    text = path.read_text() if path.exists() else ""
    return int(text) if text else 0


async def test_control_pauses_resumes_and_stops_a_jobs_steps(
    workers: tuple[Worker, Worker], buses: tuple[Bus, Bus], tmp_path: Path
) -> None:
    """fl.control: pause freezes every process of the step (its ticks stop, and its timeout
    clock), resume lets it go on, stop kills it and reports ``canceled``."""
    guest, _ = workers
    bus_a, _ = buses
    job = uuid.uuid4().hex
    ticks = tmp_path / GUEST / job / "tick" / "ticks"  # in the step's (writable) output dir
    await bus_a.publish(
        topics.TASKS,
        task_run(job, "tick", "te_tick", "guest", GUEST, tmp_path, args={"tick_file": str(ticks)}),
    )
    await collect(bus_a, topics.STATUS, job, lambda es: len(es) >= 1)
    for _ in range(200):
        if _ticks(ticks) >= 3:
            break
        await asyncio.sleep(0.05)
    await bus_a.publish(topics.CONTROL, _control("job.pause", job, GUEST))
    for _ in range(200):
        if any(s["job_id"] == job and s["suspended"] for s in guest.running):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    frozen = _ticks(ticks)
    await asyncio.sleep(0.8)
    assert _ticks(ticks) == frozen  # nothing of the step runs while paused
    await bus_a.publish(topics.CONTROL, _control("job.resume", job, GUEST))
    for _ in range(200):
        if _ticks(ticks) > frozen + 2:
            break
        await asyncio.sleep(0.05)
    assert _ticks(ticks) > frozen + 2
    await bus_a.publish(topics.CONTROL, _control("job.stop", job, GUEST, reason="stopped by x"))
    statuses = await collect(bus_a, topics.STATUS, job, ended())
    assert final(statuses).body["state"] == "canceled"
    assert final(statuses).body["reason"] == "stopped by x"
    assert [s for s in guest.running if s["job_id"] == job] == []
    assert processes_in(Path(guest.settings.state_dir) / "work" / job / "tick" / "1") == []
    # a task.run of the stopped job still in flight is not run
    late = task_run(job, "tick2", "te_tick", "guest", GUEST, tmp_path, args={"tick_file": "x"})
    late.ts = statuses[0].ts - 1
    await bus_a.publish(topics.TASKS, late)
    statuses = await collect(
        bus_a, topics.STATUS, job, lambda es: any(e.task == "tick2" for e in es)
    )
    assert [e.body["state"] for e in statuses if e.task == "tick2"] == ["canceled"]


async def test_a_steps_own_timeout_ends_it_as_timeout(
    workers: tuple[Worker, Worker], buses: tuple[Bus, Bus], tmp_path: Path
) -> None:
    bus_a, _ = buses
    job = uuid.uuid4().hex
    args = {"tick_file": str(tmp_path / GUEST / job / "tick" / "t"), "timeout": 1}
    await bus_a.publish(
        topics.TASKS, task_run(job, "tick", "te_tick", "guest", GUEST, tmp_path, args=args)
    )
    done = final(await collect(bus_a, topics.STATUS, job, ended()))
    assert done.body["state"] == "timeout"
    assert done.body["reason"] == "step timed out after 1 s and was killed"
