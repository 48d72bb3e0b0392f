"""A fake Kubernetes API server over real HTTP, for the Kubernetes step runtime's tests.

It serves the calls the runtime makes (Jobs create / list / watch / delete, Pods list, a Pod's log)
from memory, on a free localhost port (uvicorn in the test's event loop), to lightkube clients
configured by a kubeconfig that points at it; with a certificate it speaks HTTPS, as the in-cluster
API server does.

Like a real API server it ends every watch after a while (``watch_s``) and the client has to
resume it from the last ``resourceVersion`` it saw; a watch request whose number is in ``gone``
is answered 410 Gone (the odd ones as a status, the even ones as an ERROR event in the stream),
as when the version asked for has been compacted away; one whose number is in ``dropped`` loses
its connection after its first event (aborted: no end of the chunked body). Time is the fake's
own: the step "runs"
one minute per watch request, reports progress (a MODIFIED Job, a new version) in each, and ends
at watch request ``finishes_at`` with ``exit_code``. So a step of many minutes of the fake's
clock takes ``finishes_at * watch_s`` seconds of the test's.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from lightkube import AsyncClient, KubeConfig
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from task_engine.kubeapi import KubeApi

TOKEN = "step-runtime-token"


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    params: dict[str, str]
    authorization: str


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    """A ``meta/v1`` Status, as the API server answers errors."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class FakeApiServer:
    def __init__(
        self,
        namespace: str,
        *,
        exit_code: int = 0,
        finishes_at: int = 1,
        watch_s: float = 0.05,
        gone: frozenset[int] = frozenset(),
        dropped: frozenset[int] = frozenset(),
        pod_status: dict[str, Any] | None = None,
        forbidden: str = "",
        tokens: frozenset[str] = frozenset({TOKEN}),
    ) -> None:
        self.namespace = namespace
        self.exit_code = exit_code
        self.finishes_at = finishes_at
        self.watch_s = watch_s
        self.gone = gone
        self.dropped = dropped
        self.pod_status = pod_status or {}  # more of the step pod's status (an eviction...)
        self.forbidden = forbidden  # when set, every call is refused with this message
        self.tokens = tokens  # the bearer tokens accepted
        self.version = 100
        self.jobs: dict[str, dict[str, Any]] = {}
        self.history: dict[str, list[tuple[int, str, dict[str, Any]]]] = {}
        self.calls: list[Call] = []
        self.deleted: list[tuple[str, dict[str, str]]] = []
        self.versions_sent: list[int] = []  # the last version each watch request sent
        self.url = ""
        self._server: uvicorn.Server | None = None
        jobs = f"/apis/batch/v1/namespaces/{namespace}/jobs"
        self.app = Starlette(
            routes=[
                Route(jobs, self._jobs, methods=["GET", "POST"]),
                Route(jobs + "/{name}", self._delete, methods=["DELETE"]),
                Route(f"/api/v1/namespaces/{namespace}/pods", self._pods, methods=["GET"]),
                Route(f"/api/v1/namespaces/{namespace}/pods/{{name}}/log", self._log),
            ],
            middleware=[Middleware(BaseHTTPMiddleware, dispatch=self._guard)],
            exception_handlers={404: self._not_found},
        )

    # --- serving -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def serving(self, tls: tuple[Path, Path] | None = None) -> AsyncIterator[str]:
        """Serve on a free localhost port (HTTPS with ``tls``: certificate and key files)."""
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
            ssl_certfile=str(tls[0]) if tls else None,
            ssl_keyfile=str(tls[1]) if tls else None,
        )
        server = self._server = uvicorn.Server(config)
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        try:
            yield self.url
        finally:
            server.should_exit = True
            await task
            sock.close()

    def api(self, token: str = TOKEN) -> KubeApi:
        """The runtime's client, configured by a kubeconfig naming this server and a token."""
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "worker", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "fake",
                    "context": {"cluster": "fake", "user": "worker", "namespace": self.namespace},
                }
            ],
            "current-context": "fake",
        }
        return KubeApi(AsyncClient(KubeConfig.from_dict(kubeconfig), trust_env=False))

    # --- state -------------------------------------------------------------------------------

    def add(self, name: str, labels: dict[str, str], owner_uid: str = "") -> None:
        """A Job already in the cluster (made by some earlier worker)."""
        owners = [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": owner_uid}]
        self._store(
            "ADDED",
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {
                    "name": name,
                    "namespace": self.namespace,
                    "labels": labels,
                    "ownerReferences": owners if owner_uid else [],
                },
            },
        )

    def _store(self, kind: str, job: dict[str, Any]) -> None:
        self.version += 1
        name = job["metadata"]["name"]
        job["metadata"]["resourceVersion"] = str(self.version)
        if kind == "DELETED":
            self.jobs.pop(name, None)
        else:
            self.jobs[name] = job
        self.history.setdefault(name, []).append((self.version, kind, copy.deepcopy(job)))

    def watches(self) -> list[Call]:
        return [c for c in self.calls if c.params.get("watch") == "true"]

    def lists(self) -> list[Call]:
        return [
            c
            for c in self.calls
            if c.method == "GET" and c.path.endswith("/jobs") and "watch" not in c.params
        ]

    def _finished(self) -> bool:
        return len(self.watches()) >= self.finishes_at

    # --- endpoints ---------------------------------------------------------------------------

    async def _guard(self, request: Request, call_next: Any) -> Response:
        auth = request.headers.get("authorization", "")
        self.calls.append(Call(request.method, request.url.path, dict(request.query_params), auth))
        if auth.removeprefix("Bearer ") not in self.tokens:
            return JSONResponse(status(401, "Unauthorized", "Unauthorized"), 401)
        if self.forbidden:
            return JSONResponse(status(403, "Forbidden", self.forbidden), 403)
        response: Response = await call_next(request)
        return response

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        return JSONResponse(status(404, "NotFound", f"{request.method} {request.url.path}"), 404)

    async def _jobs(self, request: Request) -> Response:
        params = request.query_params
        if request.method == "POST":
            job = await request.json()
            if job["metadata"]["name"] in self.jobs:
                return JSONResponse(status(409, "AlreadyExists", "job exists"), 409)
            self._store("ADDED", job)
            return JSONResponse(job, 201)
        if params.get("watch") == "true":
            return await self._watch(
                params["fieldSelector"], int(params["resourceVersion"]), request.client
            )
        items = list(self.jobs.values())
        if "fieldSelector" in params:
            name = params["fieldSelector"].removeprefix("metadata.name=")
            items = [j for j in items if j["metadata"]["name"] == name]
        if "labelSelector" in params:
            wanted = dict(term.split("=") for term in params["labelSelector"].split(","))
            items = [j for j in items if wanted.items() <= j["metadata"]["labels"].items()]
        meta = {"resourceVersion": str(self.version)}
        return JSONResponse(
            {"kind": "JobList", "apiVersion": "batch/v1", "metadata": meta, "items": items}
        )

    async def _watch(self, field_selector: str, since: int, client: Any) -> Response:
        name = field_selector.removeprefix("metadata.name=")
        number = len(self.watches())
        if number in self.gone:
            gone = status(410, "Expired", f"too old resource version: {since}")
            if number % 2:
                return JSONResponse(gone, 410)
            event = json.dumps({"type": "ERROR", "object": gone}) + "\n"
            return PlainTextResponse(event, media_type="application/json")
        job = self.jobs.get(name)
        if job is not None:  # one more minute of the step
            job = copy.deepcopy(job)
            if self._finished():
                kind = "Complete" if self.exit_code == 0 else "Failed"
                job["status"] = {"conditions": [{"type": kind, "status": "True"}]}
            else:
                job["status"] = {"active": 1, "ready": 1}
            self._store("MODIFIED", job)

        async def events() -> AsyncIterator[bytes]:
            sent = since
            deadline = asyncio.get_running_loop().time() + self.watch_s
            while True:
                for version, kind, obj in self.history.get(name, []):
                    if version > sent:
                        sent = version
                        yield (json.dumps({"type": kind, "object": obj}) + "\n").encode()
                        if number in self.dropped:
                            self._abort(client)
                            return
                if asyncio.get_running_loop().time() >= deadline:
                    self.versions_sent.append(sent)
                    return  # the API server ends the watch
                await asyncio.sleep(0.01)

        return StreamingResponse(events(), media_type="application/json")

    def _abort(self, client: Any) -> None:
        """Cut the client's connection as a failing network would (uvicorn's transport)."""
        assert self._server is not None
        for connection in self._server.server_state.connections:
            if client is not None and getattr(connection, "client", None) == tuple(client):
                connection.transport.abort()

    async def _delete(self, request: Request) -> Response:
        name = request.path_params["name"]
        self.deleted.append((name, dict(request.query_params)))
        if name not in self.jobs:
            return JSONResponse(status(404, "NotFound", f'jobs.batch "{name}" not found'), 404)
        self._store("DELETED", copy.deepcopy(self.jobs[name]))
        return JSONResponse({"kind": "Status", "apiVersion": "v1", "status": "Success"})

    async def _pods(self, request: Request) -> Response:
        match = re.fullmatch(r"job-name=([a-z0-9-]+)", request.query_params["labelSelector"])
        job = match[1] if match else ""
        items = [self._pod(job)] if job in self.jobs else []
        return JSONResponse({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})

    async def _log(self, request: Request) -> Response:
        return PlainTextResponse("step says hello\n")

    def _pod(self, job: str) -> dict[str, Any]:
        if not self._finished():
            state: dict[str, Any] = {"running": {}}
            phase = "Running"
        else:
            state = {"terminated": {"exitCode": self.exit_code}}
            phase = "Succeeded" if self.exit_code == 0 else "Failed"
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{job}-abcde", "namespace": self.namespace},
            "status": {
                "phase": phase,
                "containerStatuses": [
                    {
                        "name": "step",
                        "image": "x",
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": state,
                    }
                ],
                **(self.pod_status if self._finished() else {}),
            },
        }
