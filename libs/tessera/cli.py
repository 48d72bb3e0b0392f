"""The ``tessera`` command line (``[project.scripts]``): operator tools for one party."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from fedcore.settings import SettingsError
from federation_bridge.signing import KeyFileError
from tessera.commands import register
from tessera.diagnose import DiagnoseOptions, diagnose, render

app = typer.Typer(name="tessera", no_args_is_help=True, add_completion=False)
register(app)  # pipeline, job, data, model, token (tessera/commands.py)


@app.callback()
def _main() -> None:
    """Tessera: vertical federated learning across organisations."""


@app.command("diagnose")
def diagnose_command(
    party: Annotated[str, typer.Argument(help="the peer party id to check")],
    env_file: Annotated[
        Path | None, typer.Option("--env-file", help="this party's env file")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    pings: Annotated[int, typer.Option(help="signed pings for the round-trip time")] = 20,
    throughput_mb: Annotated[int, typer.Option(help="MiB pushed for the throughput")] = 64,
    max_probe_mb: Annotated[int, typer.Option(help="largest message size probed, MiB")] = 256,
) -> None:
    """Reachability, version, signature check, round trip, throughput and the largest message
    between this party's bridge setup and a peer's bridge. Exit status 1 if a check fails."""
    options = DiagnoseOptions(
        pings=pings,
        throughput_bytes=throughput_mb * 1024 * 1024,
        max_probe_bytes=max_probe_mb * 1024 * 1024,
    )
    try:
        report = diagnose(party, env_file, options)
    except (SettingsError, KeyFileError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps(report.to_dict()) if as_json else render(report))
    if not report.ok:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
