"""The few Kubernetes API server calls the step runtime makes: an interface and its httpx client.

httpx (already a dependency, async, and the surface is a handful of calls) rather than the official
``kubernetes`` client, which is synchronous and large. The in-cluster credentials are the pod's
projected service-account token, re-read on each request because the kubelet rotates it. The
task_engine's Role allows exactly these calls: Jobs create / get / list / watch / delete, Pods get /
list / watch, and their logs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final, Protocol

import httpx

from task_engine.runtime import StepRuntimeError

SA_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# how long one watch request may last (the API server may end it sooner); it is then resumed
WATCH_TIMEOUT_S: Final = 300
WATCH_RETRIES: Final = 10  # dropped watch connections in a row before the watch is an error


class KubernetesError(StepRuntimeError):
    """The API server refused or failed a request; the message has its status and reason."""


class KubeApi(Protocol):
    """The API server calls the runtime makes."""

    async def create_job(self, namespace: str, manifest: dict[str, Any]) -> None: ...

    async def list_jobs(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The Jobs whose labels match ``selector`` (``key=value,...``)."""
        ...

    def watch_job(self, namespace: str, name: str) -> AsyncIterator[dict[str, Any]]:
        """The Job's state and then its changes (``{"type": ..., "object": job}``), until it is
        gone; a watch the API server ends is resumed."""
        ...

    async def job_pod(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def stream_log(self, namespace: str, pod: str) -> AsyncIterator[bytes]: ...

    async def delete_job(self, namespace: str, name: str, grace_s: int) -> None:
        """Delete the Job and (in the background) its pods; a Job already gone is no error."""
        ...


class HttpKubeApi:
    """:class:`KubeApi` over httpx, with in-cluster credentials by default."""

    def __init__(self, client: httpx.AsyncClient, token_file: Path | None = SA_DIR / "token"):
        self._client = client
        self._token_file = token_file

    @classmethod
    def in_cluster(cls) -> HttpKubeApi:
        client = httpx.AsyncClient(
            base_url="https://kubernetes.default.svc",
            verify=str(SA_DIR / "ca.crt"),
            timeout=httpx.Timeout(30.0, read=None),
        )
        return cls(client)

    async def aclose(self) -> None:
        await self._client.aclose()

    def _headers(self) -> dict[str, str]:
        if self._token_file is None:
            return {}
        return {"Authorization": f"Bearer {self._token_file.read_text().strip()}"}

    async def _check(self, response: httpx.Response, *ok: int) -> None:
        if response.status_code not in (ok or (200,)):
            body = (await response.aread()).decode(errors="replace")[:500]
            raise KubernetesError(
                f"{response.request.method} {response.request.url.path}: "
                f"{response.status_code} {body}"
            )

    async def create_job(self, namespace: str, manifest: dict[str, Any]) -> None:
        r = await self._client.post(
            f"/apis/batch/v1/namespaces/{namespace}/jobs", json=manifest, headers=self._headers()
        )
        await self._check(r, 201, 200)

    async def list_jobs(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        r = await self._client.get(
            f"/apis/batch/v1/namespaces/{namespace}/jobs",
            params={"labelSelector": selector},
            headers=self._headers(),
        )
        await self._check(r)
        items: list[dict[str, Any]] = r.json().get("items", [])
        return items

    async def watch_job(self, namespace: str, name: str) -> AsyncIterator[dict[str, Any]]:
        """The Job's current state, then its changes, for as long as it exists.

        The API server ends a watch after a while (minutes, or at ``timeoutSeconds``); it is
        resumed from the last ``resourceVersion`` seen, so no change is missed or repeated. A
        version too old to resume from (410 Gone) means listing the Job again. A dropped
        connection is retried :data:`WATCH_RETRIES` times in a row before it is an error.
        """
        url = f"/apis/batch/v1/namespaces/{namespace}/jobs"
        selector = f"metadata.name={name}"
        version: str | None = None
        failures = 0
        while True:
            try:
                if version is None:  # (re)list: the current state and where to watch from
                    r = await self._client.get(
                        url, params={"fieldSelector": selector}, headers=self._headers()
                    )
                    await self._check(r)
                    listed = r.json()
                    version = str(listed["metadata"]["resourceVersion"])
                    if not listed.get("items"):
                        yield {"type": "DELETED", "object": {}}
                        return
                    yield {"type": "MODIFIED", "object": listed["items"][0]}
                params = {
                    "watch": "1",
                    "fieldSelector": selector,
                    "resourceVersion": version,
                    "allowWatchBookmarks": "true",
                    "timeoutSeconds": str(WATCH_TIMEOUT_S),
                }
                async with self._client.stream(
                    "GET", url, params=params, headers=self._headers()
                ) as r:
                    if r.status_code == 410:
                        version = None
                        continue
                    await self._check(r)
                    async for line in r.aiter_lines():
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":
                            if obj.get("code") == 410:
                                version = None  # expired: list again
                                break
                            raise KubernetesError(f"watch of Job {name}: {obj.get('message')}")
                        version = str(obj.get("metadata", {}).get("resourceVersion") or version)
                        failures = 0
                        if event.get("type") != "BOOKMARK":
                            yield event
                            if event.get("type") == "DELETED":
                                return
            except (httpx.TransportError, json.JSONDecodeError) as exc:
                failures += 1
                if failures > WATCH_RETRIES:
                    raise KubernetesError(f"watch of Job {name} keeps failing: {exc!r}") from exc
                await asyncio.sleep(min(2.0**failures, 30.0) / 10)

    async def job_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        r = await self._client.get(
            f"/api/v1/namespaces/{namespace}/pods",
            params={"labelSelector": f"job-name={name}"},
            headers=self._headers(),
        )
        await self._check(r)
        items: list[dict[str, Any]] = r.json().get("items", [])
        return items[0] if items else None

    async def stream_log(self, namespace: str, pod: str) -> AsyncIterator[bytes]:
        url = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
        params = {"follow": "true"}
        async with self._client.stream("GET", url, params=params, headers=self._headers()) as r:
            await self._check(r)
            async for chunk in r.aiter_bytes():
                yield chunk

    async def delete_job(self, namespace: str, name: str, grace_s: int) -> None:
        r = await self._client.request(
            "DELETE",
            f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
            json={"propagationPolicy": "Background", "gracePeriodSeconds": grace_s},
            headers=self._headers(),
        )
        await self._check(r, 200, 202, 404)
