"""The examples' README calls (curl -F file=@..., curl -F parameters=@..., curl .../jobs/<id>),
made over plain HTTP so that the end-to-end tests run exactly what a reader runs."""

from __future__ import annotations

import io
import json
import logging
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tessera.envfiles import ROOT

log = logging.getLogger(__name__)

EXAMPLES = ROOT / "examples"
ENDED = frozenset({"success", "failed", "canceled", "timeout", "rejected"})


class ReadmeCalls:
    """One party's flow_server, called as the README's curl lines call it."""

    def __init__(self, flow_server_url: str) -> None:
        self.http = httpx.Client(base_url=flow_server_url, timeout=60.0)

    def __enter__(self) -> ReadmeCalls:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def _json(self, response: httpx.Response, status: int = 200) -> Any:
        assert response.status_code == status, f"{response.request.url}: {response.text}"
        return response.json()

    def upload_pipeline(self, path: Path) -> str:
        """``curl -F file=@pipeline.yaml .../pipelines``."""
        files = {"file": (path.name, path.read_bytes())}
        return str(self._json(self.http.post("/pipelines", files=files), 201)["pipeline_id"])

    def submit_job(self, pipeline_id: str, job_yaml: str) -> str:
        """``curl -F parameters=@job.yaml .../pipelines/<pid>/jobs``."""
        files = {"parameters": ("job.yaml", job_yaml.encode())}
        created = self.http.post(f"/pipelines/{pipeline_id}/jobs", files=files)
        return str(self._json(created, 201)["job_id"])

    def wait(self, job_id: str, timeout_s: float) -> dict[str, Any]:
        """``curl .../jobs/<id>`` until the job ended (or ``timeout_s`` passed)."""
        deadline = time.monotonic() + timeout_s
        while True:
            r = self.http.get(f"/jobs/{job_id}")
            if r.status_code == 200:
                job: dict[str, Any] = r.json()
                if job["state"] in ENDED or time.monotonic() > deadline:
                    took_s = (job["updated_ms"] - job["created_ms"]) / 1000
                    log.info("job %s: %s after %.1f s", job_id, job["state"], took_s)
                    return job
            elif r.status_code != 404 or time.monotonic() > deadline:
                raise AssertionError(f"GET /jobs/{job_id}: {r.status_code} {r.text}")
            time.sleep(0.5)

    def models(self, job_id: str, component: str | None = None) -> list[dict[str, Any]]:
        """``curl ".../models?job_id=<id>&component=<name>"``."""
        params = {"job_id": job_id, **({"component": component} if component else {})}
        items: list[dict[str, Any]] = self._json(self.http.get("/models", params=params))["items"]
        return items

    def export_model(self, model_id: str) -> bytes:
        """``curl -o model.tar.gz .../models/<id>/export``."""
        r = self.http.get(f"/models/{model_id}/export")
        assert r.status_code == 200, r.text
        return r.content

    def model_path(self, model_id: str) -> str:
        """Where this party keeps a model (``curl .../models/<id>``)."""
        return str(self._json(self.http.get(f"/models/{model_id}"))["path"])

    def grant(self, peer: str, path: str) -> None:
        """``tessera grant add <peer> --path <path> --as host`` (``POST .../grants``)."""
        body = {"peer": peer, "kind": "input", "path": path, "role": "host", "components": []}
        self._json(self.http.post("/grants", json=body), 201)

    def import_model(self, archive: bytes) -> str:
        """``curl -F file=@model.tar.gz .../models/import``."""
        files = {"file": ("model.tar.gz", archive, "application/gzip")}
        return str(self._json(self.http.post("/models/import", files=files), 201)["model_id"])


def job_yaml(example: str, party_args: dict[str, dict[str, str]]) -> str:
    """The example's job.yaml with each party's own args set (paths on this machine)."""
    job = yaml.safe_load((EXAMPLES / example / "job.yaml").read_text())
    for party, args in party_args.items():
        job["parties-args"][int(party)].update(args)
    return yaml.safe_dump(job, sort_keys=False)


def failure(job: dict[str, Any]) -> str:
    """Why a job did not succeed, from its view (for assertion messages)."""
    failed = [
        f"{s['name']}@{t['party_id']}: {t['state']} {t['reason']}"
        for s in job["steps"]
        for t in s["tasks"]
        if t["state"] != "success"
    ]
    return f"{job['state']} ({job.get('reason')}): {'; '.join(failed)}"


def archive_member(archive: bytes, name: str) -> Any:
    """A JSON member of an exported model archive."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        member = tar.extractfile(name)
        assert member is not None, f"the archive has no {name}"
        return json.loads(member.read())
