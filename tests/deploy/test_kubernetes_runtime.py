"""task_engine.kubernetes: the step Job's spec against the Kubernetes schemas, and the runtime's
create / watch / log / delete cycle and its clean-up of orphaned Jobs against a fake API server
spoken to over HTTP."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from deploy_helpers import Tools, kubeconform

from fedcore.envelope import Envelope
from fedcore.messages import TaskStatus, parse_body
from task_engine.execution import Task, status_envelope
from task_engine.kubeapi import HttpKubeApi, KubernetesError
from task_engine.kubernetes import (
    JobHandle,
    KubernetesConfig,
    KubernetesRuntime,
    WorkerPod,
    job_name,
    platform_fault,
    render_job,
)
from task_engine.runtime import StepExit, StepLaunch
from task_engine.step import write_spec

API = "https://kubernetes.test"
NS = "tessera-10000"
WORKER_UID = "5f0c2a8e-3b1d-4c6e-9a7f-0d2e4b6c8a1f"


def config(root: Path) -> KubernetesConfig:
    return KubernetesConfig(
        namespace=NS,
        image="tessera/runtime:0.1.0",
        claim="party-state",
        volume_root=root,
        worker_pod=WorkerPod("task-engine-7d9f-x2k4q", WORKER_UID),
        node_name="node-a",
        cpu_limit="1500m",
        memory_mb=1024,
        allowed_images=("registry.example/algo:2",),
    )


def launch(root: Path) -> StepLaunch:
    work = root / "state" / "work" / "job-1" / "train" / "0"
    return StepLaunch(
        work,
        env={"PYTHONPATH": "/opt/extra"},
        inputs=(root / "data" / "in.csv",),
        writable=(root / "out" / "job-1",),
    )


def test_job_spec_validates_and_is_locked_down(tools: Tools, tmp_path: Path) -> None:
    job = render_job(
        config(tmp_path),
        launch(tmp_path),
        image="tessera/runtime:0.1.0",
        labels={"tessera.io/job-id": "job-1"},
    )
    kubeconform(tools, [job], tmp_path / "schemas")
    pod = job["spec"]["template"]["spec"]
    assert job["spec"]["backoffLimit"] == 0 and pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
    assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["limits"] == {"cpu": "1500m", "memory": "1024Mi"}
    assert container["command"] == ["python", "-m", "task_engine.step"]
    mounts = {
        (m["mountPath"], m.get("subPath"), m.get("readOnly", False))
        for m in container["volumeMounts"]
    }
    work = str(launch(tmp_path).work_dir)
    assert (str(tmp_path), None, True) in mounts
    assert (work, "state/work/job-1/train/0", False) in mounts
    assert (str(tmp_path / "out" / "job-1"), "out/job-1", False) in mounts
    assert container["workingDir"] == work
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchFields"][0]["values"] == ["node-a"]
    assert job["metadata"]["labels"]["tessera.io/role"] == "step"


def test_paths_off_the_volume_are_refused(tmp_path: Path) -> None:
    bad = StepLaunch(tmp_path / "state" / "w", writable=(Path("/elsewhere"),))
    with pytest.raises(KubernetesError, match="not on the state volume"):
        render_job(config(tmp_path), bad, image="x:1", labels={})


class FakeApiServer:
    """The API server's Job and Pod endpoints over HTTP (httpx.MockTransport), in memory: a Job
    created completes with ``exit_code``; one deleted before it completed is gone.

    Like a real API server, it ends each watch after a while: every watch request answers
    after ``watch_s`` with at most one event and closes, and the Job completes only at watch
    request number ``completes_at``; the watch requests numbered in ``gone`` are answered 410
    Gone (the even ones as a status, the odd ones as an ERROR event), as when the version asked
    for is too old.
    """

    def __init__(
        self,
        exit_code: int = 0,
        *,
        completes_at: int = 1,
        watch_s: float = 0.0,
        gone: frozenset[int] = frozenset(),
        pod_status: dict[str, Any] | None = None,
    ) -> None:
        self.exit_code = exit_code
        self.pod_status = pod_status or {}  # more of the step pod's status (an eviction...)
        self.completes_at = completes_at
        self.watch_s = watch_s
        self.gone = gone
        self.version = 100
        self.watches: list[dict[str, str]] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.deleted: list[tuple[str, dict[str, Any]]] = []
        self.requests: list[httpx.Request] = []

    def api(self) -> HttpKubeApi:
        transport = httpx.MockTransport(self._handle)
        return HttpKubeApi(httpx.AsyncClient(transport=transport, base_url=API), token_file=None)

    def add(self, name: str, labels: dict[str, str], owner_uid: str = "") -> None:
        """A Job already in the cluster (made by some earlier worker)."""
        owners = [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": owner_uid}]
        self.jobs[name] = {
            "metadata": {
                "name": name,
                "labels": labels,
                "ownerReferences": owners if owner_uid else [],
            }
        }

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path, params = request.url.path, request.url.params
        jobs = re.fullmatch(rf"/apis/batch/v1/namespaces/{NS}/jobs(?:/([a-z0-9-]+))?", path)
        if jobs and request.method == "POST":
            manifest = json.loads(request.content)
            self.version += 1
            manifest["metadata"]["resourceVersion"] = str(self.version)
            self.jobs[manifest["metadata"]["name"]] = manifest
            return httpx.Response(201, json=manifest)
        if jobs and request.method == "DELETE":
            name = jobs[1]
            self.deleted.append((name, json.loads(request.content)))
            return httpx.Response(200 if self.jobs.pop(name, None) else 404, json={})
        if jobs and params.get("watch"):
            return await self._watch(dict(params))
        if jobs and "fieldSelector" in params:
            name = params["fieldSelector"].removeprefix("metadata.name=")
            items = [self.jobs[name]] if name in self.jobs else []
            meta = {"resourceVersion": str(self.version)}
            return httpx.Response(200, json={"metadata": meta, "items": items})
        if jobs:
            wanted = dict(term.split("=") for term in params["labelSelector"].split(","))
            items = [
                j for j in self.jobs.values() if wanted.items() <= j["metadata"]["labels"].items()
            ]
            return httpx.Response(200, json={"items": items})
        if path == f"/api/v1/namespaces/{NS}/pods":
            name = params["labelSelector"].removeprefix("job-name=")
            return httpx.Response(
                200, json={"items": [self._pod(name)] if name in self.jobs else []}
            )
        if path.endswith("/log"):
            return httpx.Response(200, content=b"step says hello\n")
        return httpx.Response(404, json={"reason": f"{request.method} {path}"})

    async def _watch(self, params: dict[str, str]) -> httpx.Response:
        self.watches.append(params)
        number = len(self.watches)
        await asyncio.sleep(self.watch_s)
        if number in self.gone:
            if number % 2 == 0:
                return httpx.Response(410, json={"kind": "Status", "code": 410})
            error = {"type": "ERROR", "object": {"kind": "Status", "code": 410}}
            return httpx.Response(200, text=json.dumps(error) + "\n")
        name = params["fieldSelector"].removeprefix("metadata.name=")
        if name not in self.jobs:
            return httpx.Response(200, text=json.dumps({"type": "DELETED", "object": {}}) + "\n")
        self.version += 1
        job = self.jobs[name]
        job["metadata"]["resourceVersion"] = str(self.version)
        if number < self.completes_at:  # still running: a bookmark, then the server ends it
            event = {"type": "BOOKMARK", "object": {"metadata": dict(job["metadata"])}}
            return httpx.Response(200, text=json.dumps(event) + "\n")
        kind = "Complete" if self.exit_code == 0 else "Failed"
        job["status"] = {"conditions": [{"type": kind, "status": "True"}]}
        return httpx.Response(200, text=json.dumps({"type": "MODIFIED", "object": job}) + "\n")

    def _pod(self, job: str) -> dict[str, Any]:
        return {
            "metadata": {"name": f"{job}-abcde"},
            "status": {
                "phase": "Succeeded" if self.exit_code == 0 else "Failed",
                "containerStatuses": [{"state": {"terminated": {"exitCode": self.exit_code}}}],
                **self.pod_status,
            },
        }


def _runtime(tmp_path: Path, server: FakeApiServer) -> KubernetesRuntime:
    return KubernetesRuntime(config(tmp_path), server.api(), extra_env={"PYTHONPATH": "/x"})


async def _start(
    tmp_path: Path, server: FakeApiServer, args: dict[str, Any], attempt: int = 0
) -> JobHandle:
    step = launch(tmp_path)
    step.work_dir.mkdir(parents=True)
    write_spec(
        step.work_dir, {"job_id": "job-1", "task": "train", "attempt": attempt, "args": args}
    )
    return await _runtime(tmp_path, server).start(step)


async def test_an_image_this_party_does_not_list_is_refused_before_any_job(
    tmp_path: Path,
) -> None:
    """A job's ``runtime-image`` is a peer's wish: only this party's STEP_IMAGES may run."""
    server = FakeApiServer()
    with pytest.raises(KubernetesError, match=r"'evil\.example/miner:1' is not in STEP_IMAGES"):
        await _start(tmp_path, server, {"runtime-image": "evil.example/miner:1"})
    assert not server.jobs and not server.requests, "nothing reached the API server"


async def test_a_step_runs_as_a_job_and_is_deleted_after(tmp_path: Path) -> None:
    server = FakeApiServer(exit_code=3)
    handle = await _start(tmp_path, server, {"runtime-image": "registry.example/algo:2"})
    (job,) = server.jobs.values()
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/algo:2"
    assert job["metadata"]["labels"]["tessera.io/step"] == "train"
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "PYTHONPATH", "value": "/opt/extra"} in env, "the launch wins over extra_env"
    assert (tmp_path / "out" / "job-1").is_dir(), "writable paths exist before the mount"
    exit_ = await handle.wait()
    assert exit_.returncode == 3 and exit_.signal is None
    assert server.deleted[-1] == (
        handle.name,
        {"propagationPolicy": "Background", "gracePeriodSeconds": 0},
    )
    assert not server.jobs


async def test_an_evicted_step_pod_is_a_platform_fault(tmp_path: Path) -> None:
    message = "The node was low on resource: memory."
    server = FakeApiServer(exit_code=137, pod_status={"reason": "Evicted", "message": message})
    exit_ = await (await _start(tmp_path, server, {})).wait()
    assert exit_.platform_fault == f"step pod evicted: {message}"
    assert exit_.describe() == exit_.platform_fault


async def test_a_step_that_fails_on_its_own_is_no_platform_fault(tmp_path: Path) -> None:
    server = FakeApiServer(exit_code=3)
    exit_ = await (await _start(tmp_path, server, {})).wait()
    assert exit_.platform_fault is None and exit_.returncode == 3


def test_the_workers_status_of_a_platform_fault_says_so() -> None:
    run = Envelope(
        type="task.run",
        job_id="1" * 32,
        task="train",
        src="20000",
        body={
            "component": "hetero_lr",
            "role": "host",
            "party_id": "20000",
            "parties": {"host": ["20000"]},
            "output_dir": "/o",
            "fed_since_ms": 0,
            "attempt": 1,
        },
    )
    exit_ = StepExit(137, None, "", "step pod evicted: low on memory")
    status = status_envelope(
        Task.from_envelope(run, roots=[Path("/")]),
        "failed",
        reason=exit_.describe(),
        fault="platform",
    )
    body = parse_body(status)
    assert isinstance(body, TaskStatus)
    assert (body.state, body.fault, body.reason) == ("failed", "platform", exit_.platform_fault)


def test_which_failed_pods_the_platform_ended() -> None:
    disrupted = {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager"}
    assert platform_fault({"status": {"conditions": [disrupted]}}) == (
        "step pod disrupted (DeletionByTaintManager)"
    )
    assert platform_fault(None) == "step pod lost (its node is gone)"
    assert platform_fault({"status": {"reason": "NodeLost", "message": "x" * 5000}}) == (
        "step pod nodelost: " + "x" * 300
    )
    assert platform_fault({"status": {"phase": "Failed", "reason": "Error"}}) is None


async def test_default_image_and_kill(tmp_path: Path) -> None:
    server = FakeApiServer()
    handle = await _start(tmp_path, server, {})
    image = server.jobs[handle.name]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "tessera/runtime:0.1.0"
    await handle.kill()
    assert server.deleted == [
        (handle.name, {"propagationPolicy": "Background", "gracePeriodSeconds": 10})
    ]
    exit_ = await handle.wait()
    assert exit_.signal == signal.SIGKILL and exit_.returncode is None


def _step_labels(job_id: str, step: str, attempt: int) -> dict[str, str]:
    return {
        "app.kubernetes.io/part-of": "tessera",
        "tessera.io/role": "step",
        "tessera.io/job-id": job_id,
        "tessera.io/step": step,
        "tessera.io/attempt": str(attempt),
    }


async def test_a_job_is_labelled_with_its_attempt_and_owned_by_the_worker_pod(
    tmp_path: Path,
) -> None:
    server = FakeApiServer()
    handle = await _start(tmp_path, server, {}, attempt=2)
    meta = server.jobs[handle.name]["metadata"]
    assert _step_labels("job-1", "train", 2).items() <= meta["labels"].items()
    assert meta["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": "task-engine-7d9f-x2k4q", "uid": WORKER_UID}
    ]


async def test_a_retry_deletes_the_jobs_of_the_attempts_it_supersedes(tmp_path: Path) -> None:
    """A lost worker's Job of attempt 1 keeps running; attempt 2 of the step removes it, and only
    it, whichever worker made it."""
    server = FakeApiServer()
    server.add("lost", _step_labels("job-1", "train", 1), owner_uid="dead-worker-pod")
    server.add("other-step", _step_labels("job-1", "scale", 1))
    server.add("other-job", _step_labels("job-2", "train", 1))
    handle = await _start(tmp_path, server, {}, attempt=2)
    assert [name for name, _ in server.deleted] == ["lost"]
    assert set(server.jobs) == {"other-step", "other-job", handle.name}
    listed = [r for r in server.requests if r.method == "GET" and "labelSelector" in r.url.params]
    assert listed[0].url.params["labelSelector"] == (
        "app.kubernetes.io/part-of=tessera,tessera.io/role=step,"
        "tessera.io/job-id=job-1,tessera.io/step=train"
    )


async def test_a_leftover_job_of_the_same_attempt_is_replaced(tmp_path: Path) -> None:
    """A worker that died just after creating the Job left it under the name the attempt needs."""
    server = FakeApiServer()
    step = launch(tmp_path)
    server.add(job_name(step.work_dir), _step_labels("job-1", "train", 0))
    handle = await _start(tmp_path, server, {}, attempt=0)
    assert [name for name, _ in server.deleted] == [handle.name]
    assert "ownerReferences" in server.jobs[handle.name]["metadata"], "the new Job was created"


async def test_a_starting_worker_deletes_the_jobs_its_pod_owns(tmp_path: Path) -> None:
    """The worker container was SIGKILLed and restarted in the same pod: its Jobs are orphans."""
    server = FakeApiServer()
    server.add("orphan", _step_labels("job-1", "train", 1), owner_uid=WORKER_UID)
    server.add("another-pods", _step_labels("job-2", "train", 1), owner_uid="other-pod")
    server.add("unowned", _step_labels("job-3", "train", 1))
    await _runtime(tmp_path, server).delete_orphans()
    assert [name for name, _ in server.deleted] == ["orphan"]
    assert set(server.jobs) == {"another-pods", "unowned"}


async def test_an_api_error_names_the_call_and_status(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, text='jobs.batch is forbidden: cannot list resource "jobs"')

    client = httpx.AsyncClient(transport=httpx.MockTransport(refuse), base_url=API)
    runtime = KubernetesRuntime(config(tmp_path), HttpKubeApi(client, token_file=None))
    with pytest.raises(KubernetesError, match=rf"GET /apis/batch/v1/namespaces/{NS}/jobs: 403"):
        await runtime.delete_orphans()


def test_config_from_the_chart_environment() -> None:
    with pytest.raises(KubernetesError, match="STEP_NAMESPACE, STEP_POD_NAME, STEP_POD_UID"):
        KubernetesConfig.from_environ({"STEP_IMAGE": "x:1", "STEP_CLAIM": "c"})
    cfg = KubernetesConfig.from_environ(
        {
            "STEP_NAMESPACE": "tessera-1",
            "STEP_IMAGE": "x:1",
            "STEP_CLAIM": "party-state",
            "STEP_VOLUME_ROOT": "/var/lib/tessera",
            "STEP_NODE_NAME": "n1",
            "STEP_POD_NAME": "task-engine-1",
            "STEP_POD_UID": WORKER_UID,
            "STEP_MEMORY_MB": "512",
            "TASK_TIMEOUT_S": "7200",
            "STEP_IMAGES": "x:1, y:2",
        }
    )
    assert cfg.allowed_images == ("x:1", "y:2")
    assert cfg.memory_mb == 512 and cfg.node_name == "n1" and cfg.volume_root.name == "tessera"
    assert cfg.worker_pod == WorkerPod("task-engine-1", WORKER_UID) and cfg.timeout_s == 7200


async def test_a_long_step_outlives_many_watch_closes_and_a_410(tmp_path: Path) -> None:
    """The API server ends the watch every 0.3 s (a real one: every few minutes), twice with
    410 Gone; the step "runs" through 20 watches and ends with its real outcome."""
    server = FakeApiServer(exit_code=3, completes_at=20, watch_s=0.3, gone=frozenset({6, 11}))
    handle = await _start(tmp_path, server, {})
    exit_ = await asyncio.wait_for(handle.wait(), 30)
    assert exit_.returncode == 3 and exit_.signal is None
    assert len(server.watches) == 20
    versions = [int(w["resourceVersion"]) for w in server.watches]
    assert versions == sorted(versions), "each watch resumes where the last one ended"
    lists = [
        r
        for r in server.requests
        if r.method == "GET" and "fieldSelector" in r.url.params and "watch" not in r.url.params
    ]
    assert len(lists) == 3, "one list at the start, one after each 410"
    assert server.deleted[-1][0] == handle.name and not server.jobs
