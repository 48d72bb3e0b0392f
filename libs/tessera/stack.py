"""The local Tessera stack: each party's Kafka broker and four services as background processes.

    python -m tessera.stack up deploy/env/party-10000.env deploy/env/party-20000.env
    python -m tessera.stack status deploy/env/party-*.env
    python -m tessera.stack down deploy/env/party-*.env

``up`` returns once every service answers its health check; it is idempotent (what already runs is
left alone). A party keeps everything under its ``STATE_DIR``: ``kafka/`` (broker data),
``keys/``, ``logs/<service>.log`` and ``pids/<service>.pid``. The services get exactly the values
of their env file (the file wins over variables of the same name in the launcher's environment), so
the ports the launcher waits on are the ones the services use. From Python::

    with Stack(env_files) as stack:
        ...   # every service of every party is healthy here
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import httpx

from fedcore.settings import SettingsError
from tessera.envfiles import EXAMPLE_ENV_FILES, ROOT, SERVICES, PartyEnv
from tessera.procs import ManagedProcess

log = logging.getLogger("tessera.stack")

KAFKA_SH = ROOT / "deploy" / "kafka" / "kafka.sh"


class StackError(RuntimeError):
    """The stack could not be started or stopped; the message says which part and why."""


@dataclass(frozen=True)
class ServiceStatus:
    party_id: str
    service: str
    pid: int | None
    healthy: bool
    url: str


class Party:
    """One party of the stack: its env file, its broker and its four service processes."""

    def __init__(self, env: PartyEnv, python: str) -> None:
        self.env = env
        state = env.state_dir
        self.kafka_dir = state / "kafka"
        self.services = {
            name: ManagedProcess(
                f"{name} of party {env.party_id}",
                [python, "-m", name, "--env-file", str(env.path)],
                pid_file=state / "pids" / f"{name}.pid",
                log_file=state / "logs" / f"{name}.log",
            )
            for name in SERVICES
        }

    @property
    def party_id(self) -> str:
        return self.env.party_id

    def child_environ(self) -> dict[str, str]:
        environ = dict(os.environ)
        environ.update(self.env.values)
        environ["PYTHONUNBUFFERED"] = "1"
        return environ


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _healthy(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


class Stack:
    """Start and stop the parties described by ``env_files`` on this machine."""

    def __init__(
        self,
        env_files: Iterable[str | Path],
        *,
        start_brokers: bool = True,
        workdir: Path = ROOT,
        python: str = sys.executable,
        health_timeout_s: float = 120.0,
        grace_s: float = 10.0,
    ) -> None:
        try:
            envs = [PartyEnv.load(p, workdir) for p in env_files]
        except (OSError, SettingsError) as exc:
            raise StackError(f"cannot read env file: {exc}") from exc
        if not envs:
            raise StackError("no env files given")
        self.parties = [Party(env, python) for env in envs]
        self.start_brokers = start_brokers
        self.workdir = workdir
        self.python = python
        self.health_timeout_s = health_timeout_s
        self.grace_s = grace_s

    def __enter__(self) -> Self:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def party(self, party_id: str) -> PartyEnv:
        for party in self.parties:
            if party.party_id == party_id:
                return party.env
        raise KeyError(party_id)

    # --- up -----------------------------------------------------------------------------------

    def up(self) -> None:
        """Start whatever is not running yet and wait until every service is healthy.

        On failure everything is stopped again (the logs stay) and :class:`StackError` is raised.
        """
        try:
            self._ensure_keys()
            if self.start_brokers:
                with ThreadPoolExecutor(max_workers=len(self.parties)) as pool:
                    list(pool.map(self._start_broker, self.parties))
            for party in self.parties:
                self._start_services(party)
            self._wait_healthy()
        except BaseException:
            self.down()
            raise

    def _ensure_keys(self) -> None:
        for party in self.parties:
            key = party.env.private_key
            if key is None or key.exists():
                continue
            log.info("generating the Ed25519 keys of party %s in %s", party.party_id, key.parent)
            cmd = [self.python, "-m", "federation_bridge", "keygen", "--out", str(key.parent)]
            done = subprocess.run(
                cmd, cwd=self.workdir, capture_output=True, text=True, check=False
            )
            if done.returncode != 0 or not key.exists():
                raise StackError(
                    f"key generation for party {party.party_id} failed ({' '.join(cmd)}):\n"
                    f"{done.stdout}{done.stderr}"
                )
        for party in self.parties:
            for name, value in party.env.values.items():
                if name.startswith("PARTY_PUBLIC_KEY_"):
                    path = Path(value) if Path(value).is_absolute() else self.workdir / value
                    if not path.exists():
                        raise StackError(f"party {party.party_id}: {name} names {path}, missing")

    def _start_broker(self, party: Party) -> None:
        env = party.env
        log.info("starting Kafka of party %s on 127.0.0.1:%d", party.party_id, env.kafka_port)
        cmd = [
            str(KAFKA_SH),
            "start",
            str(env.kafka_port),
            str(party.kafka_dir),
            str(env.kafka_controller_port),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise StackError(f"Kafka of party {party.party_id} did not start:\n{done.stderr}")

    def _start_services(self, party: Party) -> None:
        environ = party.child_environ()
        for name, proc in party.services.items():
            if proc.running():
                log.info("%s already runs (pid %s)", proc.name, proc.pid())
                continue
            port = party.env.port(name)
            if _port_in_use(party.env.host, port):
                raise StackError(
                    f"{proc.name}: port {party.env.host}:{port} is already in use by another "
                    "process (change the port in the env file or stop that process)"
                )
            pid = proc.start(environ, self.workdir)
            log.info("started %s (pid %d, log %s)", proc.name, pid, proc.log_file)

    def _wait_healthy(self) -> None:
        pending = {
            (party.party_id, name): (party, name) for party in self.parties for name in SERVICES
        }
        deadline = time.monotonic() + self.health_timeout_s
        with httpx.Client(timeout=2.0) as client:
            while pending:
                for key, (party, name) in list(pending.items()):
                    proc = party.services[name]
                    if not proc.running():
                        code = proc.exit_code()
                        raise StackError(
                            f"{proc.name} exited"
                            + (f" with status {code}" if code is not None else "")
                            + f" before answering its health check; last lines of "
                            f"{proc.log_file}:\n{proc.log_tail()}"
                        )
                    if _healthy(client, party.env.health_url(name)):
                        del pending[key]
                if not pending:
                    break
                if time.monotonic() > deadline:
                    details = "\n".join(
                        f"--- {party.services[name].name}: {party.env.health_url(name)} did not "
                        f"answer 200; last lines of its log:\n{party.services[name].log_tail()}"
                        for party, name in pending.values()
                    )
                    raise StackError(
                        f"services not healthy after {self.health_timeout_s:.0f} s:\n{details}"
                    )
                time.sleep(0.3)

    # --- down / status ------------------------------------------------------------------------

    def down(self) -> None:
        """Stop every service (SIGTERM, SIGKILL after the grace period), then the brokers."""
        procs = [proc for party in self.parties for proc in party.services.values()]
        with ThreadPoolExecutor(max_workers=len(procs)) as pool:
            for proc in procs:
                pool.submit(proc.stop, self.grace_s)
        if self.start_brokers:
            with ThreadPoolExecutor(max_workers=len(self.parties)) as pool:
                list(pool.map(self._stop_broker, self.parties))

    def _stop_broker(self, party: Party) -> None:
        done = subprocess.run(
            [str(KAFKA_SH), "stop", str(party.kafka_dir)], capture_output=True, text=True
        )
        if done.returncode != 0:
            log.warning("stopping Kafka of party %s: %s", party.party_id, done.stderr.strip())

    def status(self) -> list[ServiceStatus]:
        rows = []
        with httpx.Client(timeout=2.0) as client:
            for party in self.parties:
                for name, proc in party.services.items():
                    url = party.env.health_url(name)
                    rows.append(
                        ServiceStatus(party.party_id, name, proc.pid(), _healthy(client, url), url)
                    )
        return rows

    def urls(self) -> list[str]:
        """Human-readable lines naming each party's entry points."""
        lines = []
        for party in self.parties:
            env = party.env
            lines.append(
                f"party {env.party_id}: flow_server {env.flow_server_url}  "
                f"dashboard {env.dashboard_url}  bridge {env.base_url('federation_bridge')}  "
                f"kafka 127.0.0.1:{env.kafka_port}"
            )
        return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Start, stop or inspect the local Tessera stack of the given parties."""
    parser = argparse.ArgumentParser(prog="tessera", description=main.__doc__)
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("env_files", nargs="*", type=Path, metavar="ENV_FILE")
    parser.add_argument("--timeout", type=float, default=120.0, help="health wait, seconds")
    args = parser.parse_args(argv)
    env_files = args.env_files or list(EXAMPLE_ENV_FILES)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        stack = Stack(env_files, health_timeout_s=args.timeout)
        if args.command == "up":
            stack.up()
            print("Tessera is up:")
            for line in stack.urls():
                print(f"  {line}")
            files = " ".join(map(str, args.env_files))
            print(f"Stop it with: tessera down {files}".rstrip())
        elif args.command == "down":
            stack.down()
            print("Tessera is down.")
        else:
            for row in stack.status():
                state = "healthy" if row.healthy else ("running" if row.pid else "stopped")
                print(f"{row.party_id:>8}  {row.service:<18} {state:<8} pid={row.pid}  {row.url}")
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
