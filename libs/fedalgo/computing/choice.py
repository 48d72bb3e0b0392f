"""Which engine a step computes on: what its job asks for, within what this party offers.

A job asks with PowerFL's keys: ``spark-master-name`` (common-args) and ``spark-submit-args``,
``hadoop-config``, ``hadoop-user-name``, ``hdfs-libs-path`` (a party's own parties-args). The
party offers, in its settings (:class:`SparkOffer`, passed to the step as environment
variables): ``SPARK_MASTER`` (the one cluster master its steps may use), ``SPARK_SUBMIT_ARGS``
(its defaults), ``HADOOP_CONF_DIR`` (the Hadoop configuration, or a folder of them),
``HADOOP_USER_NAME`` (the users a job may run as, comma-separated; the first is the default) and
``SPARK_EXTRA_LIBS_PATH`` (where a job's ``hdfs-libs-path`` may point).

Rules: no ``spark-master-name`` means the local engine; ``local``, ``local[*]`` and ``local[N]``
are always allowed (Spark inside the step's own sandbox); any other master only if it is the one
this party configured. A job's submit args may size the executors and driver (memory, cores,
instances, parallelism), nothing that runs code or changes where it runs; the party's own
``SPARK_SUBMIT_ARGS`` are taken as they are. Anything else fails the step with a reason that
names the key but not the party's configuration.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

from fedalgo.computing.base import Computing
from fedalgo.computing.local import LocalComputing
from fedalgo.errors import ArgumentError

Engine = Literal["local", "spark"]
LOCAL_MASTER = re.compile(r"^local(\[(\*|[1-9][0-9]{0,3})\])?$")
# spark-submit flags a job may give, and the configuration each one sets.
_FLAGS = {
    "--driver-memory": "spark.driver.memory",
    "--driver-cores": "spark.driver.cores",
    "--executor-memory": "spark.executor.memory",
    "--executor-cores": "spark.executor.cores",
    "--num-executors": "spark.executor.instances",
    "--total-executor-cores": "spark.cores.max",
}
# --conf keys a job may set: sizes only (no class paths, Java options, Python or environment).
_JOB_CONF = re.compile(
    r"^spark\.(driver\.(memory|cores|maxResultSize)|executor\.(memory|cores|instances)"
    r"|cores\.max|default\.parallelism|task\.cpus|memory\.fraction"
    r"|dynamicAllocation\.(enabled|minExecutors|maxExecutors))$"
)
_OFFER_ENV = {
    "master": "SPARK_MASTER",
    "submit_args": "SPARK_SUBMIT_ARGS",
    "hadoop_conf_dir": "HADOOP_CONF_DIR",
    "hadoop_users": "HADOOP_USER_NAME",
    "extra_libs_path": "SPARK_EXTRA_LIBS_PATH",
}


@dataclass(frozen=True)
class SparkOffer:
    """What this party lets its steps use (its settings; empty: only ``local[*]``)."""

    master: str = ""
    submit_args: str = ""
    hadoop_conf_dir: str = ""
    hadoop_users: str = ""
    extra_libs_path: str = ""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SparkOffer:
        """The offer a worker hands its steps (``PartySettings.spark_environ``)."""
        return cls(**{f: environ.get(var, "").strip() for f, var in _OFFER_ENV.items()})

    @property
    def cluster(self) -> bool:
        """Whether the party configured a cluster master (not only local Spark)."""
        return bool(self.master) and not LOCAL_MASTER.match(self.master)


@dataclass(frozen=True)
class EngineChoice:
    """The engine a step runs on, its Spark configuration and its Hadoop environment."""

    engine: Engine = "local"
    master: str = ""
    conf: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


def requested_master(args: Mapping[str, Any]) -> str:
    """The job's ``spark-master-name`` ('' when it asks for none)."""
    raw = args.get("spark-master-name", args.get("spark_master_name"))
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise ArgumentError(f"argument 'spark-master-name' must be a string, got {raw!r}")
    return raw.strip()


def is_local_master(master: str) -> bool:
    return bool(LOCAL_MASTER.match(master))


def _arg(args: Mapping[str, Any], name: str) -> str:
    raw = args.get(name, args.get(name.replace("-", "_")))
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise ArgumentError(f"argument {name!r} must be a string, got {raw!r}")
    return raw.strip()


def parse_submit_args(text: str, *, trusted: bool) -> dict[str, str]:
    """Spark configuration from spark-submit flags (``--conf k=v`` and the sizing flags).

    ``trusted`` (the party's own SPARK_SUBMIT_ARGS) accepts any ``--conf``; a job's may only set
    the sizes in ``_JOB_CONF``.
    """
    where = "SPARK_SUBMIT_ARGS" if trusted else "argument 'spark-submit-args'"
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ArgumentError(f"{where}: {exc}") from None
    conf: dict[str, str] = {}
    i = 0
    while i < len(words):
        flag = words[i]
        name, eq, inline = flag.partition("=")
        if eq:
            flag, value, i = name, inline, i + 1
        elif i + 1 < len(words):
            value, i = words[i + 1], i + 2
        else:
            raise ArgumentError(f"{where}: {flag} needs a value")
        if flag == "--conf":
            key, sep, setting = value.partition("=")
            if not sep or not key:
                raise ArgumentError(f"{where}: --conf needs key=value, got {value!r}")
            if not trusted and not _JOB_CONF.match(key):
                raise ArgumentError(
                    f"{where}: a job may not set {key!r} (only executor and driver sizes)"
                )
            conf[key] = setting
        elif flag in _FLAGS:
            conf[_FLAGS[flag]] = value
        else:
            allowed = ", ".join(["--conf", *_FLAGS])
            raise ArgumentError(f"{where}: unsupported flag {flag!r} (allowed: {allowed})")
    return conf


def _within(path: str, root: str) -> bool:
    if "://" in root:
        return path == root or (path.startswith(root.rstrip("/") + "/") and ".." not in path)
    p, r = PurePosixPath(path), PurePosixPath(root)
    return ".." not in p.parts and (p == r or p.is_relative_to(r))


def choose(args: Mapping[str, Any], offer: SparkOffer) -> EngineChoice:
    """The engine for a step with these (merged) job ``args``; ArgumentError if not allowed."""
    master = requested_master(args)
    if not master:
        return EngineChoice()
    if not is_local_master(master):
        if not offer.cluster:
            raise ArgumentError(
                f"spark-master-name {master!r}: this party offers no Spark cluster "
                "(only local[*]; its operator sets SPARK_MASTER to offer one)"
            )
        if master != offer.master:
            raise ArgumentError(
                f"spark-master-name {master!r} is not the Spark master this party configured "
                "(a job may name local[*] or that master only)"
            )
    conf = parse_submit_args(offer.submit_args, trusted=True)
    conf.update(parse_submit_args(_arg(args, "spark-submit-args"), trusted=False))
    env: dict[str, str] = {}
    hadoop_conf = _arg(args, "hadoop-config") or offer.hadoop_conf_dir
    if hadoop_conf:
        if not offer.hadoop_conf_dir or not _within(hadoop_conf, offer.hadoop_conf_dir):
            raise ArgumentError(
                "argument 'hadoop-config' must be the Hadoop configuration this party "
                "offers (HADOOP_CONF_DIR) or a folder inside it"
            )
        env["HADOOP_CONF_DIR"] = hadoop_conf
    users = [u.strip() for u in offer.hadoop_users.split(",") if u.strip()]
    user = _arg(args, "hadoop-user-name") or (users[0] if users else "")
    if user:
        if user not in users:
            raise ArgumentError(
                f"argument 'hadoop-user-name' {user!r} is not a user this party lets jobs use"
            )
        env["HADOOP_USER_NAME"] = user
    libs = _arg(args, "hdfs-libs-path")
    if libs:
        if not offer.extra_libs_path or not _within(libs, offer.extra_libs_path):
            raise ArgumentError(
                "argument 'hdfs-libs-path' must lie under this party's SPARK_EXTRA_LIBS_PATH"
            )
        conf["spark.submit.pyFiles"] = libs
    return EngineChoice("spark", master, conf, env)


def open_computing(choice: EngineChoice) -> Computing:
    """Start the engine ``choice`` names (a Spark session, for Spark)."""
    if choice.engine == "local":
        return LocalComputing()
    from fedalgo.computing.spark import SparkComputing  # only a Spark step imports pyspark

    return SparkComputing.start(choice.master, choice.conf)
