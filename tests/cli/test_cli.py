"""The ``tessera`` CLI (typer's CliRunner) against a real flow_server and task_engine of one party
on the real Kafka broker, with ``REQUIRE_API_TOKEN=1``: token create, pipeline upload, data
upload/list, job submit/status/watch (a job that succeeds and one that fails), model
import/list/export, and the error messages."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from brokers import free_port
from tessera.cli import app
from tessera.sdk import Tessera

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
# a party id of its own: its consumer groups and fl.tasks runs never meet other tests' on the
# shared broker
PARTY = "30000"

PIPELINE = """\
name: eval-only
steps:
  - name: evaluate
    component: evaluation
    inputs: {predictions: $predictions}
"""


@dataclass
class Party:
    env_file: Path
    url: str
    root: Path
    token: str = ""

    def run(self, *args: str, token: bool = True) -> Any:
        env = {"TESSERA_URL": self.url, "TESSERA_TOKEN": self.token if token else ""}
        return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


def _wait_healthy(url: str, procs: list[subprocess.Popen[bytes]], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), log.read_text()
        try:
            if httpx.get(f"{url}/flow-server/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"the flow_server did not come up: {log.read_text()}")


@pytest.fixture(scope="module")
def party(kafka: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Party]:
    root = tmp_path_factory.mktemp("cli")
    port = free_port()
    env_file = root / "party.env"
    env_file.write_text(
        f"PARTY_ID={PARTY}\nKAFKA_BOOTSTRAP={kafka.bootstrap}\nFLOW_SERVER_PORT={port}\n"
        f"TASK_ENGINE_PORT={free_port()}\nSTATE_DIR={root / 'state'}\nSTEP_RUNTIME=process\n"
        f"DATA_ROOTS={root}\nREQUIRE_API_TOKEN=1\n"
        "OTHER_PARTIES=40000\nPARTY_MQ_HTTP_URL_40000=http://127.0.0.1:9\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    log_path = root / "services.log"
    log = log_path.open("wb")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", module, "--env-file", str(env_file)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for module in ("flow_server", "task_engine")
    ]
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, procs, log_path)
        yield Party(env_file, url, root)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        log.close()


@pytest.fixture(scope="module")
def authed(party: Party) -> Party:
    result = party.run("token", "create", "--env-file", str(party.env_file), "--name", "ci")
    assert result.exit_code == 0, result.output
    party.token = result.stdout.strip().splitlines()[0]
    assert party.token.startswith("tsr_")
    return party


def test_without_a_token_the_server_refuses(party: Party) -> None:
    result = party.run("data", "list", token=False)
    assert result.exit_code == 1
    assert "requires an API token" in result.stderr
    assert "token_required" in result.stderr
    assert "Traceback" not in result.output
    r = httpx.get(f"{party.url}/flow-server/health")
    assert r.status_code == 200  # health needs no token
    r = httpx.get(f"{party.url}/flow-server/jobs", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["code"] == "invalid_token"


def test_token_create_stores_only_a_hash(authed: Party) -> None:
    db = authed.root / "state" / "flow_server.db"
    assert authed.token.encode() not in db.read_bytes()
    r = httpx.get(
        f"{authed.url}/flow-server/jobs", headers={"Authorization": f"Bearer {authed.token}"}
    )
    assert r.status_code == 200


def _predictions(path: Path, *, with_score: bool = True) -> Path:
    lines = ["id,y,score" if with_score else "id,y"]
    for i in range(60):
        y = i % 2
        lines.append(f"{i},{y},{(0.3 + 0.4 * y + (i % 7) / 20):.3f}" if with_score else f"{i},{y}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _job_yaml(path: Path, table: str, out: Path) -> Path:
    path.write_text(
        f'parties: ["{PARTY}=guest"]\nparties-args:\n  {PARTY}: {{predictions: "table:{table}", '
        f"output: {out}}}\n"
    )
    return path


def test_pipeline_data_and_a_job_that_succeeds(authed: Party) -> None:
    root = authed.root
    (root / "pipeline.yaml").write_text(PIPELINE)
    result = authed.run("pipeline", "upload", str(root / "pipeline.yaml"), "--json")
    assert result.exit_code == 0, result.output
    pipeline_id = json.loads(result.stdout)["pipeline_id"]

    result = authed.run("data", "upload", str(_predictions(root / "preds.csv")), "--name", "preds")
    assert result.exit_code == 0, result.output
    assert "60 rows" in result.stdout and "label: y" in result.stdout
    result = authed.run("data", "list")
    assert result.exit_code == 0 and "preds" in result.stdout

    job_file = _job_yaml(root / "job.yaml", "preds", root / "out")
    result = authed.run("job", "submit", pipeline_id, str(job_file))
    assert result.exit_code == 0, result.output
    job_id = result.stdout.strip()
    result = authed.run("job", "watch", job_id, "--interval", "0.5", "--timeout", "120")
    assert result.exit_code == 0, result.output
    assert f"job {job_id} succeeded" in result.stdout
    assert "steps done" in result.stdout  # the progress lines
    result = authed.run("job", "status", job_id)
    assert result.exit_code == 0
    assert "state: success" in result.stdout and f"{PARTY}=success" in result.stdout
    result = authed.run("job", "list", "--state", "success")
    assert job_id in result.stdout
    # a job that ended cannot be paused: the server's reason, exit 1
    result = authed.run("job", "pause", job_id)
    assert result.exit_code == 1 and "HTTP 409" in result.stderr, result.output


def test_a_failing_job_makes_watch_exit_non_zero(authed: Party) -> None:
    root = authed.root
    authed.run("data", "upload", str(_predictions(root / "bad.csv", with_score=False)))
    job_file = _job_yaml(root / "job-bad.yaml", "bad", root / "out")
    (root / "p2.yaml").write_text(PIPELINE)
    # submit takes a pipeline.yaml as well as an id; --watch follows the job
    result = authed.run(
        "job",
        "submit",
        str(root / "p2.yaml"),
        str(job_file),
        "--watch",
        "--interval",
        "0.5",
        "--timeout",
        "120",
    )
    assert result.exit_code == 1, result.output
    assert "ended failed" in result.stderr and "score" in result.stderr


def test_error_messages(authed: Party) -> None:
    result = authed.run("job", "status", "nope")
    assert result.exit_code == 1
    assert "no job with id 'nope'" in result.stderr and "Traceback" not in result.output
    result = authed.run("job", "submit", "nope", str(authed.env_file))
    assert result.exit_code == 1 and "pipeline" in result.stderr
    result = authed.run("pipeline", "upload", str(authed.root / "missing.yaml"))
    assert result.exit_code == 2 and "missing.yaml" in result.stderr
    result = authed.run("data", "upload", str(authed.root / "missing.csv"))
    assert result.exit_code == 2
    bad = authed.root / "bad-pipeline.yaml"
    bad.write_text("name: x\nsteps: []\n")
    result = authed.run("pipeline", "upload", str(bad))
    assert result.exit_code == 1 and "steps" in result.stderr
    result = CliRunner().invoke(
        app, ["job", "status", "x", "--url", f"http://127.0.0.1:{free_port()}"], env={}
    )
    assert result.exit_code == 2 and "cannot reach" in result.stderr
    result = authed.run("token", "create", "--env-file", str(authed.root / "nope.env"))
    assert result.exit_code == 2 and "nope.env" in result.stderr


def _archive(model: bytes) -> bytes:
    meta = {
        "format": "tessera-model/1",
        "model_id": "original",
        "job_id": "j1",
        "step": "train",
        "party_id": "10000",
        "role": "guest",
        "component": "hetero_lr",
        "parameters": {"max-iter": 5},
        "metrics": {"auc": 0.9},
        "created_ms": 1,
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("metadata.json", json.dumps(meta).encode()), ("model", model)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_model_import_list_and_export(authed: Party) -> None:
    root = authed.root
    archive = root / "in.tar.gz"
    archive.write_bytes(_archive(b'{"component": "hetero_lr", "weights": [1, 2]}'))
    result = authed.run("model", "import", str(archive))
    assert result.exit_code == 0, result.output
    model_id = result.stdout.split()[0]
    result = authed.run("model", "list")
    assert result.exit_code == 0
    assert model_id in result.stdout and "auc=0.9" in result.stdout
    out = root / "exported.tar.gz"
    result = authed.run("model", "export", model_id, "-o", str(out))
    assert result.exit_code == 0, result.output
    with tarfile.open(out) as tar:
        model = tar.extractfile("model")
        assert model is not None and b"weights" in model.read()
        meta_file = tar.extractfile("metadata.json")
        assert meta_file is not None
        meta = json.loads(meta_file.read())
    assert (meta["model_id"], meta["component"], meta["metrics"]) == (
        model_id,
        "hetero_lr",
        {"auc": 0.9},
    )
    result = authed.run("model", "export", "nope", "-o", str(root / "x.tar.gz"))
    assert result.exit_code == 1 and "no model with id 'nope'" in result.stderr
    assert not (root / "x.tar.gz").exists() and not (root / "x.tar.gz.part").exists()


def test_transfers_report_their_progress(authed: Party) -> None:
    """The SDK tells a progress callback every byte it uploads or exports (the CLI's bars)."""
    root = authed.root
    csv_file = _predictions(root / "progress.csv")
    uploaded: list[int] = []
    with Tessera(authed.url, token=authed.token) as t:
        table = t.upload_table(csv_file, name="progress", progress=uploaded.append)
        assert table.rows == 60
        archive = root / "progress.tar.gz"
        archive.write_bytes(_archive(b'{"component": "hetero_lr", "weights": [3]}'))
        model_id = t.import_model(archive).model_id
        sizes: list[int | None] = []
        exported: list[int] = []
        out = root / "progress-out.tar.gz"
        t.export_model(model_id, out, progress=exported.append, on_size=sizes.append)
    assert sum(uploaded) == csv_file.stat().st_size
    assert sum(exported) == out.stat().st_size > 0
    assert sizes in ([out.stat().st_size], [None])


def test_version_and_the_local_stack_commands(party: Party) -> None:
    result = party.run("--version")
    assert result.exit_code == 0 and result.stdout.startswith("tessera ")
    result = party.run("status", str(party.env_file))
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.stdout.splitlines()]
    services = {row[1] for row in lines if row and row[0] == PARTY}
    assert {"flow_server", "task_engine", "federation_bridge", "dashboard"} <= services


def test_grant_add_list_revoke_and_the_decisions(authed: Party) -> None:
    data = authed.root / "granted"
    data.mkdir(exist_ok=True)
    result = authed.run(
        "grant", "add", "40000", "--path", str(data), "--as", "guest",
        "--component", "intersect", "--expires-in", "30d", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    grant = json.loads(result.stdout)
    assert (grant["peer"], grant["role"], grant["components"]) == ("40000", "guest", ["intersect"])
    assert grant["state"] == "active" and grant["created_by"] == "ci"  # the token's name
    assert grant["expires_ms"] > time.time() * 1000 + 29 * 86400 * 1000
    listed = authed.run("grant", "list", "--peer", "40000")
    assert grant["grant_id"] in listed.stdout and "as guest" in listed.stdout
    revoked = authed.run("grant", "revoke", grant["grant_id"])
    assert revoked.exit_code == 0 and revoked.stdout.rstrip().endswith("revoked")
    assert grant["grant_id"] not in authed.run("grant", "list", "--active").stdout
    bad = authed.run("grant", "add", "40000", "--path", "relative/dir")
    assert bad.exit_code == 1 and "not an absolute path" in bad.stderr
    unknown = authed.run("grant", "add", "50000", "--path", str(data))
    assert unknown.exit_code == 1 and "not a peer" in unknown.stderr
    expiry = authed.run("grant", "add", "40000", "--path", str(data), "--expires-in", "soon")
    assert expiry.exit_code == 2 and "--expires-in" in expiry.stderr
    assert authed.run("decision", "list").exit_code == 0


def test_approving_a_job_that_waits_for_nobody_is_refused(authed: Party) -> None:
    result = authed.run("job", "approve", "no-such-job")
    assert result.exit_code == 1 and "job_not_found" in result.stderr


def test_component_list_and_show_give_the_declared_parameters(authed: Party) -> None:
    result = authed.run("component", "list")
    assert result.exit_code == 0, result.output
    names = [line.split("\t")[0] for line in result.stdout.splitlines()]
    assert {"intersect", "hetero_lr", "hetero_secureboost", "predict"} <= set(names)
    result = authed.run("component", "show", "hetero_lr")
    assert result.exit_code == 0, result.output
    assert "roles: guest, host" in result.stdout
    assert "  key-bits\tinteger\tdefault 2048; one of 1024, 2048\t" in result.stdout
    assert "  max-iter\tinteger\tdefault 30; >= 1, <= 10000\t" in result.stdout
    result = authed.run("component", "show", "hetero_lr", "--json")
    shown = json.loads(result.stdout)
    assert {p["name"] for p in shown["parameters"]} >= {"learning-rate", "batch-size"}
    result = authed.run("component", "show", "nope")
    assert result.exit_code == 1 and "no component with id 'nope'" in result.stderr


def test_a_misspelt_argument_is_refused_with_the_valid_names(authed: Party) -> None:
    bad = authed.root / "misspelt.yaml"
    bad.write_text(PIPELINE + "    args: {treshold: 0.4}\n")
    result = authed.run("pipeline", "upload", str(bad))
    assert result.exit_code == 1
    assert "step 'evaluate' (evaluation) takes no argument 'treshold'" in result.stderr
    assert "did you mean 'threshold'?" in result.stderr and "unknown_arg" in result.stderr
