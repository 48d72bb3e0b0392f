"""Tiny components for the task_engine tests, registered through fedalgo's own registry.

The step process imports this module (the worker's ``component_modules``) before it looks the
component up, exactly as it imports the real ``fedalgo.components``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import numpy as np

from fedalgo.components import component
from fedalgo.context import Context
from fedcore import floors


@component("te_ping", roles=("guest", "host"), outputs=("result", "never_written"))
def te_ping(ctx: Context) -> None:
    """Guest pings, host answers (after an unrelated message the guest reads last)."""
    if ctx.role == "guest":
        ctx.send("host", "ping", np.arange(3))
        ctx.logger.info("guest sent ping")
        pong = ctx.recv("host", "pong")
        noise = ctx.recv("host", "noise")
        ctx.metric("pong_sum", float(pong.sum()), step=1)
        ctx.output("result").write_text(f"{pong.tolist()} {noise}")
    else:
        ping = ctx.recv("guest", "ping")
        ctx.logger.warning("host got ping %s", ping.tolist())
        ctx.send("guest", "noise", 2**100)
        ctx.send("guest", "pong", ping + 1)
        ctx.metric("host_seen", len(ping))
        ctx.output("result").write_text("host done")


@component("te_fail", roles=("guest",))
def te_fail(ctx: Context) -> None:
    """Fails the way a component with bad input does."""
    ctx.logger.info("about to fail")
    raise ValueError("the input has no id column")


@component("te_floors", roles=("guest",))
def te_floors(ctx: Context) -> None:
    """Bins the way a component would, held to the party's own floors (never to its args)."""
    floors.check_bins(ctx.floors, int(ctx.args["bins"]))


@component("te_exit", roles=("guest",))
def te_exit(ctx: Context) -> None:
    """Dies without reporting, after writing to stderr (like a crash in native code)."""
    sys.stderr.write("native library exploded\n")
    sys.stderr.flush()
    os._exit(3)


@component("te_sleep", roles=("guest",))
def te_sleep(ctx: Context) -> None:
    """Starts a child process, then never finishes; the worker must kill both."""
    child = subprocess.Popen(["sleep", "300"])
    with open(ctx.args["pid_file"], "w") as fh:
        fh.write(f"{os.getpid()} {child.pid}")
    time.sleep(300)


@component("te_tick", roles=("guest",))
def te_tick(ctx: Context) -> None:
    """Counts in a file every 50 ms, from a child process, for at most a minute."""
    script = (
        "import sys, time\n"
        "for i in range(1, 1200):\n"
        "    open(sys.argv[1], 'w').write(str(i)); time.sleep(0.05)\n"
    )
    subprocess.run([sys.executable, "-c", script, ctx.args["tick_file"]], check=True)


@component("te_escape", roles=("guest",))
def te_escape(ctx: Context) -> None:
    """Tries what a sandboxed step must not do (``args["try"]``); succeeds only if it got out."""
    action, target = ctx.args["try"], ctx.args.get("target")
    if action == "connect":
        with socket.create_connection(("127.0.0.1", int(target)), timeout=5):
            pass
    elif action == "read":
        with open(target) as fh:
            ctx.logger.info("read %r", fh.read())
    elif action == "write":
        with open(target, "w") as fh:
            fh.write("escaped")
    elif action == "fork":
        # A fork bomb, but a bounded one: should the limit fail, the host still survives it.
        children = 0
        try:
            while children < int(target):
                if os.fork() == 0:
                    time.sleep(120)
                    os._exit(0)
                children += 1
        except BlockingIOError as exc:
            raise RuntimeError(f"fork refused after {children} children: {exc}") from exc
    elif action == "allocate":
        hog = bytearray(int(target) * 1024 * 1024)
        ctx.logger.info("allocated %d bytes", len(hog))
    else:
        raise ValueError(f"unknown action {action!r}")
