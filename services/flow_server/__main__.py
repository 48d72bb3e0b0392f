"""``python -m flow_server [--env-file FILE]``: serve on BIND_HOST:FLOW_SERVER_PORT."""

from __future__ import annotations

import argparse

import uvicorn

from fedcore import logs
from fedcore.settings import PartySettings, SettingsError
from flow_server.app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flow_server", description=__doc__)
    parser.add_argument("--env-file", help="the party's env file (e.g. deploy/env/party-10000.env)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    try:
        settings = PartySettings.from_env(args.env_file)
    except (SettingsError, OSError) as exc:
        parser.exit(2, f"flow_server: {exc}\n")
    logs.setup("flow_server", settings.party_id, fmt=settings.log_format, level=args.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=settings.flow_server_port,
        log_level=args.log_level,
        log_config=None,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
