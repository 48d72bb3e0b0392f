"""``/data`` on SQLite and PostgreSQL with the real Kafka broker: upload (multipart and raw),
register a path, schema detection, list/show/delete, bad input, and ``table:`` references in a
submitted job."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flow_helpers import CATALOG, PIPELINE, Databases

from fedcore.settings import PartySettings
from flow_server.app import create_app
from flow_server.datasets import detect_schema

pytestmark = pytest.mark.kafka

BASE = "http://127.0.0.1:9380/flow-server"  # the Host a loopback flow_server answers

GUEST = "id,y,x0,x1,city\n" + "".join(
    f"{i},{i % 2},{i * 0.5},{i},{'ab'[i % 2]}\n" for i in range(25)
)


@pytest.fixture(scope="module")
async def env(
    kafka: Any, module_databases: Databases, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[httpx.AsyncClient, Path]]:
    root = tmp_path_factory.mktemp("flow_data")
    settings = PartySettings(
        party_id="10000",
        kafka_bootstrap=kafka.bootstrap,
        peers={"20000": "http://127.0.0.1:9"},
        state_dir=root / "state",
        database_url=module_databases.new("data"),
    )
    app = create_app(settings, catalog=CATALOG)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            yield client, root


def _read(path: str) -> str:
    return Path(path).read_text()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _exists(path: str | Path) -> bool:
    return Path(path).exists()


def _files(root: Path) -> set[Path]:
    data = root / "state" / "data"
    return set(data.glob("*")) if data.exists() else set()


def test_detect_schema() -> None:
    rows = [["ID", "label", "age", "city"], ["a", "1", "3", "x"], ["b", "0", "", "y"]]
    schema = detect_schema(rows)
    assert schema.id_column == "ID"
    assert schema.label_column == "label"
    assert schema.columns == {"ID": "id", "label": "label", "age": "numeric", "city": "categorical"}
    # no id column by name: the first; a 'y' that is not 0/1 is a feature
    schema = detect_schema([["key", "y"], ["1", "2.5"], ["2", "3"]])
    assert (schema.id_column, schema.label_column) == ("key", None)
    assert schema.columns["y"] == "numeric"


async def test_upload_multipart_detects_the_schema(env: Any) -> None:
    client, _ = env
    r = await client.post("/data", files={"file": ("guest-a.csv", GUEST.encode(), "text/csv")})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "guest-a"
    assert body["source"] == "upload"
    assert body["rows"] == 25
    assert body["size_bytes"] == len(GUEST.encode())
    assert body["id_column"] == "id"
    assert body["label_column"] == "y"
    assert body["columns"] == {
        "id": "id",
        "y": "label",
        "x0": "numeric",
        "x1": "numeric",
        "city": "categorical",
    }
    assert body["preview"]["header"] == ["id", "y", "x0", "x1", "city"]
    assert len(body["preview"]["rows"]) == 10
    assert _read(body["path"]) == GUEST
    r = await client.get(f"/data/{body['table_id']}")
    assert r.status_code == 200
    assert r.json()["rows"] == 25


async def test_upload_raw_body_without_trailing_newline(env: Any) -> None:
    client, _ = env
    text = "id,x\n1,2\n3,4"
    r = await client.post(
        "/data", params={"name": "raw-a"}, content=text, headers={"content-type": "text/csv"}
    )
    assert r.status_code == 201, r.text
    assert (r.json()["rows"], r.json()["label_column"]) == (2, None)


async def test_register_a_path_list_and_delete(env: Any) -> None:
    client, root = env
    path = _write(root / "host.csv", "id,x1\n1,0.2\n2,0.3\n")
    r = await client.post("/data", json={"path": str(path), "name": "host-a"})
    assert r.status_code == 201, r.text
    table_id = r.json()["table_id"]
    assert r.json()["source"] == "path"
    r = await client.get("/data", params={"source": "path"})
    assert r.status_code == 200
    assert [t["table_id"] for t in r.json()["items"]] == [table_id]
    r = await client.get("/data", params={"limit": 1, "offset": 0})
    assert len(r.json()["items"]) == 1 and r.json()["total"] >= 2
    r = await client.delete(f"/data/{table_id}")
    assert r.status_code == 200
    assert _exists(path)  # a registered file is not ours to remove
    r = await client.get(f"/data/{table_id}")
    assert r.status_code == 404 and r.json()["code"] == "table_not_found"


async def test_deleting_an_upload_removes_its_file(env: Any) -> None:
    client, _ = env
    r = await client.post("/data", files={"file": ("gone.csv", b"id,x\n1,2\n")})
    path = r.json()["path"]
    assert _exists(path)
    assert (await client.delete(f"/data/{r.json()['table_id']}")).status_code == 200
    assert not _exists(path)


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"json": {"path": "relative.csv"}}, 422, "bad_path"),
        ({"json": {"path": "/no/such/file.csv"}}, 422, "data_not_found"),
        ({"json": {"name": "x"}}, 422, "invalid_request"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, None),
        ({"content": b"id,x\n1,2\n", "headers": {"content-type": "image/png"}}, 415, None),
        ({"files": {"other": ("a.csv", b"id\n1\n")}}, 422, "invalid_request"),
        ({"files": {"file": ("a.csv", b"")}}, 422, "bad_table"),
        ({"files": {"file": ("a.csv", b"id,x\n1,2,3\n")}}, 422, "bad_table"),
        ({"files": {"file": ("a.csv", b"id,id\n1,2\n")}}, 422, "bad_table"),
        ({"files": {"file": ("a.csv", b"id,x\n\xff\xfe,1\n")}}, 422, "bad_table"),
        ({"files": {"file": ("a.csv", b"id\n1\n")}, "data": {"name": "table:x"}}, 422, "bad_name"),
        ({"files": {"file": ("a.csv", b"id\n1\n")}, "data": {"name": "a\x00b"}}, 422, "bad_name"),
    ],
)
async def test_bad_input_is_a_4xx_json_error(
    env: Any, kwargs: dict[str, Any], status: int, code: str | None
) -> None:
    client, root = env
    before = _files(root)
    r = await client.post("/data", **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"code", "message", "where"}
    if code is not None:
        assert body["code"] == code
    after = _files(root)
    assert after == before  # a refused upload leaves no file behind


async def test_duplicate_name_is_a_conflict(env: Any) -> None:
    client, _ = env
    files = {"file": ("dup.csv", b"id,x\n1,2\n")}
    assert (await client.post("/data", files=files)).status_code == 201
    r = await client.post("/data", files=files)
    assert r.status_code == 409 and r.json()["code"] == "table_exists"


async def test_bad_query_parameters(env: Any) -> None:
    client, _ = env
    for params in ({"limit": 0}, {"offset": -1}, {"source": "nope"}):
        r = await client.get("/data", params=params)
        assert r.status_code == 422 and r.json()["code"] == "invalid_request"
    r = await client.delete("/data/nope")
    assert r.status_code == 404 and r.json()["code"] == "table_not_found"


async def test_a_job_names_a_registered_table(env: Any) -> None:
    client, root = env
    r = await client.post("/data", files={"file": ("guest-job.csv", GUEST.encode())})
    table_id = r.json()["table_id"]
    path = r.json()["path"]
    r = await client.post("/pipelines", files={"file": ("pipeline.yaml", PIPELINE)})
    pipeline_id = r.json()["pipeline_id"]

    def job(ref: str) -> str:
        return f"""\
parties: ["10000=guest", "20000=host"]
parties-args:
  10000: {{input: "{ref}", output: {root / "out"}}}
  20000: {{input: "table:host-on-the-host"}}
"""

    for ref in (f"table:{table_id}", "table:guest-job"):
        r = await client.post(
            f"/pipelines/{pipeline_id}/jobs", files={"parameters": ("job.yaml", job(ref))}
        )
        assert r.status_code == 201, r.text
        detail = await client.get(f"/jobs/{r.json()['job_id']}")
        assert detail.status_code == 200
    r = await client.post(
        f"/pipelines/{pipeline_id}/jobs", files={"parameters": ("job.yaml", job("table:nope"))}
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "table_not_found"
    assert r.json()["where"] == "parties-args.10000.input"
    assert path  # the resolved path is what the job stores; see test_flow_refs for the args
