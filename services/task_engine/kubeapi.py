"""The Kubernetes API server calls the step runtime makes, over lightkube's ``AsyncClient``.

lightkube (async, maintained, typed models of the API) speaks HTTP to the API server, decodes its
objects, re-establishes a watch the API server ends from the last ``resourceVersion`` it saw, and
reads the in-cluster credentials (the pod's service-account token, read again when the API server
refuses it: the kubelet rotates it). What this module adds: errors that name the call and its
status (a :class:`KubernetesError` fails the step, not the worker), a watch of one Job that lists
it again when its version is gone (410), and a delete that is no error when the Job is gone.

The task_engine's Role (deploy/helm/tessera/templates/rbac.yaml) allows exactly these calls: Jobs
create / list / watch / delete, Pods list, and Pods' logs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any, Final, cast

import httpx2
from lightkube import ApiError, AsyncClient, ConfigError, KubeConfig
from lightkube.core.client import FieldSelector, LabelSelector
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Pod
from lightkube.types import CascadeType, OnErrorAction, OnErrorResult

from task_engine.runtime import StepRuntimeError

SA_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# how long one watch request may last (the API server may end it sooner); lightkube resumes it
WATCH_TIMEOUT_S: Final = 300
WATCH_RETRIES: Final = 10  # failed connections in a row before the watch is an error
MAX_DETAIL_CHARS: Final = 500


class KubernetesError(StepRuntimeError):
    """The API server refused or failed a request; the message has its call and status."""


def _describe(exc: httpx2.HTTPStatusError) -> str:
    """``METHOD /path: status message`` of a refused call (a watch's ERROR event has no call)."""
    if isinstance(exc, ApiError):
        status, detail = exc.status.code, exc.status.message or exc.status.reason or ""
    else:
        status, detail = exc.response.status_code, ""
        with contextlib.suppress(httpx2.ResponseNotRead):  # a streamed answer is not read
            detail = exc.response.text
    call = ""
    with contextlib.suppress(RuntimeError):  # httpx raises it for an error without a request
        call = f"{exc.request.method} {exc.request.url.path}: "
    return f"{call}{status} {detail[:MAX_DETAIL_CHARS]}"


@contextlib.contextmanager
def _call() -> Iterator[None]:
    """lightkube's and httpx's errors as :class:`KubernetesError`."""
    try:
        yield
    except httpx2.HTTPStatusError as exc:
        raise KubernetesError(_describe(exc)) from exc
    except (httpx2.HTTPError, ConfigError) as exc:  # unreachable, or the token file is gone
        raise KubernetesError(f"Kubernetes API: {exc!r}"[:MAX_DETAIL_CHARS]) from exc


def _gone(exc: Exception) -> bool:
    """Whether the version a watch asked for is too old (410 Gone: an ERROR event or a status)."""
    if isinstance(exc, ApiError):
        return exc.status.code == 410
    return isinstance(exc, httpx2.HTTPStatusError) and exc.response.status_code == 410


def _on_watch_error(exc: Exception, count: int) -> OnErrorResult:
    """A version gone stops the watch (the Job is then listed again); anything else is raised."""
    return OnErrorResult(OnErrorAction.STOP if _gone(exc) else OnErrorAction.RAISE)


class KubeApi:
    """The runtime's calls, on one lightkube client (in-cluster credentials by default)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    @classmethod
    def in_cluster(cls, account_dir: Path = SA_DIR) -> KubeApi:
        try:
            config = KubeConfig.from_service_account(account_dir)
        except (ConfigError, KeyError) as exc:  # KeyError: no KUBERNETES_SERVICE_HOST
            raise KubernetesError(
                f"no in-cluster Kubernetes credentials ({exc!r}): STEP_RUNTIME=kubernetes runs "
                "the task_engine in a pod with its service account"
            ) from exc
        # reads time out; a watch or a followed log does not (lightkube lifts it for those)
        return cls(AsyncClient(config, timeout=httpx2.Timeout(30.0)))

    async def aclose(self) -> None:
        await self._client.close()

    async def create_job(self, manifest: dict[str, Any]) -> None:
        """Create the Job in the namespace its manifest names."""
        with _call():
            await self._client.create(cast(Job, Job.from_dict(manifest)))

    async def list_jobs(self, namespace: str, labels: LabelSelector) -> list[Job]:
        """The Jobs whose labels have these values."""
        with _call():
            return [job async for job in self._client.list(Job, namespace=namespace, labels=labels)]

    async def watch_job(self, namespace: str, name: str) -> AsyncGenerator[Job, None]:
        """The Job's current state, then each change, for as long as it exists.

        The API server ends a watch after a while (minutes, or at ``timeoutSeconds``); lightkube
        resumes it from the last ``resourceVersion`` seen, so no change is missed or repeated. A
        version too old to resume from (410 Gone) means listing the Job again and watching from
        the list's version. A failed connection does the same, :data:`WATCH_RETRIES` times in a
        row before it is an error.
        """
        by_name: FieldSelector = {"metadata.name": name}
        failures = 0
        while True:
            try:
                with _call():
                    listed = self._client.list(Job, namespace=namespace, fields=by_name)
                    jobs = [job async for job in listed]
                failures = 0
                if not jobs:
                    return
                yield jobs[0]
                with _call():
                    async for kind, job in self._client.watch(
                        Job,
                        namespace=namespace,
                        fields=by_name,
                        resource_version=listed.resourceVersion,
                        server_timeout=WATCH_TIMEOUT_S,
                        on_error=_on_watch_error,
                    ):
                        if kind == "DELETED":
                            return
                        if kind in ("ADDED", "MODIFIED"):
                            yield job
                # the watch stopped: its version is gone, list again
            except KubernetesError as exc:
                if not isinstance(exc.__cause__, httpx2.TransportError):
                    raise
                failures += 1
                if failures > WATCH_RETRIES:
                    raise KubernetesError(f"watch of Job {name} keeps failing: {exc}") from exc
                await asyncio.sleep(min(2.0**failures, 30.0) / 10)

    async def job_pod(self, namespace: str, name: str) -> Pod | None:
        with _call():
            async for pod in self._client.list(Pod, namespace=namespace, labels={"job-name": name}):
                return pod
        return None

    async def stream_log(self, namespace: str, pod: str) -> AsyncGenerator[str, None]:
        """The pod's output, line by line, as it is written."""
        with _call():
            async for line in self._client.log(pod, namespace=namespace, follow=True):
                yield line

    async def delete_job(self, namespace: str, name: str, grace_s: int) -> None:
        """Delete the Job and (in the background) its pods; a Job already gone is no error."""
        try:
            with _call():
                await self._client.delete(
                    Job,
                    name,
                    namespace=namespace,
                    grace_period=grace_s,
                    cascade=CascadeType.BACKGROUND,
                )
        except KubernetesError as exc:
            if not (isinstance(exc.__cause__, ApiError) and exc.__cause__.status.code == 404):
                raise
