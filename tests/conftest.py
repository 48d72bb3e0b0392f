"""Session fixtures: two real Apache Kafka brokers (one per party) and a throwaway PostgreSQL,
each started once per session, on first use; fresh databases on either backend; the data sets in
data/. Under CI=true or
TESSERA_STRICT=1 (make test) a skip fails the run (real_parts.py)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from backends import Databases
from brokers import Broker, free_port
from real_parts import HOW_TO_INSTALL, fail_if_strict

ROOT = Path(__file__).resolve().parents[1]
KAFKA_SH = ROOT / "deploy" / "kafka" / "kafka.sh"
POSTGRES_SH = ROOT / "deploy" / "postgres" / "postgres.sh"
# The FL data sets the tests read (breast, default_credit; data/README.md says where from).
FL_DATA = ROOT / "data"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    fail_if_strict(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    fail_if_strict(report)
    return report


def _start(what: str, command: list[str]) -> None:
    """Run a start script; when it fails, fail the test with what to install (never a skip)."""
    try:
        subprocess.run(command, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"could not start {what} ({exc}; its output is above). {HOW_TO_INSTALL}.")


def _start_broker(data_dir: Path) -> Broker:
    port, ctrl = free_port(), free_port()
    _start("a Kafka broker", [str(KAFKA_SH), "start", str(port), str(data_dir), str(ctrl)])
    return Broker(port, data_dir)


@pytest.fixture(scope="session")
def kafka_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, Broker]]:
    """Two brokers, one per party: (party 10000's, party 20000's)."""
    root = tmp_path_factory.mktemp("kafka")
    brokers: list[Broker] = []
    try:
        for name in ("10000", "20000"):
            brokers.append(_start_broker(root / name))
        yield brokers[0], brokers[1]
    finally:
        for broker in brokers:
            subprocess.run([str(KAFKA_SH), "stop", str(broker.data_dir)], check=False)


@pytest.fixture(scope="session")
def kafka(kafka_pair: tuple[Broker, Broker]) -> Broker:
    """One real broker, for tests of a single party's services."""
    return kafka_pair[0]


@pytest.fixture(scope="session")
def fl_data() -> Path:
    """The repository's data/ folder: ``breast_hetero_*`` and ``default_credit_hetero_*``."""
    missing = [
        name
        for name in ("breast", "default_credit")
        for side in ("guest", "host")
        if not (FL_DATA / f"{name}_hetero_{side}.csv").is_file()
    ]
    if missing:
        pytest.fail(f"data sets missing from {FL_DATA}: {', '.join(missing)} (see data/README.md)")
    return FL_DATA


@dataclass(frozen=True)
class PostgresServer:
    """A running PostgreSQL cluster: trust auth for user ``postgres`` on 127.0.0.1:``port``."""

    port: int
    data_dir: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, name: str) -> str:
        """The URL of a new, empty database named ``name`` (gone with the cluster at the end)."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL (deploy/postgres/postgres.sh), its data removed at the end.

    Not under pytest's basetemp: as root the cluster runs as the ``postgres`` user, which cannot
    enter pytest's private (0700) temporary root.
    """
    root = Path(tempfile.mkdtemp(prefix="tessera-pg-"))
    root.chmod(0o711)
    server = PostgresServer(free_port(), root / "data")
    try:
        _start("PostgreSQL", [str(POSTGRES_SH), "start", str(server.port), str(server.data_dir)])
        yield server
    finally:
        subprocess.run([str(POSTGRES_SH), "stop", str(server.data_dir)], check=False)
        shutil.rmtree(root, ignore_errors=True)


BACKENDS = ("sqlite", "postgresql")


def _databases(request: pytest.FixtureRequest, tmp: Path) -> Iterator[Databases]:
    backend = str(request.param)
    server = request.getfixturevalue("postgres") if backend == "postgresql" else None
    dbs = Databases(backend, tmp, server)
    try:
        yield dbs
    finally:
        dbs.drop_all()


@pytest.fixture(params=BACKENDS)
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Databases]:
    """Fresh databases on each backend in turn: a test taking it runs once per backend."""
    yield from _databases(request, tmp_path)


@pytest.fixture(scope="module", params=BACKENDS)
def module_databases(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Databases]:
    """``databases`` for module-scoped fixtures: the module's tests run once per backend."""
    yield from _databases(request, tmp_path_factory.mktemp("db"))
