"""Trained models: registered when a step with a ``model`` output succeeds on this party.

What is recorded: the job, step, party, role, component, the step's args as it ran here
(``parameters``) and the path of the model file. ``metrics`` come from an ``evaluation`` step of
the same job on this party that read the model step's ``predictions``: when it succeeds, the
scalar numbers of its metrics file (auc, ks, accuracy, ...) are attached to the model. So only
the party that evaluates (the guest) has metrics; a host's model has ``{}``.

Export is a ``.tar.gz`` holding ``metadata.json`` and ``model`` (the file the component wrote);
import reads the same and stores the model under ``STATE_DIR/models/<id>/model``.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import tarfile
from pathlib import Path
from typing import IO, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fedcore.envelope import new_id
from flow_server import schemas
from flow_server.catalog import Catalog
from flow_server.dsl import DslError, JobSpec, OutputRef, Step, parse_party_specs, parse_pipeline
from flow_server.errors import ApiError, NotFound
from flow_server.models import Job, Model, Task

log = logging.getLogger(__name__)

FORMAT = "tessera-model/1"
MODEL_OUTPUT = "model"
METRICS_OUTPUT = "metrics"
EVALUATION = "evaluation"
MAX_METRICS_BYTES = 4 * 1024 * 1024
MAX_MODEL_BYTES = 1024 * 1024 * 1024
_METADATA = "metadata.json"


def _scalars(report: Any) -> dict[str, float]:
    if not isinstance(report, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in report.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _read_metrics(path: str) -> dict[str, float]:
    file = Path(path)
    try:
        if file.stat().st_size > MAX_METRICS_BYTES:
            log.warning("metrics file %s is too large to attach to a model", path)
            return {}
        return _scalars(json.loads(file.read_text()))
    except (OSError, ValueError) as exc:
        log.warning("cannot read the metrics at %s: %r", path, exc)
        return {}


def find_job_model(session: Session, *, job_id: str, step: str, party_id: str) -> Model | None:
    return session.scalars(
        select(Model).where(Model.job_id == job_id, Model.step == step, Model.party_id == party_id)
    ).first()


def on_task_success(session: Session, *, job: Job, task: Task, catalog: Catalog) -> Model | None:
    """Register a model output (or attach an evaluation's metrics) of a step that succeeded here.

    Called in the transaction that records the success; idempotent: a rerun of the step updates
    the same row.
    """
    try:
        pipeline = parse_pipeline(job.pipeline_yaml, catalog)
        step = pipeline.step(task.step)
        spec = JobSpec(
            parse_party_specs(job.parties),
            dict(job.common_args),
            {task.party_id: dict(job.party_args)},
        )
    except (DslError, KeyError) as exc:
        log.warning("job %s step %s: no model registered: %r", job.id, task.step, exc)
        return None
    args = spec.args_for(step, task.party_id)
    return _register(session, job_id=job.id, step=step, task=task, args=args)


def _register(
    session: Session, *, job_id: str, step: Step, task: Task, args: dict[str, Any]
) -> Model | None:
    outputs = dict(task.outputs)
    if MODEL_OUTPUT in outputs and Path(outputs[MODEL_OUTPUT]).is_file():
        row = find_job_model(session, job_id=job_id, step=step.name, party_id=task.party_id)
        if row is None:
            row = Model(
                id=new_id(),
                job_id=job_id,
                step=step.name,
                party_id=task.party_id,
                metrics={},
                source="job",
            )
            session.add(row)
        row.role = task.role
        row.component = step.component
        row.parameters = {str(k): v for k, v in args.items()}
        row.path = outputs[MODEL_OUTPUT]
        return row
    if step.component == EVALUATION and METRICS_OUTPUT in outputs:
        metrics = _read_metrics(outputs[METRICS_OUTPUT])
        for ref in step.inputs.values():
            if not isinstance(ref, OutputRef):
                continue
            model = find_job_model(session, job_id=job_id, step=ref.step, party_id=task.party_id)
            if model is not None and metrics:
                model.metrics = metrics
                return model
    return None


# --- the API's reads -------------------------------------------------------------------------


def get_model(session: Session, model_id: str) -> Model:
    row = session.get(Model, model_id)
    if row is None:
        raise NotFound("model", model_id)
    return row


def list_models(
    session: Session,
    *,
    job_id: str | None,
    component: str | None,
    source: str | None,
    limit: int,
    offset: int,
) -> tuple[list[Model], int]:
    query = select(Model)
    count = select(func.count()).select_from(Model)
    filters = ((Model.job_id, job_id), (Model.component, component), (Model.source, source))
    for column, value in filters:
        if value is not None:
            query = query.where(column == value)
            count = count.where(column == value)
    rows = session.scalars(
        query.order_by(Model.created_ms.desc(), Model.id).limit(limit).offset(offset)
    )
    return list(rows), int(session.scalar(count) or 0)


def model_out(row: Model) -> schemas.ModelOut:
    return schemas.ModelOut(
        model_id=row.id,
        job_id=row.job_id,
        step=row.step,
        party_id=row.party_id,
        role=row.role,
        component=row.component,
        parameters=dict(row.parameters),
        metrics=dict(row.metrics),
        path=row.path,
        source=row.source,
        created_ms=row.created_ms,
    )


def metadata(row: Model) -> dict[str, Any]:
    out = model_out(row).model_dump(exclude={"path", "source"})
    return {"format": FORMAT, **out}


# --- export / import ---------------------------------------------------------------------------


def write_export(row: Model, dest: IO[bytes]) -> None:
    """A .tar.gz of ``metadata.json`` and ``model`` into ``dest``."""
    path = Path(row.path)
    if not path.is_file():
        raise ApiError(
            409, "model_file_missing", f"the model file {row.path} no longer exists", "path"
        )
    meta = json.dumps(metadata(row), indent=2).encode("utf-8")
    with tarfile.open(fileobj=dest, mode="w:gz") as tar:
        info = tarfile.TarInfo(_METADATA)
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
        tar.add(str(path), arcname=MODEL_OUTPUT, recursive=False)


def _bad(message: str) -> ApiError:
    return ApiError(422, "bad_model_archive", message, "file")


def _metadata_of(tar: tarfile.TarFile) -> dict[str, Any]:
    member = tar.getmember(_METADATA)
    if not member.isfile() or member.size > MAX_METRICS_BYTES:
        raise _bad("metadata.json is not a small regular file")
    fh = tar.extractfile(member)
    if fh is None:
        raise _bad("metadata.json cannot be read")
    try:
        meta = json.loads(fh.read())
    except ValueError as exc:
        raise _bad(f"metadata.json is not JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _bad(f"metadata.json is not a {FORMAT} document")
    for key in ("step", "party_id", "role", "component"):
        if not isinstance(meta.get(key), str) or not meta[key]:
            raise _bad(f"metadata.json lacks '{key}'")
    return meta


def import_archive(session: Session, *, archive: IO[bytes], models_dir: Path) -> Model:
    """Register the model of an exported archive (only its two known members are read)."""
    try:
        with tarfile.open(fileobj=archive, mode="r:gz") as tar:
            names = set(tar.getnames())
            if names != {_METADATA, MODEL_OUTPUT}:
                raise _bad(f"the archive must hold exactly {_METADATA} and {MODEL_OUTPUT}")
            meta = _metadata_of(tar)
            member = tar.getmember(MODEL_OUTPUT)
            if not member.isfile() or member.size > MAX_MODEL_BYTES:
                raise _bad("the model is not a regular file of at most 1 GiB")
            src = tar.extractfile(member)
            if src is None:
                raise _bad("the model cannot be read")
            model_id = new_id()
            dest = models_dir / model_id / MODEL_OUTPUT
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(dest, "wb") as out:
                shutil.copyfileobj(src, out, 1024 * 1024)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise _bad(f"not a .tar.gz model archive: {exc}") from None
    row = Model(
        id=model_id,
        job_id=meta.get("job_id") if isinstance(meta.get("job_id"), str) else None,
        step=meta["step"],
        party_id=meta["party_id"],
        role=meta["role"],
        component=meta["component"],
        parameters=meta.get("parameters") if isinstance(meta.get("parameters"), dict) else {},
        metrics=_scalars(meta.get("metrics")),
        path=str(dest),
        source="import",
    )
    session.add(row)
    session.flush()  # fills the defaults (created_ms)
    return row


def delete_model(session: Session, model_id: str, *, models_dir: Path) -> None:
    """Forget a model; an imported model's file goes too (a job's outputs stay with the job)."""
    row = get_model(session, model_id)
    if row.source == "import":
        shutil.rmtree(models_dir / row.id, ignore_errors=True)
    session.delete(row)
