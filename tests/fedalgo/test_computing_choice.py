"""Which engine a step gets: the job's Spark keys, within what the party offers (pure logic)."""

from __future__ import annotations

import pytest

from fedalgo.computing.choice import SparkOffer, choose, parse_submit_args
from fedalgo.errors import ArgumentError
from fedcore.settings import PartySettings

CLUSTER = SparkOffer(
    master="spark://spark-master:7077",
    submit_args="--executor-memory 2g --conf spark.executorEnv.X=1",
    hadoop_conf_dir="/etc/hadoop",
    hadoop_users="tessera,etl",
    extra_libs_path="hdfs://nn/libs",
)


def test_no_master_means_the_local_engine() -> None:
    assert choose({}, CLUSTER).engine == "local"
    assert choose({"spark-master-name": " "}, SparkOffer()).engine == "local"


@pytest.mark.parametrize("master", ["local", "local[*]", "local[2]"])
def test_local_spark_is_always_allowed(master: str) -> None:
    choice = choose({"spark-master-name": master}, SparkOffer())
    assert (choice.engine, choice.master, choice.env) == ("spark", master, {})


def test_a_cluster_master_only_if_the_party_configured_it() -> None:
    with pytest.raises(ArgumentError, match="offers no Spark cluster"):
        choose({"spark-master-name": "spark://elsewhere:7077"}, SparkOffer())
    with pytest.raises(ArgumentError, match="not the Spark master this party configured"):
        choose({"spark-master-name": "spark://elsewhere:7077"}, CLUSTER)
    with pytest.raises(ArgumentError, match="must be a string"):
        choose({"spark-master-name": 7077}, CLUSTER)
    choice = choose({"spark-master-name": CLUSTER.master}, CLUSTER)
    assert choice.master == CLUSTER.master
    # the party's own defaults, then its Hadoop configuration and first user
    assert choice.conf == {"spark.executor.memory": "2g", "spark.executorEnv.X": "1"}
    assert choice.env == {"HADOOP_CONF_DIR": "/etc/hadoop", "HADOOP_USER_NAME": "tessera"}


def test_a_jobs_keys_are_honoured_within_the_offer() -> None:
    args = {
        "spark-master-name": "local[*]",
        "spark-submit-args": "--executor-memory=4g --num-executors 3 --conf spark.cores.max=6",
        "hadoop-config": "/etc/hadoop/prod",
        "hadoop-user-name": "etl",
        "hdfs-libs-path": "hdfs://nn/libs/extra.zip",
    }
    choice = choose(args, CLUSTER)
    assert choice.conf["spark.executor.memory"] == "4g"  # the job's over the party's default
    assert choice.conf["spark.executor.instances"] == "3"
    assert choice.conf["spark.cores.max"] == "6"
    assert choice.conf["spark.submit.pyFiles"] == "hdfs://nn/libs/extra.zip"
    assert choice.env == {"HADOOP_CONF_DIR": "/etc/hadoop/prod", "HADOOP_USER_NAME": "etl"}


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("spark-submit-args", "--conf spark.pyspark.python=/bin/sh", "may not set"),
        ("spark-submit-args", "--conf spark.executor.extraJavaOptions=-X", "may not set"),
        ("spark-submit-args", "--py-files evil.zip", "unsupported flag"),
        ("spark-submit-args", "--executor-memory", "needs a value"),
        ("spark-submit-args", "--conf 'unclosed", "No closing quotation"),
        ("hadoop-config", "/etc/other", "HADOOP_CONF_DIR"),
        ("hadoop-config", "/etc/hadoop/../shadow", "HADOOP_CONF_DIR"),
        ("hadoop-user-name", "hdfs", "not a user"),
        ("hdfs-libs-path", "hdfs://nn/elsewhere.zip", "SPARK_EXTRA_LIBS_PATH"),
    ],
)
def test_what_the_party_does_not_allow_fails(key: str, value: str, error: str) -> None:
    with pytest.raises(ArgumentError, match=error):
        choose({"spark-master-name": "local[2]", key: value}, CLUSTER)


def test_the_offer_travels_from_the_settings_as_environment_variables() -> None:
    settings = PartySettings.from_env(
        environ={
            "PARTY_ID": "10000",
            "SPARK_MASTER": CLUSTER.master,
            "SPARK_SUBMIT_ARGS": CLUSTER.submit_args,
            "HADOOP_CONF_DIR": CLUSTER.hadoop_conf_dir,
            "HADOOP_USER_NAME": CLUSTER.hadoop_users,
            "SPARK_EXTRA_LIBS_PATH": CLUSTER.extra_libs_path,
            "SPARK_STEP_MEMORY_MB": "6144",
        }
    )
    assert SparkOffer.from_environ(settings.spark_environ()) == CLUSTER
    assert settings.spark_step_memory_mb == 6144
    assert PartySettings(party_id="1", kafka_bootstrap="k:1").spark_environ() == {}
    assert not SparkOffer(master="local[4]").cluster
    assert parse_submit_args("", trusted=False) == {}
