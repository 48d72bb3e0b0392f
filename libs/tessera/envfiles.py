"""A party's env file as the launcher sees it, and env files generated for local runs and tests.

The services read the same files through :class:`fedcore.settings.PartySettings`; this module only
needs what the launcher uses: ports to wait on, where the party keeps its state, and its keys.
Relative paths are resolved against the directory the services run in (the repository root).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from fedcore.settings import SettingsError, read_env_file

ROOT = Path(__file__).resolve().parents[2]
# the two example parties of a source checkout (`make up`, `make demo`, `tessera up`)
EXAMPLE_ENV_FILES = tuple(ROOT / "deploy" / "env" / f"party-{p}.env" for p in ("10000", "20000"))
SERVICES = ("flow_server", "task_engine", "federation_bridge", "dashboard")


@dataclass(frozen=True)
class PartyEnv:
    """One party's env file, with the values the launcher acts on."""

    path: Path
    values: Mapping[str, str]
    workdir: Path

    @classmethod
    def load(cls, path: str | Path, workdir: Path = ROOT) -> PartyEnv:
        env_path = Path(path).resolve()
        values = read_env_file(env_path)
        if "PARTY_ID" not in values:
            raise SettingsError(f"{env_path}: PARTY_ID is not set")
        return cls(env_path, values, workdir)

    def _get(self, key: str, default: str) -> str:
        return self.values.get(key) or default

    def _path(self, key: str, default: str) -> Path:
        p = Path(self._get(key, default))
        return p if p.is_absolute() else self.workdir / p

    @property
    def party_id(self) -> str:
        return self.values["PARTY_ID"]

    @property
    def host(self) -> str:
        """Where to reach this party's services from this machine."""
        bind = self._get("BIND_HOST", "127.0.0.1")
        return "127.0.0.1" if bind in ("0.0.0.0", "::") else bind

    @property
    def kafka_port(self) -> int:
        return int(self._get("INTERNAL_MQ_TCP_PORT", "9092"))

    @property
    def kafka_controller_port(self) -> int:
        return int(self._get("KAFKA_CONTROLLER_PORT", str(self.kafka_port + 1000)))

    @property
    def state_dir(self) -> Path:
        return self._path("STATE_DIR", ".run/state")

    @property
    def private_key(self) -> Path | None:
        return self._path("PARTY_PRIVATE_KEY", "") if self.values.get("PARTY_PRIVATE_KEY") else None

    def port(self, service: str) -> int:
        key, default = {
            "flow_server": ("FLOW_SERVER_PORT", "9380"),
            "task_engine": ("TASK_ENGINE_PORT", "9360"),
            "federation_bridge": ("EXPOSE_MQ_HTTP_PORT", "9370"),
            "dashboard": ("DASHBOARD_PORT", "8080"),
        }[service]
        return int(self._get(key, default))

    def base_url(self, service: str) -> str:
        return f"http://{self.host}:{self.port(service)}"

    def internal_url(self, service: str) -> str:
        """Where this party reaches the service's /health and /metrics: the bridge serves them
        on its internal port (its other port is the peers'), the others on their one port."""
        if service != "federation_bridge":
            return self.base_url(service)
        bind = self._get("BRIDGE_INTERNAL_HOST", self.host)
        host = "127.0.0.1" if bind in ("0.0.0.0", "::") else bind
        return f"http://{host}:{int(self._get('BRIDGE_INTERNAL_PORT', '9390'))}"

    def health_url(self, service: str) -> str:
        prefix = "/flow-server" if service == "flow_server" else ""
        return f"{self.internal_url(service)}{prefix}/health"

    @property
    def flow_server_url(self) -> str:
        return f"{self.base_url('flow_server')}/flow-server"

    @property
    def dashboard_url(self) -> str:
        return f"{self.base_url('dashboard')}/"


@dataclass(frozen=True)
class LocalParty:
    """Ports of one party in a generated local setup."""

    party_id: str
    kafka_port: int
    flow_server_port: int
    bridge_port: int
    bridge_internal_port: int
    dashboard_port: int
    task_engine_port: int
    # only used when the launcher starts the broker itself
    kafka_controller_port: int | None = None


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 right now (all bound at once, then released)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]


def local_parties(
    party_ids: Sequence[str], kafka_ports: Sequence[int] | None = None
) -> list[LocalParty]:
    """Parties on free ports; with ``kafka_ports`` they use those (already running) brokers."""
    ports = iter(free_ports(7 * len(party_ids)))
    parties = []
    for i, pid in enumerate(party_ids):
        kafka, ctrl = next(ports), next(ports)
        if kafka_ports is not None:
            kafka, ctrl = kafka_ports[i], 0
        parties.append(
            LocalParty(
                pid,
                kafka_port=kafka,
                flow_server_port=next(ports),
                bridge_port=next(ports),
                bridge_internal_port=next(ports),
                dashboard_port=next(ports),
                task_engine_port=next(ports),
                kafka_controller_port=ctrl or None,
            )
        )
    return parties


def render_env(
    party: LocalParty,
    peers: Sequence[LocalParty],
    state_root: Path,
    data_roots: Sequence[Path] = (),
) -> str:
    """The env file text of ``party`` in a setup where every party runs on 127.0.0.1; steps may
    read and write under its state dir and ``data_roots``."""
    others = [p for p in peers if p.party_id != party.party_id]
    state = state_root / party.party_id
    lines = [
        f"# Party {party.party_id}: generated for a local run.",
        f"PARTY_ID={party.party_id}",
        "DOMAIN=localhost",
        "INTERNAL_MQ_HOST=127.0.0.1",
        f"INTERNAL_MQ_TCP_PORT={party.kafka_port}",
        *(
            [f"KAFKA_CONTROLLER_PORT={party.kafka_controller_port}"]
            if party.kafka_controller_port
            else []
        ),
        f"EXPOSE_MQ_HTTP_PORT={party.bridge_port}",
        f"BRIDGE_INTERNAL_PORT={party.bridge_internal_port}",
        f"OTHER_PARTIES={','.join(p.party_id for p in others)}",
        *(f"PARTY_MQ_HTTP_URL_{p.party_id}=http://127.0.0.1:{p.bridge_port}" for p in others),
        "BIND_HOST=127.0.0.1",
        f"FLOW_SERVER_PORT={party.flow_server_port}",
        f"DASHBOARD_PORT={party.dashboard_port}",
        f"TASK_ENGINE_PORT={party.task_engine_port}",
        f"STATE_DIR={state}",
        *([f"DATA_ROOTS={os.pathsep.join(str(r) for r in data_roots)}"] if data_roots else []),
        f"PARTY_PRIVATE_KEY={state / 'keys' / 'private.pem'}",
        *(
            f"PARTY_PUBLIC_KEY_{p.party_id}={state_root / p.party_id / 'keys' / 'public.pem'}"
            for p in peers
        ),
    ]
    return "\n".join(lines) + "\n"


def write_env_files(
    parties: Sequence[LocalParty], out_dir: Path, data_roots: Sequence[Path] = ()
) -> list[Path]:
    """Write ``party-<id>.env`` for each party into ``out_dir``; state goes to ``out_dir/run``,
    steps' inputs and outputs may also be under ``data_roots``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for party in parties:
        path = out_dir / f"party-{party.party_id}.env"
        path.write_text(render_env(party, parties, out_dir / "run", data_roots))
        paths.append(path)
    return paths
