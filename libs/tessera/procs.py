"""Background service processes: own session, pid file, log file, stopped as a process group.

Each service runs in its own session (and so its own process group), so stopping it also stops the
step processes it started. A pid file is trusted only while its process still runs the same
command, so a stale file left by a crash never makes the launcher signal an unrelated process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies awaiting a reaper do not count)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


class ManagedProcess:
    """One long-running command with a pid file and a log file."""

    def __init__(self, name: str, argv: Sequence[str], pid_file: Path, log_file: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.pid_file = pid_file
        self.log_file = log_file
        self._popen: subprocess.Popen[bytes] | None = None
        self._returncode: int | None = None

    def _marker(self) -> bytes:
        """The part of the command line that identifies this process in /proc."""
        return "\0".join(self.argv[1:]).encode()

    def pid(self) -> int | None:
        """The pid of the running process, or None (a stale pid file is removed)."""
        if self._popen is not None:
            code = self._popen.poll()
            if code is None:
                return self._popen.pid
            self._returncode = code
            self._popen = None
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if self._marker() in _cmdline(pid) and not _is_zombie(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def running(self) -> bool:
        return self.pid() is not None

    def exit_code(self) -> int | None:
        """The exit status if this launcher started the process and it has ended."""
        if self._popen is not None:
            self._returncode = self._popen.poll()
        return self._returncode

    def start(self, env: Mapping[str, str], cwd: Path) -> int:
        """Start the command in the background unless it already runs; return its pid."""
        pid = self.pid()
        if pid is not None:
            return pid
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}\n".encode())
            log.flush()
            self._returncode = None
            self._popen = subprocess.Popen(
                self.argv,
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{self._popen.pid}\n")
        return self._popen.pid

    def _reap(self) -> None:
        if self._popen is not None:
            self._popen.poll()

    def _wait_group(self, pgid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._reap()
            if not _group_alive(pgid):
                return True
            time.sleep(0.1)
        self._reap()
        return not _group_alive(pgid)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after ``grace_s``."""
        pid = self.pid()
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if not self._wait_group(pid, grace_s):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self._wait_group(pid, 5.0)
        if self._popen is not None:
            self._popen.wait(timeout=5.0)
            self._popen = None
        self.pid_file.unlink(missing_ok=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return f"(no log at {self.log_file})"
        return "\n".join(text.splitlines()[-lines:])
