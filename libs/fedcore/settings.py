"""A party's settings, read from its env file and the environment (the PowerFL variable names).

Settings are built by each service's app factory, never at import time. The environment wins over
the env file, so one variable can be overridden for one run without editing the file.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator

from fedcore.floors import SecurityFloors

_PEER_URL = re.compile(r"^PARTY_MQ_HTTP_URL_(\d+)$")
_PEER_KEY = re.compile(r"^PARTY_PUBLIC_KEY_(\d+)$")
# SecurityFloors field → its variable
_FLOORS = {
    "min_key_bits": "FLOOR_MIN_KEY_BITS",
    "min_batch_rows": "FLOOR_MIN_BATCH_ROWS",
    "max_bins": "FLOOR_MAX_BINS",
}
_PEER_GRANT = re.compile(r"^GRANT_INPUT_PATHS_(\d+)$")


def _words(value: str) -> list[str]:
    """A comma- or space-separated list."""
    return [w for w in re.split(r"[,\s]+", value) if w]


class SettingsError(ValueError):
    """An env file or variable is missing or malformed; the message names it."""


def read_env_file(path: str | Path) -> dict[str, str]:
    """Parse a shell-style env file: ``KEY=value`` lines, optional ``export``, quotes, comments."""
    values: dict[str, str] = {}
    for lineno, line in enumerate(Path(path).read_text().splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("export "):
            text = text[len("export ") :].lstrip()
        key, sep, raw = text.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise SettingsError(f"{path}:{lineno}: expected KEY=value, got {line!r}")
        parts = shlex.split(raw, comments=True) if raw.strip() else [""]
        values[key] = " ".join(parts)
    return values


def environment(
    env_file: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Variables of the env file (or $TESSERA_ENV_FILE), overlaid with ``environ``."""
    env: dict[str, str] = {}
    path = env_file or os.environ.get("TESSERA_ENV_FILE")
    if path:
        env.update(read_env_file(path))
    env.update(os.environ if environ is None else environ)
    return env


class PartySettings(BaseModel):
    """Everything a Tessera service needs to know about its party and its peers."""

    party_id: str = Field(pattern=r"^\d+$")
    domain: str = "localhost"
    bind_host: str = "127.0.0.1"
    kafka_bootstrap: str
    flow_server_port: int = 9380
    bridge_port: int = 9370
    dashboard_port: int = 8080
    task_engine_port: int = 9360
    database_url: str | None = None
    # the dashboard's own tables (job views, metrics, log tails); its tables and migration
    # history are prefixed "dashboard_", so it may share the flow_server's PostgreSQL database
    dashboard_database_url: str | None = None
    state_dir: Path = Path(".run/state")
    # where this party's step outputs go (a peer's `output` only under a prefix granted for it)
    output_root: Path | None = None
    # where else this party's data may be: a received input path or output dir must lie under
    # STATE_DIR or one of these (DATA_ROOTS, separated by ":")
    data_roots: list[Path] = Field(default_factory=list)
    # peer party id -> its bridge's base URL
    peers: dict[str, str] = Field(default_factory=dict)
    # party id -> path of its Ed25519 public key (PEM); this party's private key below
    public_keys: dict[str, Path] = Field(default_factory=dict)
    private_key_file: Path | None = None
    task_timeout_s: float = 3600.0
    # how long a job's initiator waits for every party to accept its proposal
    accept_timeout_s: float = 60.0
    worker_concurrency: int = 2
    # how often each task_engine worker lists its running steps on fl.status (worker.heartbeat),
    # and how long the flow_server waits for a running step to be listed before it fails it
    # (default: three intervals)
    heartbeat_interval_s: float = Field(default=5.0, gt=0)
    heartbeat_timeout_s: float | None = Field(default=None, gt=0)
    # how many times this party reruns a step (at attempt + 1, on every party of the step) after
    # a platform fault of its own: a lost worker, an evicted pod, a lost node; apart from the
    # job's `auto-retries`, which are for the step's own failures
    platform_retries: int = Field(default=2, ge=0)
    # how steps run: "sandbox" (bubblewrap, the default) or "process" (no isolation, explicit)
    step_runtime: Literal["sandbox", "process", "kubernetes"] = "sandbox"
    step_memory_mb: int = Field(default=2048, gt=0)  # address space per step process
    step_cpu_s: int = Field(default=3600, gt=0)  # CPU seconds per step process
    step_max_procs: int = Field(default=256, gt=0)  # processes + threads of the step uid
    # What this party lets a job's steps compute on (fedalgo.computing.choice): a cluster master
    # (empty: local[*] only), default spark-submit args, Hadoop configuration and users, and
    # where a job's hdfs-libs-path may point.
    spark_master: str = ""
    spark_submit_args: str = ""
    hadoop_conf_dir: str = ""
    hadoop_user_name: str = ""
    spark_extra_libs_path: str = ""
    # A Spark step's rlimits: a JVM reserves far more address space than it uses, and runs
    # many threads, so the STEP_MEMORY_MB / STEP_MAX_PROCS limits would kill it.
    spark_step_memory_mb: int = Field(default=8192, gt=0)
    spark_step_max_procs: int = Field(default=1024, gt=0)
    # API tokens on the flow_server even on loopback (they are always required off loopback)
    require_api_token: bool = False
    # a first API token handed over by the installer (Helm); its hash is registered at start
    setup_api_token: SecretStr | None = None
    # how the services log: "text" lines, or one JSON object per line (fedcore.logs)
    log_format: Literal["text", "json"] = "text"
    # How this party answers its peers' proposals (flow_server.policy): "auto" accepts what its
    # grants and the rules below allow; "manual" (or a peer in manual_peers) waits for an
    # operator to approve or reject it.
    accept_policy: Literal["auto", "manual"] = "auto"
    # this party's flow_server as its dashboard reaches it (approve / reject buttons); default:
    # the flow_server's port on loopback (or on BIND_HOST when it is a specific address)
    flow_server_url: str | None = None
    manual_peers: list[str] = Field(default_factory=list)
    # the only components / roles this party runs in a peer's job (empty: any)
    accept_components: list[str] = Field(default_factory=list)
    accept_roles: list[Literal["guest", "host", "arbiter"]] = Field(default_factory=list)
    # peer -> paths (files or directories) it may name as this party's input, as host; granted
    # at start-up like `tessera grant add --path` (the example parties grant the demo data)
    input_grants: dict[str, list[Path]] = Field(default_factory=dict)
    # the limits this party puts on every step run on its data, whoever proposed the job
    floors: SecurityFloors = Field(default_factory=SecurityFloors)
    # the runtime images this party's steps may run in on Kubernetes (a job's `runtime-image`
    # must be one of them); empty where steps run in no image (the sandbox)
    step_images: tuple[str, ...] = ()

    @field_validator("peers")
    @classmethod
    def _urls(cls, peers: dict[str, str]) -> dict[str, str]:
        for pid, url in peers.items():
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"PARTY_MQ_HTTP_URL_{pid} must be an http(s) URL, got {url!r}")
        return {pid: url.rstrip("/") for pid, url in peers.items()}

    @field_validator("heartbeat_timeout_s")
    @classmethod
    def _longer_than_interval(cls, timeout_s: float | None, info: ValidationInfo) -> float | None:
        interval_s = info.data.get("heartbeat_interval_s")
        if timeout_s is not None and interval_s is not None and timeout_s <= interval_s:
            raise ValueError(
                f"HEARTBEAT_TIMEOUT_S ({timeout_s:g}) must exceed HEARTBEAT_INTERVAL_S "
                f"({interval_s:g}), or every running step would be failed as lost"
            )
        return timeout_s

    @property
    def worker_lost_after_s(self) -> float:
        """How long a running step may go without a heartbeat before it counts as lost."""
        if self.heartbeat_timeout_s is not None:
            return self.heartbeat_timeout_s
        return 3 * self.heartbeat_interval_s

    def spark_environ(self) -> dict[str, str]:
        """This party's Spark offer as the variables a step reads (only those that are set)."""
        names = {
            "SPARK_MASTER": self.spark_master,
            "SPARK_SUBMIT_ARGS": self.spark_submit_args,
            "HADOOP_CONF_DIR": self.hadoop_conf_dir,
            "HADOOP_USER_NAME": self.hadoop_user_name,
            "SPARK_EXTRA_LIBS_PATH": self.spark_extra_libs_path,
        }
        return {k: v for k, v in names.items() if v}

    @property
    def own_flow_server_url(self) -> str:
        """The base URL of this party's flow_server API (``…/flow-server``)."""
        if self.flow_server_url:
            return self.flow_server_url.rstrip("/")
        host = "127.0.0.1" if self.bind_host in ("0.0.0.0", "::", "") else self.bind_host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.flow_server_port}/flow-server"

    @property
    def roots(self) -> list[Path]:
        """Where received paths (a step's inputs and output dir) may point: STATE_DIR, the
        data roots and the output root."""
        own = [self.output_root] if self.output_root is not None else []
        return [self.state_dir, *self.data_roots, *own]

    @property
    def outputs_dir(self) -> Path:
        """Where this party's step outputs go unless its own job.yaml (or a grant) says else;
        absolute, since steps run in their own work dirs."""
        root = self.output_root if self.output_root is not None else self.state_dir / "output"
        return root.absolute()

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir / 'flow_server.db'}"

    @property
    def dashboard_db_url(self) -> str:
        return self.dashboard_database_url or f"sqlite:///{self.state_dir / 'dashboard.db'}"

    @classmethod
    def from_env(
        cls, env_file: str | Path | None = None, environ: Mapping[str, str] | None = None
    ) -> Self:
        """Build settings from an env file (optional) overlaid with the process environment."""
        env = environment(env_file, environ)
        if "PARTY_ID" not in env:
            raise SettingsError("PARTY_ID is not set (pass --env-file or export it)")
        others = [p for p in re.split(r"[,\s]+", env.get("OTHER_PARTIES", "")) if p]
        peers = {m[1]: v for k, v in env.items() if (m := _PEER_URL.match(k))}
        missing = [p for p in others if p not in peers]
        if missing:
            raise SettingsError(
                f"OTHER_PARTIES names {missing} but PARTY_MQ_HTTP_URL_<id> is unset"
            )
        keys = {m[1]: Path(v) for k, v in env.items() if (m := _PEER_KEY.match(k))}
        grants = {
            m[1]: [Path(p) for p in _words(v)]
            for k, v in env.items()
            if (m := _PEER_GRANT.match(k))
        }
        strangers = sorted(p for p in grants if p not in others)
        if strangers:
            raise SettingsError(
                f"GRANT_INPUT_PATHS_<id> names {strangers}, which OTHER_PARTIES does not list"
            )
        host = env.get("INTERNAL_MQ_HOST", "127.0.0.1")
        port = env.get("INTERNAL_MQ_TCP_PORT", "9092")
        fields: dict[str, object] = {
            "party_id": env["PARTY_ID"],
            "kafka_bootstrap": env.get("KAFKA_BOOTSTRAP", f"{host}:{port}"),
            "peers": {p: peers[p] for p in others},
            "public_keys": keys,
            "input_grants": {p: paths for p, paths in grants.items() if paths},
            "manual_peers": _words(env.get("ACCEPT_MANUAL_PEERS", "")),
            "accept_components": _words(env.get("ACCEPT_COMPONENTS", "")),
            "accept_roles": _words(env.get("ACCEPT_ROLES", "")),
        }
        optional = {
            "domain": "DOMAIN",
            "bind_host": "BIND_HOST",
            "flow_server_port": "FLOW_SERVER_PORT",
            "bridge_port": "EXPOSE_MQ_HTTP_PORT",
            "dashboard_port": "DASHBOARD_PORT",
            "task_engine_port": "TASK_ENGINE_PORT",
            "database_url": "DATABASE_URL",
            "dashboard_database_url": "DASHBOARD_DATABASE_URL",
            "state_dir": "STATE_DIR",
            "output_root": "OUTPUT_ROOT",
            "private_key_file": "PARTY_PRIVATE_KEY",
            "task_timeout_s": "TASK_TIMEOUT_S",
            "accept_timeout_s": "ACCEPT_TIMEOUT_S",
            "worker_concurrency": "WORKER_CONCURRENCY",
            "heartbeat_interval_s": "HEARTBEAT_INTERVAL_S",
            "heartbeat_timeout_s": "HEARTBEAT_TIMEOUT_S",
            "platform_retries": "PLATFORM_RETRIES",
            "step_runtime": "STEP_RUNTIME",
            "step_memory_mb": "STEP_MEMORY_MB",
            "step_cpu_s": "STEP_CPU_S",
            "step_max_procs": "STEP_MAX_PROCS",
            "spark_master": "SPARK_MASTER",
            "spark_submit_args": "SPARK_SUBMIT_ARGS",
            "hadoop_conf_dir": "HADOOP_CONF_DIR",
            "hadoop_user_name": "HADOOP_USER_NAME",
            "spark_extra_libs_path": "SPARK_EXTRA_LIBS_PATH",
            "spark_step_memory_mb": "SPARK_STEP_MEMORY_MB",
            "spark_step_max_procs": "SPARK_STEP_MAX_PROCS",
            "require_api_token": "REQUIRE_API_TOKEN",
            "setup_api_token": "TESSERA_API_TOKEN",
            "log_format": "LOG_FORMAT",
            "accept_policy": "ACCEPT_POLICY",
            "flow_server_url": "FLOW_SERVER_URL",
        }
        fields.update({f: env[v] for f, v in optional.items() if env.get(v)})
        fields["floors"] = {f: env[v] for f, v in _FLOORS.items() if env.get(v)}
        fields["step_images"] = _words(env.get("STEP_IMAGES", ""))
        if env.get("DATA_ROOTS"):
            fields["data_roots"] = [p for p in env["DATA_ROOTS"].split(os.pathsep) if p]
        try:
            return cls.model_validate(fields)
        except ValueError as exc:
            raise SettingsError(str(exc)) from exc
