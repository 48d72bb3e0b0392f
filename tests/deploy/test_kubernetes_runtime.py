"""task_engine.kubernetes: the step Job's spec against the Kubernetes schemas, and the runtime's
create / watch / log / delete cycle against a fake API server."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import Tools, kubeconform

from task_engine.kubernetes import (
    KubernetesConfig,
    KubernetesError,
    KubernetesRuntime,
    render_job,
)
from task_engine.runtime import StepLaunch
from task_engine.step import write_spec


def config(root: Path) -> KubernetesConfig:
    return KubernetesConfig(
        namespace="tessera-10000",
        image="tessera/runtime:0.1.0",
        claim="party-state",
        volume_root=root,
        node_name="node-a",
        cpu_limit="1500m",
        memory_mb=1024,
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


class FakeApi:
    """The API server as the runtime sees it: the Job completes with the given exit code."""

    def __init__(self, exit_code: int | None) -> None:
        self.exit_code = exit_code
        self.created: list[dict[str, Any]] = []
        self.deleted: list[tuple[str, int]] = []

    async def create_job(self, namespace: str, manifest: dict[str, Any]) -> None:
        self.created.append(manifest)

    async def watch_job(self, namespace: str, name: str) -> AsyncIterator[dict[str, Any]]:
        yield {"type": "ADDED", "object": {"status": {}}}
        if self.exit_code is None:  # killed: the Job disappears
            yield {"type": "DELETED", "object": {}}
            return
        kind = "Complete" if self.exit_code == 0 else "Failed"
        yield {
            "type": "MODIFIED",
            "object": {"status": {"conditions": [{"type": kind, "status": "True"}]}},
        }

    async def job_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        code = self.exit_code if self.exit_code is not None else 137
        return {
            "metadata": {"name": f"{name}-abcde"},
            "status": {
                "phase": "Succeeded" if code == 0 else "Failed",
                "containerStatuses": [{"state": {"terminated": {"exitCode": code}}}],
            },
        }

    async def stream_log(self, namespace: str, pod: str) -> AsyncIterator[bytes]:
        yield b"step says hello\n"

    async def delete_job(self, namespace: str, name: str, grace_s: int) -> None:
        self.deleted.append((name, grace_s))


async def _start(tmp_path: Path, api: FakeApi, args: dict[str, Any]) -> Any:
    step = launch(tmp_path)
    step.work_dir.mkdir(parents=True)
    write_spec(step.work_dir, {"job_id": "job-1", "task": "train", "args": args})
    runtime = KubernetesRuntime(config(tmp_path), api, extra_env={"PYTHONPATH": "/x"})
    return await runtime.start(step)


async def test_a_step_runs_as_a_job_and_is_deleted_after(tmp_path: Path) -> None:
    api = FakeApi(exit_code=3)
    handle = await _start(tmp_path, api, {"runtime-image": "registry.example/algo:2"})
    (job,) = api.created
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/algo:2"
    assert job["metadata"]["labels"]["tessera.io/step"] == "train"
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "PYTHONPATH", "value": "/opt/extra"} in env, "the launch wins over extra_env"
    assert (tmp_path / "out" / "job-1").is_dir(), "writable paths exist before the mount"
    exit_ = await handle.wait()
    assert exit_.returncode == 3 and exit_.signal is None
    assert api.deleted[-1] == (handle.name, 0)


async def test_default_image_and_kill(tmp_path: Path) -> None:
    api = FakeApi(exit_code=None)
    handle = await _start(tmp_path, api, {})
    image = api.created[0]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "tessera/runtime:0.1.0"
    await handle.kill()
    exit_ = await handle.wait()
    assert exit_.signal == signal.SIGKILL and exit_.returncode is None


def test_config_from_the_chart_environment() -> None:
    with pytest.raises(KubernetesError, match="STEP_NAMESPACE"):
        KubernetesConfig.from_environ({"STEP_IMAGE": "x:1", "STEP_CLAIM": "c"})
    cfg = KubernetesConfig.from_environ(
        {
            "STEP_NAMESPACE": "tessera-1",
            "STEP_IMAGE": "x:1",
            "STEP_CLAIM": "party-state",
            "STEP_VOLUME_ROOT": "/var/lib/tessera",
            "STEP_NODE_NAME": "n1",
            "STEP_MEMORY_MB": "512",
        }
    )
    assert cfg.memory_mb == 512 and cfg.node_name == "n1" and cfg.volume_root.name == "tessera"
