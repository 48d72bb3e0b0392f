"""The local stack launcher against stand-in services: start, idempotence, failures, stop."""

from __future__ import annotations

import os
import socket
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tessera.envfiles import local_parties, write_env_files
from tessera.stack import Stack, StackError

FAKE = Path(__file__).with_name("fake_service.py")


@pytest.fixture
def fake_python(tmp_path: Path) -> str:
    """An executable that runs fake_service.py with this interpreter, posing as ``python``."""
    exe = tmp_path / "python"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return str(exe)


@pytest.fixture
def env_files(tmp_path: Path) -> list[Path]:
    return write_env_files(local_parties(["10000", "20000"]), tmp_path / "env")


@pytest.fixture
def stack(env_files: list[Path], fake_python: str) -> Iterator[Stack]:
    s = Stack(env_files, start_brokers=False, python=fake_python, health_timeout_s=20, grace_s=3)
    yield s
    s.down()


def test_up_is_idempotent_and_down_stops_everything(stack: Stack) -> None:
    stack.up()
    rows = stack.status()
    assert len(rows) == 8 and all(r.healthy for r in rows), rows
    keys = stack.party("10000").private_key
    assert keys is not None and keys.exists()

    again = Stack([p.env.path for p in stack.parties], start_brokers=False, python=stack.python)
    again.up()  # a second launcher finds everything running and starts nothing
    assert [r.pid for r in again.status()] == [r.pid for r in rows]

    again.down()
    assert not any(r.pid or r.healthy for r in stack.status())
    for party in stack.parties:
        for proc in party.services.values():
            assert not proc.pid_file.exists()
    pids = [r.pid for r in rows if r.pid]
    assert all(not Path(f"/proc/{pid}").exists() or _zombie(pid) for pid in pids)


def _zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"


def test_a_service_that_dies_is_named_with_its_log(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_DIE", "dashboard")
    with pytest.raises(StackError, match=r"dashboard of party \d+ exited with status 3") as info:
        stack.up()
    assert "boom" in str(info.value)
    assert not any(r.pid for r in stack.status()), "a failed up() leaves nothing running"


def test_a_port_taken_by_another_process_is_reported(stack: Stack) -> None:
    port = stack.party("20000").port("flow_server")
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with pytest.raises(StackError, match=f"port 127.0.0.1:{port} is already in use"):
            stack.up()


def test_an_env_file_without_party_id_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.env"
    bad.write_text("FLOW_SERVER_PORT=1\n")
    with pytest.raises(StackError, match="PARTY_ID"):
        Stack([bad])


def test_the_environment_does_not_override_the_env_file(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(os.environ, "FLOW_SERVER_PORT", "1")
    env = stack.parties[0].child_environ()
    assert env["FLOW_SERVER_PORT"] == str(stack.party("10000").port("flow_server"))
