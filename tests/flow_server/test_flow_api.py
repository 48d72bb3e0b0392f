"""The REST API on SQLite and on PostgreSQL, with the real Kafka broker: upload, submit, propose,
run to success."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from flow_helpers import CATALOG, EXAMPLES, PIPELINE, Databases, job_yaml

from fedcore import topics
from fedcore.bus import Bus
from fedcore.envelope import Envelope, new_id
from fedcore.settings import PartySettings
from flow_server.app import create_app

pytestmark = pytest.mark.kafka

BASE = "http://127.0.0.1:9380/flow-server"  # the Host a loopback flow_server answers


@pytest.fixture(scope="module")
async def env(
    kafka: Any, module_databases: Databases, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Any]:
    """The app on a fresh database: the module runs once on SQLite, once on PostgreSQL."""
    root = tmp_path_factory.mktemp("flow_api")
    settings = PartySettings(
        party_id="10000",
        kafka_bootstrap=kafka.bootstrap,
        peers={"20000": "http://127.0.0.1:9"},
        state_dir=root / "state",
        database_url=module_databases.new("api"),
    )
    app = create_app(settings, catalog=CATALOG)
    bus = Bus(kafka.bootstrap, client_id="flow-api-test")
    async with app.router.lifespan_context(app), bus:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            yield client, bus, root


async def next_record(
    bus: Bus, topic: str, match: Callable[[Envelope], bool], since_ms: int, timeout_s: float = 30
) -> Envelope:
    """The first envelope on ``topic`` since ``since_ms`` that matches."""

    async def scan() -> Envelope:
        # a consumer group, not a time-based assignment, which can miss partitions of new topics
        async with bus.subscribe([topic], group_id=f"test-scan-{new_id()}") as sub:
            async for e in sub:
                if e.ts * 1000 >= since_ms and match(e):
                    return e
        raise AssertionError("the subscription ended")

    return await asyncio.wait_for(scan(), timeout_s)


def files(root: Path) -> tuple[Path, Path]:
    guest, host = root / "guest.csv", root / "host.csv"
    guest.write_text("id,y\n1,0\n")
    host.write_text("id,x\n1,2\n")
    return guest, host


async def upload(client: httpx.AsyncClient, text: str | bytes = PIPELINE) -> str:
    r = await client.post("/pipelines", files={"file": ("pipeline.yaml", text)})
    assert r.status_code == 201, r.text
    return str(r.json()["pipeline_id"])


async def test_health(env: Any) -> None:
    client, _, _ = env
    r = await client.get("/health")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok", "party_id": "10000", "consumer": "running"}


async def test_upload_list_and_read_pipelines(env: Any) -> None:
    client, _, _ = env
    pid = await upload(client, (EXAMPLES / "pipeline.yaml").read_bytes())
    r = await client.get("/pipelines")
    assert r.status_code == 200
    assert pid in [p["pipeline_id"] for p in r.json()["items"]]
    r = await client.get(f"/pipelines/{pid}")
    assert r.status_code == 200
    body = r.json()
    assert body["name"] == "hetero-lr"
    assert body["steps"] == ["intersect", "scale", "train", "evaluate"]
    assert "hetero_lr" in body["yaml"]


async def test_unknown_ids_are_404(env: Any) -> None:
    client, _, _ = env
    r = await client.get("/pipelines/nope")
    assert r.status_code == 404
    assert r.json() == {
        "code": "pipeline_not_found",
        "message": "no pipeline with id 'nope'",
        "where": None,
    }
    r = await client.post(
        "/pipelines/nope/jobs", files={"parameters": ("job.yaml", job_yaml("a", "b", "c"))}
    )
    assert r.status_code == 404 and r.json()["code"] == "pipeline_not_found"
    r = await client.get("/jobs/nope")
    assert r.status_code == 404 and r.json()["code"] == "job_not_found"
    r = await client.get("/no/such/route")
    assert r.status_code == 404 and r.json()["code"] == "not_found"


@pytest.mark.parametrize(
    ("text", "status", "code", "where"),
    [
        ("", 400, "empty_file", None),
        ("name: x\nsteps: [\n", 400, "malformed_yaml", "line 3, column 1"),
        ("name: x\n", 422, "missing_key", None),
        (
            "name: x\nsteps:\n  - {name: a, component: nope, inputs: {data: $input}}\n",
            422,
            "unknown_component",
            "steps[0].component",
        ),
        (PIPELINE + PIPELINE.split("steps:\n")[1], 422, "duplicate_step", "steps[3].name"),
        (
            PIPELINE.replace("$input", "evaluate.metrics"),
            422,
            "dependency_cycle",
            "steps",
        ),
        (PIPELINE.replace("train.predictions", "train.nope"), 422, "unknown_output", None),
        # bounds: aliases, depth, size
        (PIPELINE + "a: &x [1]\nb: *x\n", 400, "malformed_yaml", "line 13, column 4"),
        (PIPELINE + "deep: " + "[" * 30 + "]" * 30 + "\n", 400, "malformed_yaml", None),
        (PIPELINE + "#" * 300_000, 413, "document_too_large", None),
        (PIPELINE.replace("max-iter: 5", "max-iter: !!binary aGk="), 422, "invalid_value", None),
    ],
)
async def test_bad_pipelines_are_4xx(
    env: Any, text: str, status: int, code: str, where: str | None
) -> None:
    client, _, _ = env
    r = await client.post("/pipelines", files={"file": ("pipeline.yaml", text)})
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code
    assert body["message"]
    if where is not None:
        assert body["where"] == where


async def test_a_request_without_the_file_field(env: Any) -> None:
    client, _, _ = env
    r = await client.post("/pipelines", files={"upload": ("pipeline.yaml", PIPELINE)})
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_request" and "file" in r.json()["message"]
    pid = await upload(client)
    r = await client.post(f"/pipelines/{pid}/jobs", files={"file": ("job.yaml", "x")})
    assert r.status_code == 422 and "parameters" in r.json()["message"]


@pytest.mark.parametrize(
    ("change", "code", "where"),
    [
        (lambda t: "", "empty_file", None),
        (lambda t: t + "  [", "malformed_yaml", None),
        (lambda t: t.replace('"20000=host"', '"20000:host"'), "bad_party_spec", "parties[1]"),
        (
            lambda t: t.replace("10000=guest", "30000=guest").replace("10000:", "30000:"),
            "party_not_in_job",
            "parties",
        ),
        (lambda t: t.split("  20000:")[0], "missing_party_args", "parties-args"),
        (lambda t: t.replace("10000=guest", "10000=host"), "missing_role", "parties"),
        (lambda t: t.replace("input:", "runtime-image:"), "missing_arg", "parties-args.10000"),
        (lambda t: t.replace("input:", "inp:"), "unknown_arg", "parties-args.10000.inp"),
        (lambda t: t.replace("max-iter: 30", "max-iter: 0"), "invalid_arg", "common-args.max-iter"),
        (
            lambda t: t.replace("guest.csv", "missing.csv"),
            "data_not_found",
            "parties-args.10000.input",
        ),
    ],
)
async def test_bad_jobs_are_4xx(
    env: Any, change: Callable[[str], str], code: str, where: str | None
) -> None:
    client, _, root = env
    guest, host = files(root)
    pid = await upload(client)
    text = change(job_yaml(guest, host, root / "out"))
    r = await client.post(f"/pipelines/{pid}/jobs", files={"parameters": ("job.yaml", text)})
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["code"] == code, r.text
    if where is not None:
        assert r.json()["where"] == where


async def test_submit_proposes_with_only_the_hosts_args(env: Any) -> None:
    client, bus, root = env
    guest, host = files(root)
    pid = await upload(client)
    since = int(time.time() * 1000) - 1000
    r = await client.post(
        f"/pipelines/{pid}/jobs",
        files={"parameters": ("job.yaml", job_yaml(guest, host, root / "out"))},
    )
    assert r.status_code == 201, r.text
    job_id = r.json()["job_id"]
    assert r.json()["status"] == "waiting"
    propose = await next_record(
        bus, topics.OUT_CTL, lambda e: e.job_id == job_id and e.type == "job.propose", since
    )
    assert (propose.src, propose.dst) == ("10000", "20000")
    body = propose.body
    assert body["party_args"] == {
        "input": str(host),
        "output": str(root / "out"),
        "hadoop-config": "/etc/hadoop",
    }
    assert str(guest).encode() not in propose.to_bytes()  # the guest's args stay home
    assert body["parties"] == ["10000=guest", "20000=host"]
    assert body["common_args"]["max-iter"] == 30
    assert body["initiator"] == "10000" and body["pipeline_name"] == "hetero-lr"
    assert body["pipeline"] == PIPELINE
    r = await client.get(f"/jobs/{job_id}")
    assert r.status_code == 200
    view = r.json()
    assert view["state"] == "waiting" and view["initiator"] == "10000"
    assert view["roles"] == {"guest": ["10000"], "host": ["20000"]}
    assert [m["answer"] for m in view["members"]] == ["accepted", "pending"]


async def wait_state(client: httpx.AsyncClient, job_id: str, state: str) -> dict[str, Any]:
    for _ in range(300):
        view: dict[str, Any] = (await client.get(f"/jobs/{job_id}")).json()
        if view["state"] == state:
            return view
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} is {view['state']}, never {state}: {view}")


async def test_a_job_runs_to_success_over_kafka(env: Any) -> None:
    """This party's flow_server on the real broker; the host and task engine are played here."""
    client, bus, root = env
    guest, host = files(root)
    pid = await upload(client)
    since = int(time.time() * 1000) - 1000
    r = await client.post(
        f"/pipelines/{pid}/jobs",
        files={"parameters": ("job.yaml", job_yaml(guest, host, root / "out"))},
    )
    job_id = r.json()["job_id"]

    def mine(kind: str, step: str | None = None) -> Callable[[Envelope], bool]:
        return lambda e: e.job_id == job_id and e.type == kind and (step is None or e.task == step)

    await bus.publish(
        topics.IN_CTL, Envelope(type="job.accept", job_id=job_id, src="20000", dst="10000")
    )
    start = await next_record(bus, topics.OUT_CTL, mine("job.start"), since)
    assert start.dst == "20000"
    for step in ("intersect", "train", "evaluate"):
        run = await next_record(bus, topics.TASKS, mine("task.run", step), since)
        assert run.body["party_id"] == "10000" and run.body["role"] == "guest"
        out = run.body["output_dir"]
        assert out == f"{root / 'out'}/{job_id}/10000/{step}"
        for state in ("running", "success"):
            await bus.publish(
                topics.STATUS,
                Envelope(
                    type="task.status",
                    job_id=job_id,
                    task=step,
                    src="10000",
                    body={
                        "party": "10000",
                        "state": state,
                        "outputs": {"data": f"{out}/data", "predictions": f"{out}/p"},
                    },
                ),
            )
        forwarded = await next_record(bus, topics.OUT_CTL, mine("task.status", step), since)
        assert forwarded.dst == "20000" and forwarded.body["party"] == "10000"
        assert "outputs" not in forwarded.body  # paths stay home
        if step != "evaluate":
            await bus.publish(
                topics.IN_CTL,
                Envelope(
                    type="task.status",
                    job_id=job_id,
                    task=step,
                    src="20000",
                    dst="10000",
                    body={"party": "20000", "state": "success"},
                ),
            )
    view = await wait_state(client, job_id, "success")
    assert [(s["name"], [t["state"] for t in s["tasks"]]) for s in view["steps"]] == [
        ("intersect", ["success", "success"]),
        ("train", ["success", "success"]),
        ("evaluate", ["success"]),
    ]
    train = await next_record(bus, topics.TASKS, mine("task.run", "train"), since)
    assert train.body["inputs"] == {"data": f"{root / 'out'}/{job_id}/10000/intersect/data"}
    announced = await next_record(
        bus, topics.STATUS, lambda e: mine("job.status")(e) and e.body["state"] == "success", since
    )
    assert announced.body["steps"] == ["intersect", "train", "evaluate"]
    assert announced.body["depends"] == {
        "intersect": [],
        "train": ["intersect"],
        "evaluate": ["train"],
    }
    assert announced.body["components"]["train"] == "hetero_lr"
    assert announced.body["initiator"] == "10000"

    r = await client.get("/jobs", params={"state": "success"})
    assert r.status_code == 200 and job_id in [j["job_id"] for j in r.json()["items"]]
    r = await client.get("/jobs", params={"limit": 1})
    assert len(r.json()["items"]) == 1 and r.json()["total"] >= 2
    for route in ("/jobs", "/pipelines", "/data", "/models"):  # Schemathesis found a 500 here
        r = await client.get(route, params={"offset": 2**80})
        assert r.status_code == 422 and r.json()["where"] == "query.offset", route
    r = await client.get("/jobs", params={"state": "bogus"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"


async def test_a_rejection_from_the_host(env: Any) -> None:
    client, bus, root = env
    guest, host = files(root)
    pid = await upload(client)
    r = await client.post(
        f"/pipelines/{pid}/jobs",
        files={"parameters": ("job.yaml", job_yaml(guest, host, root / "out"))},
    )
    job_id = r.json()["job_id"]
    await bus.publish(
        topics.IN_CTL,
        Envelope(
            type="job.reject",
            job_id=job_id,
            src="20000",
            dst="10000",
            body={"reason": "no such file /data/host.csv"},
        ),
    )
    view = await wait_state(client, job_id, "rejected")
    assert view["reason"] == "party 20000 rejected the job: no such file /data/host.csv"


async def test_components_list_their_declared_parameters(env: Any) -> None:
    client, _, _ = env
    r = await client.get("/components")
    assert r.status_code == 200, r.text
    listed = r.json()
    assert [c["name"] for c in listed["items"]] == sorted(CATALOG)
    assert {p["name"] for p in listed["platform_args"]} >= {"input", "output", "auto-retries"}
    r = await client.get("/components/hetero_lr")
    assert r.status_code == 200, r.text
    lr = r.json()
    assert (lr["roles"], lr["inputs"], lr["outputs"]) == (
        ["guest", "host"],
        ["data"],
        ["model", "predictions"],
    )
    params = {p["name"]: p for p in lr["parameters"]}
    assert params["max-iter"] == {
        "name": "max-iter",
        "type": "integer",
        "description": "the most epochs",
        "default": 30,
        "required": False,
        "nullable": False,
        "choices": None,
        "minimum": 1,
        "maximum": None,
        "exclusive_minimum": None,
        "exclusive_maximum": None,
    }
    assert params["key-bits"]["choices"] == [1024, 2048]
    assert params["learning-rate"]["exclusive_minimum"] == 0
    r = await client.get("/components/nope")
    assert (r.status_code, r.json()["code"]) == (404, "component_not_found")
