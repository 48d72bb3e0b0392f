"""A 200 MB CSV upload streams through a real flow_server process with bounded memory.

The body is generated on the fly (never held whole by the test either) and sent as a raw
``text/csv`` body and as a multipart ``file``; the server's peak resident set (``VmHWM``) may grow
by far less than the file's size.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, cast

import httpx
import pytest

from brokers import free_port

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
SIZE = 200 * 1024 * 1024
MAX_GROWTH_MB = 150
LINE = b"%09d,1,0.123456789,0.987654321,12345.678,-0.000042,abcdef\n"
HEADER = b"id,y,x0,x1,x2,x3,tag\n"


def rows_for(size: int) -> int:
    return (size - len(HEADER)) // len(LINE % 0)


def generate(size: int, chunk_rows: int = 4096) -> Iterator[bytes]:
    yield HEADER
    n = rows_for(size)
    for start in range(0, n, chunk_rows):
        yield b"".join(LINE % i for i in range(start, min(n, start + chunk_rows)))


class GeneratedFile:
    """A read-only file object over ``generate`` (httpx streams multipart files by reading)."""

    def __init__(self, size: int) -> None:
        self._chunks = generate(size)
        self._buffer = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buffer) < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if n < 0:
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out


def _as_file(size: int) -> IO[bytes]:
    return cast(IO[bytes], GeneratedFile(size))


def vm_hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/<pid>/status")


@pytest.fixture(scope="module")
def server(kafka: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    root = tmp_path_factory.mktemp("flow_stream")
    port = free_port()
    env_file = root / "party.env"
    env_file.write_text(
        f"PARTY_ID=30001\nKAFKA_BOOTSTRAP={kafka.bootstrap}\nFLOW_SERVER_PORT={port}\n"
        f"STATE_DIR={root / 'state'}\nBIND_HOST=127.0.0.1\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    log = (root / "flow_server.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flow_server",
            "--env-file",
            str(env_file),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/flow-server"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (root / "flow_server.log").read_text()
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the flow_server did not come up"
            time.sleep(0.3)
        yield base, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _warm_up(base: str) -> None:
    # import and allocate whatever the upload path needs once, before the baseline
    for _ in range(2):
        r = httpx.post(
            f"{base}/data",
            content=b"".join(generate(4 * 1024 * 1024)),
            headers={"content-type": "text/csv"},
            timeout=60,
        )
        assert r.status_code == 201, r.text
        httpx.post(f"{base}/data", files={"file": ("w.csv", _as_file(4 * 1024 * 1024))}, timeout=60)


def test_200_mb_uploads_stream_with_bounded_memory(server: tuple[str, int]) -> None:
    base, pid = server
    _warm_up(base)
    baseline = vm_hwm_kb(pid)
    r = httpx.post(
        f"{base}/data",
        params={"name": "big-raw"},
        content=generate(SIZE),
        headers={"content-type": "text/csv"},
        timeout=300,
    )
    assert r.status_code == 201, r.text
    assert r.json()["rows"] == rows_for(SIZE)
    assert r.json()["label_column"] == "y"
    assert Path(r.json()["path"]).stat().st_size == r.json()["size_bytes"]
    raw_peak = vm_hwm_kb(pid)

    r = httpx.post(
        f"{base}/data",
        files={"file": ("big-multipart.csv", _as_file(SIZE), "text/csv")},
        timeout=300,
    )
    assert r.status_code == 201, r.text
    assert r.json()["rows"] == rows_for(SIZE)
    peak = vm_hwm_kb(pid)
    growth_mb = (peak - baseline) / 1024
    sys.stderr.write(
        f"\nflow_server VmHWM: baseline {baseline / 1024:.1f} MB, after raw 200 MB upload "
        f"{raw_peak / 1024:.1f} MB, after multipart {peak / 1024:.1f} MB\n"
    )
    assert growth_mb < MAX_GROWTH_MB, f"peak RSS grew by {growth_mb:.0f} MB"
