"""The bubblewrap step runtime: every step in its own Linux sandbox, and the choice of runtime.

Threat model. A step runs component code on the party's most sensitive data; the code is trusted to
compute, not to behave. Inside its sandbox a step

* can read: the system's ``/usr`` (with the ``/lib``, ``/bin`` … links), a few ``/etc`` files the
  dynamic loader and libc need (``ld.so.*``, ``localtime``, ``passwd``, ``group``,
  ``nsswitch.conf``), the Python installation and virtualenv, the import roots of Tessera's own
  packages and the runtime's ``PYTHONPATH`` entries, and its input files (each bound read-only at
  its own path);
* can write: its work dir (``state_dir/work/<job>/<step>/<attempt>``: spec, socket, scratch), its
  output dir, and a private ``/tmp`` and ``/dev/shm`` (tmpfs, gone with the step); the root is
  read-only;
* can talk to: its worker, through the Unix socket ``step.sock`` in the work dir, and nothing
  else: it has its own network namespace (loopback only, no route out, no abstract Unix sockets
  of the host; the one exception is a step whose job names the Spark cluster master this party
  configured, which shares the host's network: :class:`SparkSandbox`), its own PID namespace
  (it sees only its own processes and cannot signal others), IPC namespace (no host SysV/POSIX
  shared memory) and UTS namespace;
* cannot see: the rest of ``state_dir`` (other jobs' work dirs, the flow_server database; it is
  covered by an empty tmpfs before the step's own paths are bound back), the worker's
  environment (``--clearenv``: no keys or database URLs leak through variables), home
  directories, the repository (only package directories are bound), the host's ``/proc`` and
  ``/dev`` (fresh ones); everything but its work and output dirs and ``/tmp`` is read-only;
* is bounded by rlimits set by ``prlimit`` inside the sandbox before Python starts: address space
  (``RLIMIT_AS``, the memory limit), CPU seconds (``RLIMIT_CPU``), processes and threads
  (``RLIMIT_NPROC``, so a fork bomb gets ``EAGAIN``), no core dumps; and by the worker's task
  timeout (wall clock).

Privileges. Started by root, bubblewrap sets the sandbox up with its real privileges (no user
namespace) and the step then drops to an unprivileged uid (:data:`STEP_UID`, ``nobody``) with
no capabilities and ``no_new_privs``: ``RLIMIT_NPROC`` does not apply to uid 0, and a step that
got out of its namespaces would still not be root. The work and output dirs are handed to that
uid; input files must be readable by it. Started by another user, bubblewrap adds a user
namespace (``--unshare-all``) and the step keeps that user's uid.

Why rlimits rather than cgroups: rlimits work wherever bubblewrap does, with no cgroup
delegation from systemd or the container runtime. Their limits: ``RLIMIT_AS`` counts address
space, not resident memory (so leave headroom for thread stacks and numpy's allocator), and
under root ``RLIMIT_NPROC`` is counted per uid across the concurrent steps of this host, so one
step's fork bomb can starve another step's threads (never the host's root processes). A cgroup
(``pids.max``, ``memory.max``) per step is the stronger follow-up where it is delegated.

Stopping. bubblewrap runs as the leader of its own process group with ``--die-with-parent``;
the step is PID 1's child in its PID namespace, so when the group is killed (stop, timeout,
worker shutdown) or the worker dies, the namespace's init dies and the kernel kills every
process in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import json
import logging
import os
import shutil
import signal
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fedcore.settings import PartySettings, environment
from task_engine.runtime import (
    STDERR_FILE,
    STDOUT_FILE,
    ProcessHandle,
    ProcessRuntime,
    StepExit,
    StepLaunch,
    StepRuntime,
    signal_tree,
)
from task_engine.step import SOCKET_FILE

STEP_UID: Final = 65534  # nobody / nogroup: the step's uid when the worker is root
STEP_GID: Final = 65534
# The packages a step imports from the worker's own installation.
STEP_PACKAGES: Final = ("task_engine", "fedcore", "fedalgo")
ETC_FILES: Final = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
)
# Name resolution for a Spark step: pyspark binds by "localhost" and the JVM looks its own host
# name up. In its own network namespace the step gets SANDBOX_HOSTS as /etc/hosts; on the
# host's network, the host's files.
SANDBOX_HOSTS: Final = "127.0.0.1 localhost tessera-step\n::1 localhost\n"
NETWORK_ETC_FILES: Final = ("/etc/hosts", "/etc/resolv.conf", "/etc/host.conf")
SYSTEM_DIRS: Final = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin")
PROBE_TIMEOUT_S: Final = 15.0
NAMESPACE_EXIT_TIMEOUT_S: Final = 5.0
# bubblewrap reports a command killed by signal N as exit code 128 + N.
_SIGNAL_EXIT_BASE: Final = 128

_log = logging.getLogger(__name__)


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create its namespaces on this machine."""


@dataclass(frozen=True)
class SandboxLimits:
    """Per-step resource limits (rlimits of the step's processes)."""

    memory_mb: int = 2048
    cpu_s: int = 3600
    max_procs: int = 256


@dataclass(frozen=True)
class SparkSandbox:
    """How a step that computes on Spark is sandboxed (its launch names a Spark master).

    ``limits`` replace the step limits: a JVM reserves several GiB of address space (heap,
    class space, code cache, a malloc arena per thread) and starts a hundred threads. The step
    keeps its private network namespace, where a ``local[...]`` driver and its executors talk
    over loopback, unless it names ``cluster_master``, the master this party configured: then it
    shares the host's network, as a Spark driver must reach that master and its executors must
    reach the driver (docs/architecture.md, "Steps on Spark"). ``read_only`` are the party's
    Hadoop configuration and extra libraries, when they are local paths.
    """

    limits: SandboxLimits = SandboxLimits(memory_mb=8192, max_procs=1024)
    cluster_master: str = ""
    read_only: tuple[Path, ...] = ()

    def shares_network(self, master: str) -> bool:
        return bool(master) and master == self.cluster_master and not master.startswith("local")

    @staticmethod
    def environ(master: str) -> dict[str, str]:
        """What a JVM needs in the sandbox: Java's home (``/usr/bin/java`` is a link through
        ``/etc/alternatives``, which is not bound), few malloc arenas (each reserves address
        space), and loopback as the local driver's address (the host name does not resolve)."""
        env = {"MALLOC_ARENA_MAX": "2"}
        home = java_home()
        if home is not None:
            env["JAVA_HOME"] = str(home)
        if master.startswith("local"):
            env["SPARK_LOCAL_IP"] = "127.0.0.1"
        return env


@functools.cache
def java_home() -> Path | None:
    java = shutil.which("java")
    return None if java is None else Path(os.path.realpath(java)).parent.parent


@functools.cache
def jdk_config_files() -> tuple[Path, ...]:
    """What the JDK's configuration links point to outside ``/usr`` (Debian keeps
    ``java.security`` and the CA store under ``/etc``); without them a JVM cannot start."""
    home = java_home()
    if home is None:
        return ()
    found = []
    for sub in ("conf", "lib"):
        for path in (home / sub).rglob("*"):
            if path.is_symlink():
                target = Path(os.path.realpath(path))
                if target.exists() and not target.is_relative_to("/usr"):
                    found.append(target)
    return tuple(_dedupe(found))


class SandboxHandle(ProcessHandle):
    """A step inside bubblewrap: the group is bubblewrap's; its exit status is the step's.

    bubblewrap exits as soon as the step's first process has, while the kernel is still killing
    the rest of the PID namespace; :meth:`wait` also waits for the namespace's init
    (``sandbox_pid``) to be gone, so that "ended" means every process of the step.
    """

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        work_dir: Path,
        kill_grace_s: float,
        sandbox_pid: int | None,
    ) -> None:
        super().__init__(proc, work_dir, kill_grace_s)
        self.sandbox_pid = sandbox_pid

    def suspend(self) -> bool:
        """Freeze the processes inside the sandbox.

        bubblewrap's ``--new-session`` puts the step in a session (and group) of its own inside
        the PID namespace, so signalling bubblewrap's group would miss it: every process below
        the namespace's init is frozen instead (bubblewrap and the init stay awake, harmlessly).
        """
        if self.sandbox_pid is None:
            return super().suspend()
        signal_tree(self.sandbox_pid, signal.SIGSTOP, include_root=False)
        return True

    def resume(self) -> None:
        if self.sandbox_pid is None:
            super().resume()
            return
        signal_tree(self.sandbox_pid, signal.SIGCONT, include_root=False)

    async def wait(self) -> StepExit:
        ended = await super().wait()
        if self.sandbox_pid is not None:
            await _until_exited(self.sandbox_pid, NAMESPACE_EXIT_TIMEOUT_S)
        code = ended.returncode
        if code is not None and _SIGNAL_EXIT_BASE < code < _SIGNAL_EXIT_BASE + signal.NSIG:
            return StepExit(None, code - _SIGNAL_EXIT_BASE, ended.stderr_tail)
        return ended


async def _until_exited(pid: int, timeout_s: float) -> None:
    """Until process ``pid`` has exited (its pidfd turns readable), at most ``timeout_s``."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    exited = asyncio.Event()
    loop.add_reader(fd, exited.set)
    try:
        await asyncio.wait_for(exited.wait(), timeout_s)
    except TimeoutError:
        _log.warning("sandbox init %d still alive %g s after its step ended", pid, timeout_s)
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def _read_to_eof(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def _dedupe(paths: Iterable[Path]) -> list[Path]:
    seen: dict[Path, None] = {}
    for path in paths:
        seen.setdefault(path, None)
    return list(seen)


def python_paths(extra_pythonpath: Sequence[str] = ()) -> list[Path]:
    """What the step's interpreter needs to read: prefixes, package roots, PYTHONPATH entries."""
    paths = [Path(sys.base_prefix), Path(sys.prefix), Path(sys.executable).parent]
    paths += [Path(os.path.realpath(sys.executable)).parent.parent]
    for name in STEP_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.submodule_search_locations is None:
            raise SandboxUnavailable(f"cannot locate the {name} package to bind into the sandbox")
        paths += [Path(p) for p in spec.submodule_search_locations]
    paths += [Path(p) for p in extra_pythonpath if p]
    return _dedupe(p.absolute() for p in paths if p.exists())


class BubblewrapRuntime:
    """Runs each step as ``python -m task_engine.step`` in a bubblewrap sandbox (see module doc)."""

    def __init__(
        self,
        *,
        state_dir: Path,
        limits: SandboxLimits | None = None,
        extra_env: Mapping[str, str] | None = None,
        python: str = sys.executable,
        bwrap: str = "bwrap",
        kill_grace_s: float = 3.0,
        spark: SparkSandbox | None = None,
    ) -> None:
        self._state_dir = Path(state_dir).absolute()
        self._limits = limits or SandboxLimits()
        self._spark = spark or SparkSandbox()
        self._extra_env = dict(extra_env or {})
        self._python = python
        self._bwrap = bwrap
        self._kill_grace_s = kill_grace_s
        self._as_root = os.geteuid() == 0
        pythonpath = self._extra_env.get("PYTHONPATH", "").split(os.pathsep)
        self._read_only = python_paths(pythonpath)

    @property
    def limits(self) -> SandboxLimits:
        return self._limits

    # -- argv ------------------------------------------------------------------------------

    def _namespaces(self, share_net: bool = False) -> list[str]:
        # A step on the host's network keeps the host's name, which its /etc/hosts resolves
        # (a Spark driver looks its own address up).
        common = ["--die-with-parent", "--new-session"]
        common += [] if share_net else ["--hostname", "tessera-step"]
        if self._as_root:
            # Real privileges set the sandbox up; setpriv below drops them before the step runs.
            ns = ["--unshare-pid", "--unshare-ipc", "--unshare-uts"]
            ns += [] if share_net else ["--unshare-net"]
            ns += ["--unshare-cgroup-try", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
            return ns + common
        net = ["--share-net"] if share_net else []
        return ["--unshare-all", *net, "--cap-drop", "ALL", *common]

    def _system_mounts(self, etc_extra: Sequence[tuple[str, str]] = ()) -> list[str]:
        args: list[str] = []
        for name in SYSTEM_DIRS:
            path = Path(name)
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), name]
            elif path.is_dir():
                args += ["--ro-bind", name, name]
        # Made here, traversable: bubblewrap would make /etc 0700 for the files below, which
        # the step uid (under root) could then not read (a JVM needs its configuration there).
        args += ["--perms", "0755", "--dir", "/etc"]
        for src, dest in (*((name, name) for name in ETC_FILES), *etc_extra):
            args += ["--ro-bind-try", src, dest]
        # A private /dev/shm the step uid can write: multiprocessing's semaphores live there.
        return [*args, "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/dev/shm"]

    def _path_mounts(self, inputs: Sequence[Path], writable: Sequence[Path]) -> list[str]:
        """/tmp, code, the hidden state dir, then the step's own paths, parents before children
        (bubblewrap mounts in argument order, and a later mount covers an earlier one)."""
        # /tmp writable by the step uid, sticky (a JVM and Spark keep their scratch there).
        tmp = ["--perms", "1777", "--tmpfs", "/tmp"]
        mounts: list[tuple[Path, list[str]]] = [(Path("/tmp"), tmp)]
        mounts += [(p, ["--ro-bind", str(p), str(p)]) for p in self._read_only]
        mounts.append((self._state_dir, ["--tmpfs", str(self._state_dir)]))
        mounts += [(p, ["--ro-bind-try", str(p), str(p)]) for p in inputs]
        mounts += [(p, ["--bind", str(p), str(p)]) for p in writable]
        mounts.sort(key=lambda m: len(m[0].parts))  # stable: same depth keeps the order above
        args: list[str] = []
        made: set[Path] = {Path("/")}
        bound: list[Path] = [Path(d) for d in SYSTEM_DIRS]
        for dest, mount in mounts:
            # Parents bubblewrap would create itself get mode 0700 under root, which the step
            # uid could not traverse; outside bound trees they are made here with 0755.
            for parent in reversed(dest.parents):
                if parent not in made and not any(parent.is_relative_to(b) for b in bound):
                    args += ["--dir", str(parent)]
                    made.add(parent)
            args += mount
            made.add(dest)
            if "--tmpfs" not in mount:
                bound.append(dest)
        return args

    def _env(self, launch_env: Mapping[str, str]) -> list[str]:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
            "LANG": "C.UTF-8",
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            **self._extra_env,
            **launch_env,
        }
        args = ["--clearenv"]
        for key, value in env.items():
            args += ["--setenv", key, value]
        return args

    def _limits_prefix(self, lim: SandboxLimits) -> list[str]:
        prefix: list[str] = []
        if self._as_root:
            prefix += ["setpriv", f"--reuid={STEP_UID}", f"--regid={STEP_GID}", "--clear-groups"]
            prefix += ["--inh-caps=-all"]
        prefix += [
            "prlimit",
            f"--as={lim.memory_mb * 1024 * 1024}",
            f"--cpu={lim.cpu_s}",
            f"--nproc={lim.max_procs}",
            "--core=0",
            "--",
        ]
        return prefix

    def argv(
        self,
        work_dir: Path,
        command: Sequence[str],
        *,
        inputs: Sequence[Path] = (),
        writable: Sequence[Path] = (),
        env: Mapping[str, str] | None = None,
        info_fd: int | None = None,
        spark_master: str = "",
    ) -> list[str]:
        """The whole bubblewrap command line for ``command`` run in ``work_dir`` (a step that
        names a Spark master gets :class:`SparkSandbox`'s limits, environment and network)."""
        info = [] if info_fd is None else ["--info-fd", str(info_fd)]
        share_net = self._spark.shares_network(spark_master)
        limits, env = self._limits, dict(env or {})
        etc_extra: list[tuple[str, str]] = []
        if share_net:
            etc_extra = [(name, name) for name in NETWORK_ETC_FILES]
        elif spark_master:
            etc_extra = [(str(self._sandbox_hosts()), "/etc/hosts")]
        if spark_master:
            limits = self._spark.limits
            env = {**SparkSandbox.environ(spark_master), **env}
            inputs = [*inputs, *self._spark.read_only, *jdk_config_files()]
        return [
            self._bwrap,
            *info,
            *self._namespaces(share_net),
            *self._system_mounts(etc_extra),
            *self._path_mounts(inputs, [work_dir, *writable]),
            # The hiding tmpfs and the root read-only; the step's own mounts on them stay as bound.
            "--remount-ro",
            str(self._state_dir),
            "--remount-ro",
            "/",
            "--chdir",
            str(work_dir),
            *self._env(env),
            "--",
            *self._limits_prefix(limits),
            *command,
        ]

    def _sandbox_hosts(self) -> Path:
        path = self._state_dir / "sandbox-hosts"
        if not path.is_file() or path.read_text() != SANDBOX_HOSTS:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(SANDBOX_HOSTS)
            path.chmod(0o644)
        return path

    # -- lifecycle -------------------------------------------------------------------------

    def _hand_over(self, work_dir: Path, writable: Sequence[Path]) -> None:
        """Create the writable dirs and, under root, give them (and the socket) to the step uid."""
        for path in writable:
            path.mkdir(parents=True, exist_ok=True)
        if not self._as_root:
            return
        for path in (work_dir, work_dir / SOCKET_FILE, *writable):
            if path.exists():
                os.chown(path, STEP_UID, STEP_GID)

    async def start(self, launch: StepLaunch) -> SandboxHandle:
        work_dir = launch.work_dir.absolute()
        writable = [p.absolute() for p in launch.writable]
        self._hand_over(work_dir, writable)
        info_r, info_w = os.pipe()
        try:
            argv = self.argv(
                work_dir,
                [self._python, "-m", "task_engine.step"],
                inputs=[p.absolute() for p in launch.inputs],
                writable=writable,
                env=launch.env,
                info_fd=info_w,
                spark_master=launch.spark_master,
            )
            with (
                (work_dir / STDOUT_FILE).open("wb") as out,
                (work_dir / STDERR_FILE).open("wb") as err,
            ):
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                    pass_fds=(info_w,),
                )
        except BaseException:
            os.close(info_r)
            raise
        finally:
            os.close(info_w)
        # bubblewrap writes the sandbox's init pid once it is set up, then closes the pipe (EOF
        # also comes if it fails before that).
        info = await asyncio.to_thread(_read_to_eof, info_r)
        try:
            sandbox_pid: int | None = int(json.loads(info)["child-pid"])
        except (ValueError, KeyError, TypeError):
            sandbox_pid = None
        return SandboxHandle(proc, work_dir, self._kill_grace_s, sandbox_pid)

    async def check(self) -> None:
        """Run ``true`` in a sandbox set up like a step's; :class:`SandboxUnavailable` if not."""
        tools = (self._bwrap, "prlimit", *(("setpriv",) if self._as_root else ()))
        missing = [t for t in tools if shutil.which(t) is None]
        if missing:
            raise SandboxUnavailable(f"{', '.join(missing)} not found (Debian: bubblewrap)")
        probe = self._state_dir / "work" / ".sandbox-probe"
        probe.mkdir(parents=True, exist_ok=True)
        self._hand_over(probe, [])
        argv = self.argv(probe, [self._python, "-c", "pass"])
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _, stderr = await asyncio.wait_for(proc.communicate(), PROBE_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise SandboxUnavailable("the bubblewrap probe did not finish") from None
        if proc.returncode != 0:
            raise SandboxUnavailable(
                f"bubblewrap cannot create a step sandbox here (exit {proc.returncode}): "
                f"{stderr.decode(errors='replace').strip()}"
            )


async def select_runtime(
    settings: PartySettings,
    *,
    stack: contextlib.AsyncExitStack,
    extra_env: Mapping[str, str] | None = None,
) -> StepRuntime:
    """The runtime ``settings.step_runtime`` names; the sandbox is checked before it is used.

    There is no silent fallback: a sandbox that does not work is :class:`SandboxUnavailable`, and
    the plain-process runtime is used only when asked for, with a warning. What the runtime holds
    open (the Kubernetes API client) is closed with ``stack``.
    """
    # Every runtime hands the party's Spark offer to its steps (fedalgo.computing.choice).
    extra_env = {**settings.spark_environ(), **(extra_env or {})}
    if settings.step_runtime == "kubernetes":
        # Imported here: only a Kubernetes install needs the API client.
        from task_engine.kubeapi import KubeApi
        from task_engine.kubernetes import KubernetesConfig, KubernetesRuntime

        api = KubeApi.in_cluster()
        stack.push_async_callback(api.aclose)
        kube = KubernetesRuntime(
            KubernetesConfig.from_environ(environment()), api, extra_env=extra_env
        )
        await kube.delete_orphans()
        _log.info("steps run as Kubernetes Jobs")
        return kube
    if settings.step_runtime == "process":
        _log.warning(
            "STEP_RUNTIME=process: steps run as plain processes WITHOUT a sandbox; they can "
            "reach the network, this party's files and its environment. Use only where user "
            "namespaces are unavailable and every component is trusted."
        )
        return ProcessRuntime(extra_env=extra_env)
    if not sys.platform.startswith("linux"):
        raise SandboxUnavailable(
            f"the step sandbox needs Linux (this is {sys.platform}); "
            "set STEP_RUNTIME=process to run steps unsandboxed"
        )
    runtime = BubblewrapRuntime(
        state_dir=settings.state_dir,
        limits=SandboxLimits(
            memory_mb=settings.step_memory_mb,
            cpu_s=settings.step_cpu_s,
            max_procs=settings.step_max_procs,
        ),
        extra_env=extra_env,
        spark=SparkSandbox(
            limits=SandboxLimits(
                memory_mb=settings.spark_step_memory_mb,
                cpu_s=settings.step_cpu_s,
                max_procs=settings.spark_step_max_procs,
            ),
            cluster_master=settings.spark_master,
            read_only=tuple(
                Path(p)
                for p in (settings.hadoop_conf_dir, settings.spark_extra_libs_path)
                if p and "://" not in p
            ),
        ),
    )
    try:
        await runtime.check()
    except SandboxUnavailable as exc:
        raise SandboxUnavailable(
            f"{exc}. Install bubblewrap and allow user namespaces, or set STEP_RUNTIME=process "
            "to run steps unsandboxed (not recommended)"
        ) from exc
    _log.info("steps run in bubblewrap sandboxes (limits %s)", runtime.limits)
    return runtime
