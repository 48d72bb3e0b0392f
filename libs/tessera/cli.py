"""The ``tessera`` command line (``[project.scripts]``): operator tools for one party."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from fedcore.settings import SettingsError
from fedcore.version import TESSERA_VERSION
from federation_bridge.signing import KeyFileError
from tessera import stack
from tessera.commands import register
from tessera.diagnose import DiagnoseOptions, diagnose, render

app = typer.Typer(name="tessera", no_args_is_help=True, add_completion=False)
register(app)  # pipeline, job, data, model, token (tessera/commands.py)

EnvFilesArg = Annotated[
    list[Path] | None,
    typer.Argument(help="the parties' env files (default: the example parties 10000 and 20000)"),
]


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"tessera {TESSERA_VERSION}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="print and exit"),
    ] = False,
) -> None:
    """Tessera: vertical federated learning across organisations."""


def _stack(command: str, env_files: list[Path] | None, timeout_s: float) -> None:
    argv = [command, *map(str, env_files or ()), "--timeout", str(timeout_s)]
    raise typer.Exit(stack.main(argv))


@app.command("up")
def up_command(
    env_files: EnvFilesArg = None,
    timeout: Annotated[float, typer.Option(help="how long to wait for health, s")] = 120.0,
) -> None:
    """Start the parties' local stacks (Kafka and every service) in the background."""
    _stack("up", env_files, timeout)


@app.command("down")
def down_command(env_files: EnvFilesArg = None) -> None:
    """Stop the parties' local stacks."""
    _stack("down", env_files, 120.0)


@app.command("status")
def status_command(env_files: EnvFilesArg = None) -> None:
    """Each service of the parties' local stacks: healthy, running or stopped."""
    _stack("status", env_files, 120.0)


@app.command("demo")
def demo_command(
    keep: Annotated[bool, typer.Option(help="leave the parties running afterwards")] = False,
) -> None:
    """Start two parties, run the example hetero LR job, print AUC/KS beside scikit-learn's."""
    from tessera import demo  # needs the `demo` extra (scikit-learn); the other commands do not

    raise typer.Exit(demo.main(keep=keep))


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
