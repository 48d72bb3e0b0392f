"""Where a step process runs: the :class:`StepRuntime` interface and the plain-process runtime.

A runtime starts ``python -m task_engine.step`` in a step's work dir and hands back a
:class:`StepHandle` to wait for it or kill it. The plain-process runtime below runs it as a child
in its own session (so its own process group), and kills the whole group, which takes any
processes the component started with it; it isolates nothing, so it is only chosen explicitly
(``STEP_RUNTIME=process``). The bubblewrap sandbox (:mod:`task_engine.sandbox`) is the default,
and a Kubernetes Job runtime plugs in behind the same two protocols.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

STDOUT_FILE: Final = "stdout.log"
STDERR_FILE: Final = "stderr.log"
STDERR_TAIL_BYTES: Final = 2000


class StepRuntimeError(RuntimeError):
    """A runtime could not start, watch or stop a step (e.g. the Kubernetes API refused); the
    step is reported failed with this reason, and the worker carries on."""


@dataclass(frozen=True)
class StepLaunch:
    """What to start: the step's work dir, any environment to add for it, the paths it may
    use besides its work dir (a sandbox makes ``inputs`` readable and ``writable`` writable),
    and the Spark master its job names ('' for the local engine; a sandbox sizes its limits and
    network by it, see :mod:`task_engine.sandbox`)."""

    work_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    inputs: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    spark_master: str = ""


@dataclass(frozen=True)
class StepExit:
    """How a step process ended."""

    returncode: int | None
    signal: int | None
    stderr_tail: str
    # what the platform did to the step, if it ended it (an evicted pod, a lost node): a fault
    # the flow_server retries apart from the step's auto-retries
    platform_fault: str | None = None

    def describe(self) -> str:
        if self.platform_fault is not None:
            return self.platform_fault
        if self.signal is not None:
            how = f"was killed by {signal.Signals(self.signal).name}"
        else:
            how = f"exited with code {self.returncode}"
        tail = self.stderr_tail.strip()
        return f"step process {how}" + (f"; stderr tail:\n{tail}" if tail else "")


class StepHandle(Protocol):
    """A started step."""

    async def wait(self) -> StepExit:
        """Until the step has ended (the whole of it, not only its first process)."""
        ...

    async def kill(self) -> None:
        """Stop the step and everything it started; :meth:`wait` then returns."""
        ...

    def suspend(self) -> bool:
        """Freeze every process of the step (SIGSTOP); False if this runtime cannot."""
        ...

    def resume(self) -> None:
        """Let a suspended step go on (SIGCONT)."""
        ...


class StepRuntime(Protocol):
    """Starts step processes."""

    async def start(self, launch: StepLaunch) -> StepHandle: ...


def tail(path: Path, limit: int = STDERR_TAIL_BYTES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - limit))
            return fh.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def descendants(root: int) -> list[int]:
    """The pids of every live process below ``root`` (children first, then theirs), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # the command name, in parentheses, may itself contain spaces and parentheses
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(0), []):
            found.append(child)
            todo.append(child)
    return found


def signal_tree(root: int, sig: signal.Signals, *, include_root: bool) -> None:
    """Send ``sig`` to ``root``'s descendants (and ``root``); a freeze is repeated until no new
    process appeared, so that one forked meanwhile is frozen too."""
    sent: set[int] = set()
    while True:
        pids = [*([root] if include_root else []), *descendants(root)]
        new = [p for p in pids if p not in sent]
        if not new:
            return
        for pid in new:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        sent.update(new)
        if sig != signal.SIGSTOP:
            return


class ProcessHandle:
    """A step running as a plain child process, leader of its own process group."""

    def __init__(self, proc: asyncio.subprocess.Process, work_dir: Path, kill_grace_s: float):
        self._proc = proc
        self._work_dir = work_dir
        self._kill_grace_s = kill_grace_s
        self.pid = proc.pid

    def _signal_group(self, sig: signal.Signals) -> None:
        # The group id is the leader's pid (start_new_session); members may outlive the leader.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    async def wait(self) -> StepExit:
        code = await self._proc.wait()
        # Whatever the component left behind in the step's group goes with it.
        self._signal_group(signal.SIGKILL)
        return StepExit(
            returncode=code if code >= 0 else None,
            signal=-code if code < 0 else None,
            stderr_tail=tail(self._work_dir / STDERR_FILE),
        )

    def suspend(self) -> bool:
        # the group, and any process of the step that left it (a new session of its own)
        self._signal_group(signal.SIGSTOP)
        signal_tree(self.pid, signal.SIGSTOP, include_root=True)
        return True

    def resume(self) -> None:
        self._signal_group(signal.SIGCONT)
        signal_tree(self.pid, signal.SIGCONT, include_root=True)

    async def kill(self) -> None:
        if self._proc.returncode is not None:
            self._signal_group(signal.SIGKILL)
            return
        self._signal_group(signal.SIGTERM)
        self.resume()  # a suspended step must run to see its SIGTERM
        try:
            await asyncio.wait_for(asyncio.shield(self._proc.wait()), self._kill_grace_s)
        except TimeoutError:
            pass  # it ignored SIGTERM for the whole grace period: SIGKILL below
        self._signal_group(signal.SIGKILL)
        await self._proc.wait()


class ProcessRuntime:
    """Runs each step as ``python -m task_engine.step``, a child in its own process group."""

    def __init__(
        self,
        *,
        python: str = sys.executable,
        extra_env: Mapping[str, str] | None = None,
        kill_grace_s: float = 3.0,
    ) -> None:
        self._python = python
        self._extra_env = dict(extra_env or {})
        self._kill_grace_s = kill_grace_s

    async def start(self, launch: StepLaunch) -> ProcessHandle:
        env = {**os.environ, **self._extra_env, **launch.env}
        with (
            (launch.work_dir / STDOUT_FILE).open("wb") as out,
            (launch.work_dir / STDERR_FILE).open("wb") as err,
        ):
            proc = await asyncio.create_subprocess_exec(
                self._python,
                "-m",
                "task_engine.step",
                cwd=launch.work_dir,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        return ProcessHandle(proc, launch.work_dir, self._kill_grace_s)
