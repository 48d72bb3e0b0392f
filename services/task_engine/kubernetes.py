"""The Kubernetes step runtime: each step is a ``batch/v1`` Job in the party's namespace.

The worker's protocol is unchanged (:class:`task_engine.runtime.StepRuntime`): the Job's pod runs
``python -m task_engine.step`` from the runtime image, in the step's work dir, and talks to its
worker over the Unix socket there. So the pod mounts the task_engine's state claim at the same
path and is pinned to the task_engine's node (a Unix socket does not cross nodes); the claim is
read-only except the work dir and the step's writable paths. The pod has no service account
token, no privilege, a read-only root, a non-root uid and CPU/memory limits; a NetworkPolicy in
the chart keeps it off the network. Configuration comes from ``STEP_*`` variables set by the chart.

No step Job outlives the attempt it runs, even when its worker is lost:

* every Job is labelled with its job id, step and attempt, and owned (``ownerReferences``) by the
  worker's pod, so Kubernetes' garbage collector deletes it when that pod is deleted (an upgrade,
  an eviction, a lost node), with no worker needed;
* a worker deletes, before it starts, the Jobs its pod owns: a container of the same pod that
  died (SIGKILL, OOM, failed liveness probe) left them, and nothing is left to relay or report
  their steps, which the flow_server fails as lost;
* starting attempt N of a step deletes that step's Jobs of attempts up to N, whichever worker
  made them: a retry or rerun supersedes them, and one of this very attempt is a leftover of a
  worker that died after launching it;
* ``activeDeadlineSeconds`` (``TASK_TIMEOUT_S``) bounds what escapes all of these.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from lightkube.core.client import LabelSelector
from lightkube.models.batch_v1 import JobCondition
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Pod

from task_engine.kubeapi import KubeApi, KubernetesError
from task_engine.runtime import STDERR_FILE, StepExit, StepLaunch, tail
from task_engine.step import SPEC_FILE, read_spec

IMAGE_ARG: Final = "runtime-image"
POD_START_POLLS: Final = 600  # seconds waiting for an image pull before giving up the log
STEP_LABELS: Final[LabelSelector] = {
    "app.kubernetes.io/part-of": "tessera",
    "tessera.io/role": "step",
}
JOB_ID_LABEL: Final = "tessera.io/job-id"
STEP_LABEL: Final = "tessera.io/step"
ATTEMPT_LABEL: Final = "tessera.io/attempt"
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.-]")

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerPod:
    """The pod the worker runs in (downward API): the owner of its step Jobs."""

    name: str
    uid: str

    def owner_reference(self) -> dict[str, str]:
        return {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid}


@dataclass(frozen=True)
class KubernetesConfig:
    """Where and how step Jobs run (the chart sets the ``STEP_*`` variables)."""

    namespace: str
    image: str
    claim: str
    volume_root: Path
    worker_pod: WorkerPod
    node_name: str | None = None
    cpu_limit: str = "2"
    memory_mb: int = 2048
    run_as_user: int = 10001
    timeout_s: int = 3600
    kill_grace_s: int = 10
    ttl_after_finished_s: int = 600
    # the other images a job's ``runtime-image`` may name (STEP_IMAGES; ``image`` always may)
    allowed_images: tuple[str, ...] = ()
    # Spark (fedalgo.computing.choice): the master this party configured, a Spark step's memory,
    # and the ServiceAccount a step on Spark-on-Kubernetes runs under (the chart's spark-driver).
    spark_master: str = ""
    spark_memory_mb: int = 8192
    spark_service_account: str = ""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> KubernetesConfig:
        required = ("STEP_NAMESPACE", "STEP_IMAGE", "STEP_CLAIM", "STEP_POD_NAME", "STEP_POD_UID")
        missing = [k for k in required if not environ.get(k)]
        if missing:
            raise KubernetesError(f"the Kubernetes step runtime needs {', '.join(missing)}")
        return cls(
            namespace=environ["STEP_NAMESPACE"],
            image=environ["STEP_IMAGE"],
            claim=environ["STEP_CLAIM"],
            volume_root=Path(environ.get("STEP_VOLUME_ROOT", "/var/lib/tessera")),
            worker_pod=WorkerPod(environ["STEP_POD_NAME"], environ["STEP_POD_UID"]),
            node_name=environ.get("STEP_NODE_NAME") or None,
            cpu_limit=environ.get("STEP_CPU_LIMIT", "2"),
            memory_mb=int(environ.get("STEP_MEMORY_MB", "2048")),
            run_as_user=int(environ.get("STEP_RUN_AS_USER", "10001")),
            timeout_s=int(float(environ.get("TASK_TIMEOUT_S", "3600"))),
            allowed_images=tuple(
                i for i in re.split(r"[,\s]+", environ.get("STEP_IMAGES", "")) if i
            ),
            spark_master=environ.get("SPARK_MASTER", ""),
            spark_memory_mb=int(environ.get("SPARK_STEP_MEMORY_MB", "8192")),
            spark_service_account=environ.get("STEP_SPARK_SERVICE_ACCOUNT", ""),
        )

    def on_spark_cluster(self, launch: StepLaunch) -> bool:
        """Whether the step's job names this party's Spark cluster master (not local[...])."""
        master = launch.spark_master
        return bool(master) and master == self.spark_master and not master.startswith("local")


def job_name(work_dir: Path) -> str:
    """A DNS-1123 name unique per work dir (job, step and attempt)."""
    digest = hashlib.sha256(str(work_dir).encode()).hexdigest()[:16]
    return f"step-{digest}"


def _label(value: str) -> str:
    return _LABEL_VALUE.sub("-", value)[:63].strip("-_.") or "none"


def _sub_path(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError as exc:
        raise KubernetesError(f"{path} is not on the state volume {root}") from exc


def render_job(
    config: KubernetesConfig, launch: StepLaunch, *, image: str, labels: Mapping[str, str]
) -> dict[str, Any]:
    """The Job manifest of one step (pure: tested against the Kubernetes schemas)."""
    name = job_name(launch.work_dir)
    all_labels = {**STEP_LABELS, **labels}
    cluster = config.on_spark_cluster(launch)
    memory_mb = config.spark_memory_mb if launch.spark_master else config.memory_mb
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(launch.env.items())]
    if cluster:
        # The NetworkPolicy spark-driver-steps lets only these pods reach the cluster; its
        # executors connect back to the driver at the pod's address.
        all_labels["tessera.io/spark"] = "cluster"
        env.append(
            {"name": "SPARK_DRIVER_HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
        )
    mounts: list[dict[str, Any]] = [
        {"name": "state", "mountPath": str(config.volume_root), "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    for rw in (launch.work_dir, *launch.writable):
        sub = _sub_path(rw, config.volume_root)
        mounts.append({"name": "state", "mountPath": str(rw), "subPath": sub})
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": config.run_as_user,
            "runAsGroup": config.run_as_user,
            "fsGroup": config.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "step",
                "image": image,
                "command": ["python", "-m", "task_engine.step"],
                "workingDir": str(launch.work_dir),
                "env": env,
                "resources": {
                    "requests": {"cpu": "100m", "memory": f"{min(memory_mb, 256)}Mi"},
                    "limits": {"cpu": config.cpu_limit, "memory": f"{memory_mb}Mi"},
                },
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "privileged": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": mounts,
            }
        ],
        "volumes": [
            {"name": "state", "persistentVolumeClaim": {"claimName": config.claim}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
        ],
    }
    if cluster and config.spark_service_account and launch.spark_master.startswith("k8s://"):
        # Spark on Kubernetes: the driver creates its executor pods through the API server.
        pod_spec["serviceAccountName"] = config.spark_service_account
        pod_spec["automountServiceAccountToken"] = True
    if config.node_name:
        # The step's socket lives on this node's mount of the claim.
        pod_spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchFields": [
                                {
                                    "key": "metadata.name",
                                    "operator": "In",
                                    "values": [config.node_name],
                                }
                            ]
                        }
                    ]
                }
            }
        }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": config.namespace,
            "labels": all_labels,
            "ownerReferences": [config.worker_pod.owner_reference()],
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": config.timeout_s,
            "ttlSecondsAfterFinished": config.ttl_after_finished_s,
            "template": {"metadata": {"labels": all_labels}, "spec": pod_spec},
        },
    }


def _metadata(obj: Job | Pod) -> ObjectMeta:
    return obj.metadata or ObjectMeta()


def _conditions(job: Job) -> list[JobCondition]:
    return list(job.status.conditions or []) if job.status else []


def _finished(job: Job) -> str | None:
    for cond in _conditions(job):
        if cond.type in ("Complete", "Failed") and cond.status == "True":
            return str(cond.type)
    return None


def _timed_out(job: Job) -> bool:
    """The Job failed at its ``activeDeadlineSeconds`` (its pod deleted for it: no fault)."""
    return any(c.type == "Failed" and c.reason == "DeadlineExceeded" for c in _conditions(job))


def _exit_code(pod: Pod | None) -> int | None:
    for status in (pod.status.containerStatuses or []) if pod and pod.status else []:
        if status.state and status.state.terminated:
            return int(status.state.terminated.exitCode)
    return None


# pod status reasons the kubelet or the node controller set when they, not the step, ended a pod
_PLATFORM_REASONS: Final = frozenset({"Evicted", "NodeLost", "Preempting", "Terminated"})
MAX_FAULT_CHARS: Final = 300


def platform_fault(pod: Pod | None) -> str | None:
    """What the platform did to a failed step's pod (evicted it, lost or drained its node), or
    None if the step failed on its own. A failed Job whose pod is gone lost it with its node."""
    if pod is None:
        return "step pod lost (its node is gone)"
    if pod.status is None:
        return None
    message = str(pod.status.message or "")[:MAX_FAULT_CHARS]
    if pod.status.reason in _PLATFORM_REASONS:
        return f"step pod {pod.status.reason.lower()}: {message}".rstrip(": ")
    for cond in pod.status.conditions or []:
        # set by evictions, preemptions and the taint manager of an unreachable node
        if cond.type == "DisruptionTarget" and cond.status == "True":
            why = str(cond.reason or "disrupted")[:MAX_FAULT_CHARS]
            return f"step pod disrupted ({why}): {message}".rstrip(": ")
    return None


class JobHandle:
    """A step running as a Job: waits on its watch, copies its log, deletes it at the end."""

    def __init__(self, api: KubeApi, config: KubernetesConfig, name: str, work_dir: Path):
        self._api = api
        self._config = config
        self.name = name
        self._work_dir = work_dir
        self._killed = False
        self._log_task: asyncio.Task[None] | None = None

    async def _copy_log(self) -> None:
        """Stream the pod's output into the work dir (the step's own log lines reach Kafka
        through its socket; this keeps what the interpreter prints before or around them)."""
        ns = self._config.namespace
        pod: Pod | None = None
        for _ in range(POD_START_POLLS):  # the log endpoint answers only once the pod started
            pod = await self._api.job_pod(ns, self.name)
            if pod is not None and pod.status and pod.status.phase != "Pending":
                break
            await asyncio.sleep(1.0)
        if pod is None:
            return
        with (self._work_dir / STDERR_FILE).open("a", encoding="utf-8") as out:
            async for line in self._api.stream_log(ns, str(_metadata(pod).name)):
                out.write(line)
                out.flush()

    def start_log(self) -> None:
        self._log_task = asyncio.get_running_loop().create_task(self._copy_log())

    async def wait(self) -> StepExit:
        ns = self._config.namespace
        outcome: str | None = None
        job = Job()
        # the watch ends when the Job is gone (deleted: killed); closed at once when it finished
        async with contextlib.aclosing(self._api.watch_job(ns, self.name)) as states:
            async for job in states:
                outcome = _finished(job)
                if outcome:
                    break
        pod = await self._api.job_pod(ns, self.name)
        await self._stop_log()
        with contextlib.suppress(KubernetesError):
            await self._api.delete_job(ns, self.name, 0)
        if self._killed or outcome is None:
            return StepExit(None, signal.SIGKILL, tail(self._work_dir / STDERR_FILE))
        code = _exit_code(pod)
        if code is None:
            code = 0 if outcome == "Complete" else 1
        fault = platform_fault(pod) if outcome == "Failed" and not _timed_out(job) else None
        return StepExit(code, None, tail(self._work_dir / STDERR_FILE), fault)

    async def _stop_log(self) -> None:
        if self._log_task is not None:
            self._log_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, KubernetesError):
                await self._log_task
            self._log_task = None

    def suspend(self) -> bool:
        return False  # a pod cannot be frozen from here: a paused job's Job keeps running

    def resume(self) -> None:
        return None

    async def kill(self) -> None:
        self._killed = True
        await self._api.delete_job(self._config.namespace, self.name, self._config.kill_grace_s)


class KubernetesRuntime:
    """Runs each step as a Job from the default image, or the job's ``runtime-image`` when this
    party's own settings list it (a peer's proposal cannot choose what runs on this party)."""

    def __init__(
        self, config: KubernetesConfig, api: KubeApi, *, extra_env: Mapping[str, str] | None = None
    ) -> None:
        self._config = config
        self._api = api
        self._extra_env = dict(extra_env or {})

    def _image(self, work_dir: Path) -> str:
        spec = read_spec(work_dir) if (work_dir / SPEC_FILE).exists() else {}
        args = spec.get("args") or {}
        image = args.get(IMAGE_ARG) if isinstance(args, dict) else None
        if not image or image == self._config.image:
            return self._config.image
        if image not in self._config.allowed_images:
            raise KubernetesError(f"{IMAGE_ARG} {str(image)[:200]!r} is not in STEP_IMAGES")
        return str(image)

    async def delete_orphans(self) -> None:
        """Delete the step Jobs of this worker's pod: before the worker starts, they can only be
        a dead container's, whose steps nobody relays or reports any more."""
        uid = self._config.worker_pod.uid
        for job in await self._api.list_jobs(self._config.namespace, STEP_LABELS):
            owners = _metadata(job).ownerReferences or []
            if any(owner.uid == uid for owner in owners):
                await self._delete(job, "its worker died")

    async def _delete_superseded(self, job_id: str, step: str, attempt: int) -> None:
        """Delete the step's Jobs of attempts up to ``attempt`` (a retry or rerun supersedes
        them; one of this attempt is left by a worker that died after launching it)."""
        labels: LabelSelector = {**STEP_LABELS, JOB_ID_LABEL: job_id, STEP_LABEL: step}
        for job in await self._api.list_jobs(self._config.namespace, labels):
            old = (_metadata(job).labels or {}).get(ATTEMPT_LABEL, "")
            if old.isdigit() and int(old) <= attempt:
                await self._delete(job, f"attempt {attempt} of its step starts")

    async def _delete(self, job: Job, why: str) -> None:
        name = str(_metadata(job).name)
        _log.warning("deleting step Job %s: %s", name, why)
        await self._api.delete_job(self._config.namespace, name, 0)

    async def start(self, launch: StepLaunch) -> JobHandle:
        for rw in launch.writable:
            rw.mkdir(parents=True, exist_ok=True)  # a subPath must exist before the pod mounts it
        spec = read_spec(launch.work_dir) if (launch.work_dir / SPEC_FILE).exists() else {}
        job_id = _label(str(spec.get("job_id", launch.work_dir.parts[-3])))
        step = _label(str(spec.get("task", launch.work_dir.parts[-2])))
        attempt = int(spec.get("attempt", launch.work_dir.name))
        labels = {JOB_ID_LABEL: job_id, STEP_LABEL: step, ATTEMPT_LABEL: str(attempt)}
        launch = replace(launch, env={**self._extra_env, **launch.env})
        manifest = render_job(
            self._config, launch, image=self._image(launch.work_dir), labels=labels
        )
        name = manifest["metadata"]["name"]
        await self._delete_superseded(job_id, step, attempt)
        await self._api.create_job(manifest)
        _log.info(
            "step %s runs as Job %s (%s)",
            launch.work_dir,
            name,
            manifest["spec"]["template"]["spec"]["containers"][0]["image"],
        )
        handle = JobHandle(self._api, self._config, name, launch.work_dir)
        handle.start_log()
        return handle
