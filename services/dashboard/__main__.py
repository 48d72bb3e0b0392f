"""``python -m dashboard [--env-file FILE]``: serve this party's dashboard."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from dashboard.app import create_app
from dashboard.server import Server
from fedcore import logs
from fedcore.settings import PartySettings, SettingsError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dashboard", description=__doc__)
    parser.add_argument("--env-file", help="party env file (default: $TESSERA_ENV_FILE)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    args = parser.parse_args(argv)
    try:
        settings = PartySettings.from_env(args.env_file)
    except SettingsError as exc:
        parser.error(str(exc))
    logs.setup("dashboard", settings.party_id, fmt=settings.log_format, level=args.log_level)
    server = Server(
        create_app(settings),
        host=settings.bind_host,
        port=settings.dashboard_port,
        log_level=args.log_level,
    )
    server.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
