"""task_engine.kubernetes: the step Job's spec against the Kubernetes schemas, and the runtime's
create / watch / log / delete cycle and its clean-up of orphaned Jobs, through lightkube, against a
fake API server on a localhost port (tests/kube_api_server.py) that ends its watches every few
tenths of a second and sometimes answers 410 Gone."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from deploy_helpers import Manifest, Tools, by_kind, kubeconform
from lightkube.resources.core_v1 import Pod

from fedcore.envelope import Envelope
from fedcore.messages import TaskStatus, parse_body
from kube_api_server import TOKEN, Call, FakeApiServer
from task_engine.execution import Task, status_envelope
from task_engine.kubeapi import KubeApi, KubernetesError
from task_engine.kubernetes import (
    JobHandle,
    KubernetesConfig,
    KubernetesRuntime,
    WorkerPod,
    job_name,
    platform_fault,
    render_job,
)
from task_engine.runtime import STDERR_FILE, StepExit, StepLaunch
from task_engine.step import write_spec
from tls_material import make_pki

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


@contextlib.asynccontextmanager
async def serving(server: FakeApiServer) -> AsyncIterator[KubeApi]:
    async with server.serving():
        api = server.api()
        try:
            yield api
        finally:
            await api.aclose()


async def _start(tmp_path: Path, api: KubeApi, args: dict[str, Any], attempt: int = 0) -> JobHandle:
    step = launch(tmp_path)
    step.work_dir.mkdir(parents=True)
    write_spec(
        step.work_dir, {"job_id": "job-1", "task": "train", "attempt": attempt, "args": args}
    )
    return await _runtime(tmp_path, api).start(step)


def _runtime(tmp_path: Path, api: KubeApi) -> KubernetesRuntime:
    return KubernetesRuntime(config(tmp_path), api, extra_env={"PYTHONPATH": "/x"})


async def test_an_image_this_party_does_not_list_is_refused_before_any_job(
    tmp_path: Path,
) -> None:
    """A job's ``runtime-image`` is a peer's wish: only this party's STEP_IMAGES may run."""
    server = FakeApiServer(NS)
    async with serving(server) as api:
        with pytest.raises(KubernetesError, match=r"'evil\.example/miner:1' is not in STEP_IMAGES"):
            await _start(tmp_path, api, {"runtime-image": "evil.example/miner:1"})
    assert not server.jobs and not server.calls, "nothing reached the API server"


async def test_a_step_runs_as_a_job_and_is_deleted_after(tmp_path: Path) -> None:
    server = FakeApiServer(NS, exit_code=3)
    async with serving(server) as api:
        handle = await _start(tmp_path, api, {"runtime-image": "registry.example/algo:2"})
        (job,) = server.jobs.values()
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "registry.example/algo:2"
        assert job["metadata"]["labels"]["tessera.io/step"] == "train"
        assert {"name": "PYTHONPATH", "value": "/opt/extra"} in container["env"], (
            "the launch wins over extra_env"
        )
        assert (tmp_path / "out" / "job-1").is_dir(), "writable paths exist before the mount"
        exit_ = await handle.wait()
    assert exit_.returncode == 3 and exit_.signal is None
    assert server.deleted[-1] == (
        handle.name,
        {"gracePeriodSeconds": "0", "propagationPolicy": "Background"},
    )
    assert not server.jobs
    assert {c.authorization for c in server.calls} == {f"Bearer {TOKEN}"}
    assert "step says hello" in (launch(tmp_path).work_dir / STDERR_FILE).read_text()


async def test_an_evicted_step_pod_is_a_platform_fault(tmp_path: Path) -> None:
    message = "The node was low on resource: memory."
    server = FakeApiServer(NS, exit_code=137, pod_status={"reason": "Evicted", "message": message})
    async with serving(server) as api:
        exit_ = await (await _start(tmp_path, api, {})).wait()
    assert exit_.platform_fault == f"step pod evicted: {message}"
    assert exit_.describe() == exit_.platform_fault


async def test_a_step_that_fails_on_its_own_is_no_platform_fault(tmp_path: Path) -> None:
    server = FakeApiServer(NS, exit_code=3)
    async with serving(server) as api:
        exit_ = await (await _start(tmp_path, api, {})).wait()
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
    def pod(status: dict[str, Any]) -> Pod:
        return cast(Pod, Pod.from_dict({"apiVersion": "v1", "kind": "Pod", "status": status}))

    disrupted = {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager"}
    assert platform_fault(pod({"conditions": [disrupted]})) == (
        "step pod disrupted (DeletionByTaintManager)"
    )
    assert platform_fault(None) == "step pod lost (its node is gone)"
    assert platform_fault(pod({"reason": "NodeLost", "message": "x" * 5000})) == (
        "step pod nodelost: " + "x" * 300
    )
    assert platform_fault(pod({"phase": "Failed", "reason": "Error"})) is None


async def test_default_image_and_kill(tmp_path: Path) -> None:
    server = FakeApiServer(NS, finishes_at=1000)
    async with serving(server) as api:
        handle = await _start(tmp_path, api, {})
        image = server.jobs[handle.name]["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == "tessera/runtime:0.1.0"
        await handle.kill()
        assert server.deleted == [
            (handle.name, {"gracePeriodSeconds": "10", "propagationPolicy": "Background"})
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
    server = FakeApiServer(NS)
    async with serving(server) as api:
        handle = await _start(tmp_path, api, {}, attempt=2)
        meta = server.jobs[handle.name]["metadata"]
        await handle.wait()
    assert _step_labels("job-1", "train", 2).items() <= meta["labels"].items()
    assert meta["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": "task-engine-7d9f-x2k4q", "uid": WORKER_UID}
    ]


async def test_a_retry_deletes_the_jobs_of_the_attempts_it_supersedes(tmp_path: Path) -> None:
    """A lost worker's Job of attempt 1 keeps running; attempt 2 of the step removes it, and only
    it, whichever worker made it."""
    server = FakeApiServer(NS)
    server.add("lost", _step_labels("job-1", "train", 1), owner_uid="dead-worker-pod")
    server.add("other-step", _step_labels("job-1", "scale", 1))
    server.add("other-job", _step_labels("job-2", "train", 1))
    async with serving(server) as api:
        handle = await _start(tmp_path, api, {}, attempt=2)
        assert [name for name, _ in server.deleted] == ["lost"]
        assert set(server.jobs) == {"other-step", "other-job", handle.name}
        await handle.wait()
    listed = [c for c in server.lists() if "labelSelector" in c.params]
    assert listed[0].params["labelSelector"] == (
        "app.kubernetes.io/part-of=tessera,tessera.io/role=step,"
        "tessera.io/job-id=job-1,tessera.io/step=train"
    )


async def test_a_leftover_job_of_the_same_attempt_is_replaced(tmp_path: Path) -> None:
    """A worker that died just after creating the Job left it under the name the attempt needs."""
    server = FakeApiServer(NS)
    step = launch(tmp_path)
    server.add(job_name(step.work_dir), _step_labels("job-1", "train", 0))
    async with serving(server) as api:
        handle = await _start(tmp_path, api, {}, attempt=0)
        assert [name for name, _ in server.deleted] == [handle.name]
        new = server.jobs[handle.name]["metadata"]
        assert "ownerReferences" in new, "the new Job was created"
        await handle.wait()


async def test_a_starting_worker_deletes_the_jobs_its_pod_owns(tmp_path: Path) -> None:
    """The worker container was SIGKILLed and restarted in the same pod: its Jobs are orphans."""
    server = FakeApiServer(NS)
    server.add("orphan", _step_labels("job-1", "train", 1), owner_uid=WORKER_UID)
    server.add("another-pods", _step_labels("job-2", "train", 1), owner_uid="other-pod")
    server.add("unowned", _step_labels("job-3", "train", 1))
    async with serving(server) as api:
        await _runtime(tmp_path, api).delete_orphans()
    assert [name for name, _ in server.deleted] == ["orphan"]
    assert set(server.jobs) == {"another-pods", "unowned"}


async def test_an_api_error_names_the_call_and_status(tmp_path: Path) -> None:
    server = FakeApiServer(NS, forbidden='jobs.batch is forbidden: cannot list resource "jobs"')
    async with serving(server) as api:
        with pytest.raises(
            KubernetesError, match=rf"GET /apis/batch/v1/namespaces/{NS}/jobs: 403 jobs.batch"
        ):
            await _runtime(tmp_path, api).delete_orphans()


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


def test_without_in_cluster_credentials_the_runtime_says_so(tmp_path: Path) -> None:
    with pytest.raises(KubernetesError, match="no in-cluster Kubernetes credentials"):
        KubeApi.in_cluster(tmp_path / "serviceaccount")


async def test_in_cluster_credentials_over_tls_and_a_rotated_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pod's service account: its CA verifies the API server (another CA's server is
    refused), its token is sent, and a token the kubelet rotated is read again when the API
    server refuses the old one."""
    pki = make_pki(tmp_path / "pki")
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(TOKEN)
    (account / "namespace").write_text(NS)
    server = FakeApiServer(NS)
    async with server.serving(tls=pki.issue("kubernetes")):
        host, port = server.url.removeprefix("https://").split(":")
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
        (account / "ca.crt").write_bytes(make_pki(tmp_path / "other", "other-ca").ca.read_bytes())
        stranger = KubeApi.in_cluster(account)
        with pytest.raises(KubernetesError, match="CERTIFICATE_VERIFY_FAILED"):
            await stranger.list_jobs(NS, {})
        await stranger.aclose()
        assert server.calls == []

        (account / "ca.crt").write_bytes(pki.ca.read_bytes())
        api = KubeApi.in_cluster(account)
        try:
            handle = await _start(tmp_path, api, {})
            server.tokens = frozenset({"rotated"})
            (account / "token").write_text("rotated")
            exit_ = await handle.wait()
        finally:
            await api.aclose()
    assert exit_.returncode == 0
    sent = [call.authorization for call in server.calls]
    assert sent[0] == f"Bearer {TOKEN}" and sent[-1] == "Bearer rotated"


@pytest.mark.parametrize("exit_code", [0, 3])
async def test_a_long_step_outlives_many_watch_closes_and_410s(
    tmp_path: Path, exit_code: int
) -> None:
    """The API server ends the watch every 0.5 s (a real one: every few minutes), answers
    410 Gone twice (once as a status, once as an ERROR event) and drops one connection; the step
    "runs" 20 minutes of the fake's clock, one per watch, and ends with its real outcome."""
    server = FakeApiServer(
        NS,
        exit_code=exit_code,
        finishes_at=20,
        watch_s=0.5,
        gone=frozenset({6, 11}),
        dropped=frozenset({15}),
    )
    async with serving(server) as api:
        handle = await _start(tmp_path, api, {})
        exit_ = await asyncio.wait_for(handle.wait(), 120)
    assert exit_.returncode == exit_code and exit_.signal is None
    assert exit_.platform_fault is None
    watches = server.watches()
    assert len(watches) == 20
    # each watch asks for the version the one before it ended at; after a 410 or a dropped
    # connection the Job is listed again and watched from the list's version
    named = [c for c in server.lists() if "fieldSelector" in c.params]
    assert len(named) == 4, "one list at the start, one after each 410 and the drop"
    asked = [int(w.params["resourceVersion"]) for w in watches]
    ended_at = iter(server.versions_sent)
    for number, version in enumerate(asked, start=1):
        if number - 1 in (0, 6, 11, 15):  # the first, and those after a 410 or a drop: a list
            continue
        assert version == next(ended_at), f"watch {number} resumes where the last one ended"
    assert asked == sorted(asked) and asked[-1] > asked[0]
    assert server.deleted[-1][0] == handle.name and not server.jobs


def _permission(call: Call) -> tuple[str, str, str]:
    """The (API group, resource, verb) RBAC checks for a call."""
    parts = call.path.strip("/").split("/")
    group = "" if parts[0] == "api" else parts[1]
    rest = parts[parts.index("namespaces") + 2 :]
    resource = "/".join([rest[0], *rest[2:]])  # pods/{name}/log is resource pods/log
    if call.method == "GET":
        verb = "watch" if call.params.get("watch") == "true" else "get" if rest[1:] else "list"
    else:
        verb = {"POST": "create", "DELETE": "delete"}[call.method]
    return group, resource, verb


async def test_the_charts_role_allows_exactly_the_calls_made(
    party_a: list[Manifest], tmp_path: Path
) -> None:
    """Every call of a worker's life (orphans, a superseded attempt, a step that lists again after
    a 410, its log, a kill) is allowed by the task_engine's Role, and the Role allows no more."""
    server = FakeApiServer(NS, finishes_at=4, gone=frozenset({2}))
    server.add("orphan", _step_labels("job-1", "train", 0), owner_uid=WORKER_UID)
    async with serving(server) as api:
        await _runtime(tmp_path, api).delete_orphans()
        handle = await _start(tmp_path, api, {}, attempt=1)
        await handle.wait()
        await handle.kill()
    made = {_permission(call) for call in server.calls}
    role = by_kind(party_a, "Role")["task-engine-steps"]
    allowed = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert made == allowed
