"""``python -m federation_bridge [--env-file FILE]`` serves the bridge;
``python -m federation_bridge keygen --out DIR`` writes an Ed25519 key pair.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from fedcore import logs
from fedcore.settings import PartySettings, SettingsError
from federation_bridge import tls
from federation_bridge.app import create_app, create_internal_app
from federation_bridge.options import BridgeOptions
from federation_bridge.signing import KeyFileError, generate_keypair

log = logging.getLogger("federation_bridge")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m federation_bridge", description=__doc__)
    parser.add_argument("--env-file", help="the party's env file (else TESSERA_ENV_FILE / env)")
    sub = parser.add_subparsers(dest="command")
    keygen = sub.add_parser("keygen", help="write DIR/private.pem (0600) and DIR/public.pem")
    keygen.add_argument("--out", required=True, type=Path, help="directory for the key pair")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per batch; failures are ours

    if args.command == "keygen":
        try:
            private, public = generate_keypair(args.out)
        except FileExistsError:
            log.error("%s already holds a private key; refusing to overwrite it", args.out)
            return 1
        log.info("wrote %s and %s", private, public)
        return 0

    try:
        settings = PartySettings.from_env(args.env_file)
        options = BridgeOptions.from_env(args.env_file)
        app = create_app(settings, options, env_file=args.env_file)
    except (SettingsError, KeyFileError) as exc:
        log.error("%s", exc)
        return 2
    logs.setup("federation_bridge", settings.party_id, fmt=settings.log_format)
    # no access log: every refused request is logged once by the bridge, the rest is counted
    peers = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.bind_host,
            port=settings.bridge_port,
            log_config=None,
            access_log=False,
            **tls.server_options(options),
        )
    )
    internal = _Follower(
        uvicorn.Config(
            create_internal_app(app),
            host=options.internal_host or settings.bind_host,
            port=options.internal_port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
    )
    asyncio.run(_serve(peers, internal))
    return 0


class _Follower(uvicorn.Server):
    """The internal server: leaves the signals to the peers' server and stops with it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve(peers: uvicorn.Server, internal: uvicorn.Server) -> None:
    task = asyncio.create_task(internal.serve())
    try:
        await peers.serve()
    finally:
        internal.should_exit = True
        await task


if __name__ == "__main__":
    sys.exit(main())
