"""The chart's Spark values: an external master, Spark on Kubernetes, and the step Jobs that
compute on them (rendered, validated against the offline Kubernetes schemas)."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
import yaml
from deploy_helpers import CHART, Manifest, Tools, by_kind, env_file, kubeconform, render
from test_chart import _party_env, _party_flags
from test_deploy_sh import errors_of
from test_kubernetes_runtime import config, launch

from task_engine.kubernetes import render_job

K8S_MASTER = "k8s://https://kubernetes.default.svc:443"


def _template(tools: Tools, env_dir: Path, *sets: str) -> subprocess.CompletedProcess[str]:
    flags = _party_flags(env_dir, *sets)
    return subprocess.run(
        [str(tools.helm), "template", "t", str(CHART), "-n", "tessera-10000", *flags],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _render(tools: Tools, env_dir: Path, tmp_path: Path, *sets: str) -> list[Manifest]:
    result = _template(tools, env_dir, *sets)
    assert result.returncode == 0, result.stderr
    kubeconform(tools, [result.stdout], tmp_path / "schemas")
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_by_default_steps_may_use_local_spark_only(party_a: list[Manifest]) -> None:
    env = _party_env(party_a)
    assert env["SPARK_STEP_MEMORY_MB"] == "8192"
    assert not {"SPARK_MASTER", "SPARK_SUBMIT_ARGS", "HADOOP_CONF_DIR"} & set(env)
    assert "spark-driver-steps" not in by_kind(party_a, "NetworkPolicy")
    assert "spark-driver" not in by_kind(party_a, "ServiceAccount")


def test_an_external_master(tools: Tools, env_dir: Path, tmp_path: Path) -> None:
    docs = _render(
        tools,
        env_dir,
        tmp_path,
        "spark.master=spark://spark-master.spark:7077",
        "spark.submitArgs=--executor-memory 4g",
        "spark.hadoopConfDir=/etc/hadoop",
        "spark.hadoopUserName=tessera",
        "spark.clusterCidrs={10.20.0.0/16}",
    )
    env = _party_env(docs)
    assert env["SPARK_MASTER"] == "spark://spark-master.spark:7077"
    assert env["SPARK_SUBMIT_ARGS"] == "--executor-memory 4g"
    assert (env["HADOOP_CONF_DIR"], env["HADOOP_USER_NAME"]) == ("/etc/hadoop", "tessera")
    policy = by_kind(docs, "NetworkPolicy")["spark-driver-steps"]["spec"]
    assert policy["podSelector"]["matchLabels"] == {
        "tessera.io/role": "step",
        "tessera.io/spark": "cluster",
    }
    assert {"ipBlock": {"cidr": "10.20.0.0/16"}} in policy["ingress"][0]["from"]
    assert {"ipBlock": {"cidr": "10.20.0.0/16"}} in policy["egress"][1]["to"]


def test_spark_on_kubernetes(tools: Tools, env_dir: Path, tmp_path: Path) -> None:
    docs = _render(tools, env_dir, tmp_path, "spark.kubernetes.enabled=true")
    env = _party_env(docs)
    assert env["SPARK_MASTER"] == K8S_MASTER
    args = env["SPARK_SUBMIT_ARGS"]
    assert "--conf spark.kubernetes.namespace=tessera-10000" in args
    assert "--conf spark.kubernetes.container.image=tessera/runtime:0.1.0" in args
    assert "spark.kubernetes.authenticate.driver.serviceAccountName=spark-driver" in args
    assert "--conf spark.executor.instances=2" in args
    assert by_kind(docs, "ServiceAccount")["spark-driver"]["automountServiceAccountToken"] is False
    rules = by_kind(docs, "Role")["spark-driver"]["rules"]
    assert [r["resources"] for r in rules] == [
        ["pods", "services", "configmaps", "persistentvolumeclaims"]
    ]
    worker = by_kind(docs, "Deployment")["task-engine"]["spec"]["template"]["spec"]
    (container,) = worker["containers"]
    assert {"name": "STEP_SPARK_SERVICE_ACCOUNT", "value": "spark-driver"} in container["env"]
    policy = by_kind(docs, "NetworkPolicy")["spark-driver-steps"]["spec"]
    assert {"podSelector": {"matchLabels": {"spark-role": "executor"}}} in policy["ingress"][0][
        "from"
    ]


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (
            ("spark.kubernetes.enabled=true", "spark.master=spark://m:7077"),
            "spark.kubernetes.enabled sets SPARK_MASTER itself",
        ),
        (
            ("extraEnv.SPARK_MASTER=spark://m:7077",),
            "the chart sets SPARK_MASTER from spark.master",
        ),
    ],
)
def test_conflicting_spark_values_are_refused(
    tools: Tools, env_dir: Path, sets: tuple[str, ...], expected: str
) -> None:
    result = _template(tools, env_dir, *sets)
    assert result.returncode != 0 and expected in result.stderr, result.stderr


def test_a_step_on_spark_on_kubernetes_is_its_driver(tools: Tools, tmp_path: Path) -> None:
    cfg = dataclasses.replace(
        config(tmp_path),
        spark_master=K8S_MASTER,
        spark_memory_mb=6144,
        spark_service_account="spark-driver",
    )
    on_cluster = dataclasses.replace(launch(tmp_path), spark_master=K8S_MASTER)
    job = render_job(cfg, on_cluster, image="tessera/runtime:0.1.0", labels={})
    kubeconform(tools, [job], tmp_path / "schemas")
    pod = job["spec"]["template"]["spec"]
    assert job["spec"]["template"]["metadata"]["labels"]["tessera.io/spark"] == "cluster"
    assert pod["serviceAccountName"] == "spark-driver" and pod["automountServiceAccountToken"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["memory"] == "6144Mi"
    host = next(e for e in container["env"] if e["name"] == "SPARK_DRIVER_HOST")
    assert host["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}

    local = dataclasses.replace(launch(tmp_path), spark_master="local[*]")
    pod = render_job(cfg, local, image="x:1", labels={})["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod
    assert (
        "tessera.io/spark"
        not in render_job(cfg, local, image="x:1", labels={})["metadata"]["labels"]
    )
    assert pod["containers"][0]["resources"]["limits"]["memory"] == "6144Mi"


def test_the_env_file_says_what_the_party_offers(tools: Tools, env_dir: Path) -> None:
    path = env_file(
        env_dir,
        "10000",
        SPARK_MASTER="spark://spark-master.spark:7077",
        SPARK_CLUSTER_CIDRS="10.20.0.0/16,10.21.0.0/16",
        SPARK_SUBMIT_ARGS='"--executor-memory 4g --conf spark.driver.host=step"',
        HADOOP_USER_NAME="tessera,etl",
    )
    docs = render(tools, path)
    env = _party_env(docs)
    assert env["SPARK_MASTER"] == "spark://spark-master.spark:7077"
    assert env["SPARK_SUBMIT_ARGS"] == "--executor-memory 4g --conf spark.driver.host=step"
    assert env["HADOOP_USER_NAME"] == "tessera,etl"
    egress = by_kind(docs, "NetworkPolicy")["spark-driver-steps"]["spec"]["egress"][1]["to"]
    assert egress == [{"ipBlock": {"cidr": c}} for c in ("10.20.0.0/16", "10.21.0.0/16")]
    k8s = _party_env(render(tools, env_file(env_dir, "10000", SPARK_ON_KUBERNETES="1")))
    assert k8s["SPARK_MASTER"] == K8S_MASTER


def test_bad_spark_settings_are_refused_before_anything_is_applied(
    tools: Tools, env_dir: Path
) -> None:
    bad = {"SPARK_ON_KUBERNETES": "yes", "SPARK_MASTER": "http://x", "SPARK_CLUSTER_CIDRS": "x"}
    path = env_file(env_dir, "10000", **bad)
    stderr = errors_of(tools, path)
    assert "SPARK_ON_KUBERNETES='yes' must be 0 or 1" in stderr
    assert "SPARK_MASTER='http://x' is malformed" in stderr
    assert "SPARK_CLUSTER_CIDRS: 'x' is not a CIDR" in stderr
