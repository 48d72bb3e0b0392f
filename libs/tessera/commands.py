"""The ``tessera`` commands that drive a flow_server through the SDK: pipelines, jobs (and the
approval of peers' proposals), data, grants of data to peers, decisions, models, components, and
API tokens (made directly in the flow_server's database).

Every command takes ``--url`` (``$TESSERA_URL``, default the local stack) and ``--token``
(``$TESSERA_TOKEN``). An error prints the server's message on stderr and exits non-zero: 1 for
an error answer or a failed job, 2 for a problem on this side (a missing file, no connection).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from fedcore.params import ParamInfo
from tessera.sdk import (
    DEFAULT_DASHBOARD_URL,
    DEFAULT_URL,
    ApiError,
    ConnectionFailed,
    Grant,
    JobDetail,
    Parameter,
    Tessera,
)

UrlOpt = Annotated[
    str, typer.Option("--url", envvar="TESSERA_URL", help="the flow_server's base URL")
]
TokenOpt = Annotated[
    str | None,
    typer.Option("--token", envvar="TESSERA_TOKEN", help="an API token (tessera token create)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the server's JSON answer")]
JobArg = Annotated[str, typer.Argument(help="the job id")]

pipeline_app = typer.Typer(help="Upload and list pipelines.", no_args_is_help=True)
job_app = typer.Typer(help="Submit, follow and control jobs.", no_args_is_help=True)
data_app = typer.Typer(help="Upload and list data tables.", no_args_is_help=True)
model_app = typer.Typer(help="List, export and import trained models.", no_args_is_help=True)
component_app = typer.Typer(
    help="The algorithm components and their parameters.", no_args_is_help=True
)
token_app = typer.Typer(help="API tokens of this party's flow_server.", no_args_is_help=True)
grant_app = typer.Typer(
    help="Grant peers the use of this party's data; list and revoke grants.", no_args_is_help=True
)
decision_app = typer.Typer(
    help="This party's decisions about the proposals it received.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(pipeline_app, name="pipeline")
    app.add_typer(job_app, name="job")
    app.add_typer(data_app, name="data")
    app.add_typer(model_app, name="model")
    app.add_typer(component_app, name="component")
    app.add_typer(token_app, name="token")
    app.add_typer(grant_app, name="grant")
    app.add_typer(decision_app, name="decision")


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def _client(url: str, token: str | None, **kwargs: Any) -> Iterator[Tessera]:
    """The SDK client; its errors become a message on stderr and a non-zero exit."""
    try:
        with Tessera(url, token=token, **kwargs) as client:
            yield client
    except ApiError as exc:
        raise _fail(f"{exc} [{exc.code}, HTTP {exc.status_code}]", 1) from None
    except ConnectionFailed as exc:
        raise _fail(str(exc), 2) from None
    except OSError as exc:
        raise _fail(str(exc), 2) from None


@contextmanager
def _transfer_bar(description: str, total: int | None) -> Iterator[Progress]:
    """A progress bar on stderr for an upload or a download; nothing when stderr is no terminal
    (scripts and tests see the command's output only)."""
    console = Console(stderr=True)
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    with bar:
        bar.add_task(description, total=total)
        yield bar


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=True))


# --- pipeline ------------------------------------------------------------------------------------


@pipeline_app.command("upload")
def pipeline_upload(
    file: Annotated[Path, typer.Argument(help="pipeline.yaml")],
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Upload a pipeline.yaml; prints its id."""
    with _client(url, token) as t:
        created = t.upload_pipeline(file)
    if as_json:
        _print_json(created.model_dump())
    else:
        typer.echo(f"{created.pipeline_id}\t{created.name}\tsteps: {', '.join(created.steps)}")


@pipeline_app.command("list")
def pipeline_list(url: UrlOpt = DEFAULT_URL, token: TokenOpt = None) -> None:
    """The pipelines on this flow_server, newest first."""
    with _client(url, token) as t:
        for p in t.pipelines():
            typer.echo(f"{p.pipeline_id}\t{p.name}\t{', '.join(p.steps)}")


# --- job -----------------------------------------------------------------------------------------


def _progress(job: JobDetail) -> str:
    total = len(job.steps)
    running = ", ".join(job.running_steps())
    line = f"{job.job_id}  {job.state:<8} {job.steps_done()}/{total} steps done"
    if running:
        line += f"  running: {running}"
    return line


def _describe(job: JobDetail) -> str:
    lines = [
        f"job {job.job_id}  pipeline {job.pipeline_name}  initiator {job.initiator}",
        f"state: {job.state}" + (f"  ({job.reason})" if job.reason else ""),
        f"parties: {', '.join(job.parties)}",
    ]
    for party in job.pending_approval():
        lines.append(f"waiting for the approval of party {party}'s operator")
    for step in job.steps:
        tasks = "  ".join(
            f"{t.party_id}={t.state}" + (f" ({t.reason})" if t.reason else "") for t in step.tasks
        )
        lines.append(f"  {step.name:<20} {step.component:<18} {tasks}")
    return "\n".join(lines)


def _watch(t: Tessera, job_id: str, interval_s: float, timeout_s: float) -> JobDetail:
    tty = sys.stdout.isatty()
    last = ""
    started = time.monotonic()

    def show(job: JobDetail) -> None:
        nonlocal last
        line = _progress(job)
        if tty:
            elapsed = time.monotonic() - started
            typer.echo(f"\r{line}  [{elapsed:.0f}s]\x1b[K", nl=False)
        elif line != last:
            typer.echo(line)
        last = line

    try:
        job = t.wait(job_id, timeout_s=timeout_s, interval_s=interval_s, on_update=show)
    except TimeoutError as exc:
        if tty:
            typer.echo("")
        raise _fail(str(exc), 1) from None
    if tty:
        typer.echo("")
    return job


def _finish(job: JobDetail) -> None:
    if job.state == "success":
        typer.echo(f"job {job.job_id} succeeded")
        return
    raise _fail(f"job {job.job_id} ended {job.state}: {job.failure_reason()}", 1)


@job_app.command("submit")
def job_submit(
    pipeline: Annotated[str, typer.Argument(help="a pipeline id, or a pipeline.yaml to upload")],
    job_file: Annotated[Path, typer.Argument(help="job.yaml")],
    watch: Annotated[bool, typer.Option("--watch", help="follow the job until it ends")] = False,
    interval_s: Annotated[float, typer.Option("--interval", help="poll every N s")] = 2.0,
    timeout_s: Annotated[float, typer.Option("--timeout", help="give up after N s")] = 3600.0,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Submit a job; prints its id (with --watch: follows it, exit 1 unless it succeeds)."""
    with _client(url, token) as t:
        pipeline_id = pipeline
        if Path(pipeline).is_file():
            pipeline_id = t.upload_pipeline(Path(pipeline)).pipeline_id
        created = t.submit_job(pipeline_id, job_file)
        typer.echo(created.job_id)
        if watch:
            job = _watch(t, created.job_id, interval_s, timeout_s)
    if watch:
        _finish(job)


@job_app.command("status")
def job_status(
    job_id: JobArg, url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """A job's state and each step's state on every party."""
    with _client(url, token) as t:
        job = t.job(job_id)
    typer.echo(json.dumps(job.model_dump(), indent=2) if as_json else _describe(job))


@job_app.command("list")
def job_list(
    state: Annotated[str | None, typer.Option(help="only jobs in this state")] = None,
    limit: Annotated[int, typer.Option(help="at most N jobs")] = 50,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Jobs on this flow_server, newest first."""
    with _client(url, token) as t:
        jobs = t.jobs(state=state, limit=limit)
    for j in jobs.items:
        typer.echo(f"{j.job_id}\t{j.state}\t{j.pipeline_name}\t{' '.join(j.parties)}")


@job_app.command("watch")
def job_watch(
    job_id: JobArg,
    interval_s: Annotated[float, typer.Option("--interval", help="poll every N s")] = 2.0,
    timeout_s: Annotated[float, typer.Option("--timeout", help="give up after N s")] = 3600.0,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Follow a job with a live progress line until it ends; exit 1 unless it succeeds."""
    with _client(url, token) as t:
        job = _watch(t, job_id, interval_s, timeout_s)
    _finish(job)


def _control(action: str, job_id: str, url: str, token: str | None) -> None:
    with _client(url, token) as t:
        actions = {
            "stop": t.stop_job,
            "pause": t.pause_job,
            "resume": t.resume_job,
            "rerun": t.rerun_job,
        }
        job = actions[action](job_id)
    typer.echo(f"{action}: job {job.job_id} is {job.state}")


@job_app.command("stop")
def job_stop(job_id: JobArg, url: UrlOpt = DEFAULT_URL, token: TokenOpt = None) -> None:
    """Stop a job on every party."""
    _control("stop", job_id, url, token)


@job_app.command("pause")
def job_pause(job_id: JobArg, url: UrlOpt = DEFAULT_URL, token: TokenOpt = None) -> None:
    """Pause a running job on every party."""
    _control("pause", job_id, url, token)


@job_app.command("resume")
def job_resume(job_id: JobArg, url: UrlOpt = DEFAULT_URL, token: TokenOpt = None) -> None:
    """Resume a paused job."""
    _control("resume", job_id, url, token)


@job_app.command("rerun")
def job_rerun(job_id: JobArg, url: UrlOpt = DEFAULT_URL, token: TokenOpt = None) -> None:
    """Rerun a job from its failed step, reusing the outputs of the steps that succeeded."""
    _control("rerun", job_id, url, token)


@job_app.command("approve")
def job_approve(job_id: JobArg, url: UrlOpt = DEFAULT_URL, token: TokenOpt = None) -> None:
    """Approve a peer's proposal held for this party's operator (its grants are checked again)."""
    with _client(url, token) as t:
        job = t.approve_job(job_id)
    typer.echo(
        f"approve: job {job.job_id} is {job.state}" + (f" ({job.reason})" if job.reason else "")
    )


@job_app.command("reject")
def job_reject(
    job_id: JobArg,
    reason: Annotated[str | None, typer.Option(help="told to the initiator")] = None,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Reject a peer's proposal held for this party's operator."""
    with _client(url, token) as t:
        job = t.reject_job(job_id, reason)
    typer.echo(f"reject: job {job.job_id} is {job.state}")


@job_app.command("logs")
def job_logs(
    job_id: JobArg,
    dashboard_url: Annotated[
        str,
        typer.Option("--dashboard-url", envvar="TESSERA_DASHBOARD_URL", help="the dashboard"),
    ] = DEFAULT_DASHBOARD_URL,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """The job's recent log lines on every party (from this party's dashboard)."""
    with _client(url, token, dashboard_url=dashboard_url) as t:
        logs = t.logs(job_id)
    for x in logs.lines:
        typer.echo(f"{x.ts:.3f}\t{x.level}\t{x.party}\t{x.step or '-'}\t{x.line}")


# --- data ----------------------------------------------------------------------------------------


@data_app.command("upload")
def data_upload(
    file: Annotated[Path, typer.Argument(help="a CSV file (streamed, any size)")],
    name: Annotated[str | None, typer.Option(help="table name (default: the file's)")] = None,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Upload a CSV; prints the table's id and detected schema. Jobs name it `table:<name>`."""
    if not file.is_file():
        raise _fail(f"{file} is not a file", 2)
    with (
        _client(url, token, timeout_s=600.0) as t,
        _transfer_bar(f"uploading {file.name}", file.stat().st_size) as bar,
    ):
        task = bar.task_ids[0]
        table = t.upload_table(file, name=name, progress=lambda n: bar.advance(task, n))
    if as_json:
        _print_json(table.model_dump())
        return
    typer.echo(
        f"{table.table_id}\t{table.name}\t{table.rows} rows\tid: {table.id_column}\t"
        f"label: {table.label_column or '-'}"
    )


@data_app.command("register")
def data_register(
    path: Annotated[str, typer.Argument(help="an absolute path on the flow_server's host")],
    name: Annotated[str | None, typer.Option(help="table name (default: the file's)")] = None,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Register a CSV that already exists where the flow_server runs."""
    with _client(url, token, timeout_s=600.0) as t:
        table = t.register_table(path, name=name)
    typer.echo(f"{table.table_id}\t{table.name}\t{table.rows} rows")


@data_app.command("list")
def data_list(
    limit: Annotated[int, typer.Option(help="at most N tables")] = 50,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Registered tables, newest first."""
    with _client(url, token) as t:
        tables = t.tables(limit=limit)
    if as_json:
        _print_json(tables.model_dump())
        return
    for x in tables.items:
        typer.echo(f"{x.table_id}\t{x.name}\t{x.rows} rows\t{x.source}\t{x.path}")


# --- grant ---------------------------------------------------------------------------------------

_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration_ms(text: str) -> int:
    """``90s``, ``15m``, ``12h``, ``30d`` in milliseconds."""
    number, unit = text[:-1], text[-1:]
    if unit not in _UNITS_S or not number.isdigit() or int(number) <= 0:
        raise _fail(f"--expires-in {text!r}: give a positive number and s, m, h or d (e.g. 30d)", 2)
    return int(number) * _UNITS_S[unit] * 1000


def _grant_line(g: Grant) -> str:
    what = f"table:{g.table_name or g.table_id}" if g.table_id else str(g.path)
    comps = ",".join(g.components) or "any"
    expires = (
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(g.expires_ms / 1000))
        if g.expires_ms
        else "never"
    )
    role = f"as {g.role}" if g.role else "output"
    return "\t".join(
        (
            g.grant_id,
            g.peer,
            g.kind,
            what,
            role,
            f"components: {comps}",
            f"expires: {expires}",
            g.state,
        )
    )


@grant_app.command("add")
def grant_add(
    peer: Annotated[str, typer.Argument(help="the party id granted to")],
    table: Annotated[str | None, typer.Option(help="a registered table (name or id)")] = None,
    path: Annotated[
        str | None, typer.Option(help="an absolute file or directory path on this party")
    ] = None,
    role: Annotated[
        str,
        typer.Option("--as", help="host (features only) or guest (the label-holding side)"),
    ] = "host",
    component: Annotated[
        list[str] | None,
        typer.Option("--component", help="allow only this component (repeat; default: any)"),
    ] = None,
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", help="lapse after e.g. 12h or 30d")
    ] = None,
    output: Annotated[
        bool, typer.Option("--output", help="a directory the peer may name as our output")
    ] = False,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Let a peer use a table or a path of this party's in the jobs it proposes."""
    expires_ms = int(time.time() * 1000) + _duration_ms(expires_in) if expires_in else None
    with _client(url, token) as t:
        grant = t.grant(
            peer,
            table=table,
            path=path,
            role=None if output else role,
            components=component or [],
            expires_ms=expires_ms,
            kind="output" if output else "input",
        )
    if as_json:
        _print_json(grant.model_dump())
    else:
        typer.echo(_grant_line(grant))


@grant_app.command("list")
def grant_list(
    peer: Annotated[str | None, typer.Option(help="only grants to this party")] = None,
    active: Annotated[bool, typer.Option("--active", help="only grants still in force")] = False,
    limit: Annotated[int, typer.Option(help="at most N grants")] = 50,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Grants of this party, newest first (revoked and expired ones too, unless --active)."""
    with _client(url, token) as t:
        grants = t.grants(peer=peer, active=active, limit=limit)
    if as_json:
        _print_json(grants.model_dump())
        return
    for g in grants.items:
        typer.echo(_grant_line(g))


@grant_app.command("revoke")
def grant_revoke(
    grant_id: Annotated[str, typer.Argument(help="the grant id")],
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Revoke a grant: proposals naming it are refused, also those waiting for approval."""
    with _client(url, token) as t:
        grant = t.revoke_grant(grant_id)
    typer.echo(_grant_line(grant))


# --- decision ------------------------------------------------------------------------------------


@decision_app.command("list")
def decision_list(
    job: Annotated[str | None, typer.Option("--job", help="only this job's")] = None,
    limit: Annotated[int, typer.Option(help="at most N decisions")] = 50,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What this party decided about each proposal it received, by which rule or person."""
    with _client(url, token) as t:
        found = t.decisions(job_id=job, limit=limit)
    if as_json:
        _print_json(found.model_dump())
        return
    for d in found.items:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(d.decided_ms / 1000))
        typer.echo(
            f"{when}\t{d.job_id}\tfrom {d.initiator}\t{d.decision}\tby {d.decided_by}\t{d.rule}"
            + (f"\t{d.reason}" if d.reason else "")
        )


# --- model ---------------------------------------------------------------------------------------


@model_app.command("list")
def model_list(
    job: Annotated[str | None, typer.Option("--job", help="only this job's models")] = None,
    limit: Annotated[int, typer.Option(help="at most N models")] = 50,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Trained models of this party, newest first."""
    with _client(url, token) as t:
        models = t.models(job_id=job, limit=limit)
    if as_json:
        _print_json(models.model_dump())
        return
    for m in models.items:
        metrics = " ".join(f"{k}={v:.4g}" for k, v in sorted(m.metrics.items()) if k != "samples")
        typer.echo(
            f"{m.model_id}\t{m.component}\t{m.job_id or '-'}/{m.step}\t{m.role}\t{metrics or '-'}"
        )


@model_app.command("export")
def model_export(
    model_id: Annotated[str, typer.Argument(help="the model id")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="file (default model-<id>.tar.gz)")
    ] = None,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Save a model as a .tar.gz (metadata.json + the model file)."""
    dest = output or Path(f"model-{model_id}.tar.gz")
    partial = dest.with_name(dest.name + ".part")
    with _client(url, token) as t, _transfer_bar(f"exporting {model_id}", None) as bar:
        task = bar.task_ids[0]
        try:
            t.export_model(
                model_id,
                partial,
                progress=lambda n: bar.advance(task, n),
                on_size=lambda size: bar.update(task, total=size),
            )
        finally:
            if partial.exists() and partial.stat().st_size == 0:
                partial.unlink()
    partial.replace(dest)
    typer.echo(str(dest))


@model_app.command("import")
def model_import(
    archive: Annotated[Path, typer.Argument(help="a .tar.gz from `tessera model export`")],
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Register an exported model on this party; prints its new id."""
    with _client(url, token) as t:
        model = t.import_model(archive)
    typer.echo(f"{model.model_id}\t{model.component}\t{model.step}")


# --- component -----------------------------------------------------------------------------------


@component_app.command("list")
def component_list(
    url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """The components this party runs: roles, inputs → outputs, what each does."""
    with _client(url, token) as t:
        components = t.components()
    if as_json:
        _print_json(components.model_dump())
        return
    for c in components.items:
        flow = f"{', '.join(c.inputs) or '-'} -> {', '.join(c.outputs) or '-'}"
        typer.echo(f"{c.name}\t{'/'.join(c.roles)}\t{flow}\t{c.description}")


def _parameter_line(p: Parameter) -> str:
    default = "required" if p.required else f"default {json.dumps(p.default)}"
    bounds = ParamInfo(**p.model_dump()).bounds()
    return f"  {p.name}\t{p.type}\t{default}{f'; {bounds}' if bounds else ''}\t{p.description}"


@component_app.command("show")
def component_show(
    name: Annotated[str, typer.Argument(help="the component's name")],
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One component: its roles, inputs, outputs and every parameter with its bounds."""
    with _client(url, token) as t:
        c = t.component(name)
    if as_json:
        _print_json(c.model_dump())
        return
    typer.echo(f"{c.name} (version {c.version}): {c.description}")
    typer.echo(f"roles: {', '.join(c.roles)}")
    typer.echo(f"inputs: {', '.join(c.inputs) or '-'}; outputs: {', '.join(c.outputs) or '-'}")
    typer.echo("parameters:" if c.parameters else "parameters: none")
    for p in c.parameters:
        typer.echo(_parameter_line(p))


# --- token ---------------------------------------------------------------------------------------


@token_app.command("create")
def token_create(
    env_file: Annotated[
        Path | None,
        typer.Option("--env-file", help="the party's env file (its DATABASE_URL / STATE_DIR)"),
    ] = None,
    name: Annotated[str, typer.Option(help="what the token is for")] = "default",
) -> None:
    """Make an API token in the flow_server's database and print it (only this once)."""
    # imported here: the other commands need only the SDK, not the server's packages
    from sqlalchemy.exc import SQLAlchemyError

    from fedcore.settings import PartySettings, SettingsError
    from flow_server import auth
    from flow_server.db import make_engine, make_sessionmaker, upgrade_to_head

    try:
        settings = PartySettings.from_env(env_file)
    except (SettingsError, OSError) as exc:
        raise _fail(str(exc), 2) from None
    try:
        engine = make_engine(settings.db_url)
        try:
            upgrade_to_head(engine)
            with make_sessionmaker(engine).begin() as session:
                new = auth.create_token(session, name=name)
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        raise _fail(f"cannot write to the database {settings.db_url}: {exc}", 2) from None
    typer.echo(new.token)
    typer.echo(
        f"token {new.token_id} ({name}) created; it is shown only now. "
        "Send it as 'Authorization: Bearer <token>' or set TESSERA_TOKEN.",
        err=True,
    )
