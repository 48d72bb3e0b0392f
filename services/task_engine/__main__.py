"""``python -m task_engine [--env-file FILE]``: this party's task-engine worker."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Sequence

from fedcore import logs
from fedcore.settings import PartySettings
from task_engine.worker import Worker


async def serve(settings: PartySettings) -> None:
    worker = Worker(settings)
    loop = asyncio.get_running_loop()
    stopping: set[asyncio.Task[None]] = set()

    def on_signal() -> None:
        task = loop.create_task(worker.shutdown())
        stopping.add(task)  # keep a reference until it is done
        task.add_done_callback(stopping.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        await worker.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await worker.shutdown()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m task_engine", description=__doc__)
    parser.add_argument("--env-file", help="the party's env file (PowerFL variable names)")
    args = parser.parse_args(argv)
    settings = PartySettings.from_env(args.env_file)
    logs.setup("task_engine", settings.party_id, fmt=settings.log_format)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
