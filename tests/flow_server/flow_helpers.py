"""Helpers of the flow_server tests: a fixed component catalog, a pipeline, a job.yaml, fresh
databases on either backend, and one party driven directly."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from backends import Databases as Databases
from fedcore.envelope import Envelope
from fedcore.params import Params
from flow_server.catalog import Catalog, ComponentInfo
from flow_server.models import Job

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "hetero_lr"


class LRParams(Params):
    """The parameters of the example's hetero_lr step (a subset of the real declaration)."""

    learning_rate: float = Field(0.15, gt=0, description="the step size")
    max_iter: int = Field(30, ge=1, description="the most epochs")
    batch_size: int = Field(-1, ge=-1, description="rows per batch")
    penalty: Literal["L2", "none"] = Field("L2", description="regularisation")
    alpha: float = Field(0.01, ge=0, description="the L2 weight")
    tol: float = Field(1e-4, ge=0, description="the loss change that stops training")
    key_bits: Literal[1024, 2048] = Field(2048, description="the Paillier key size")


# The fedalgo registry's interface, fixed so these tests do not depend on the algorithms' code.
CATALOG: Catalog = {
    "intersect": ComponentInfo("intersect", ("guest", "host"), ("data",), ("data",)),
    "scale": ComponentInfo("scale", ("guest", "host"), ("data",), ("data", "model")),
    "hetero_lr": ComponentInfo(
        "hetero_lr", ("guest", "host"), ("data",), ("model", "predictions"), params=LRParams
    ),
    "evaluation": ComponentInfo("evaluation", ("guest",), ("predictions",), ("metrics",)),
}

PIPELINE = """\
name: hetero-lr
steps:
  - name: intersect
    component: intersect
    inputs: {data: $input}
  - name: train
    component: hetero_lr
    inputs: {data: intersect.data}
    args: {learning-rate: 0.15, max-iter: 5}
  - name: evaluate
    component: evaluation
    inputs: {predictions: train.predictions}
"""


def job_yaml(guest_input: Path | str, host_input: Path | str, out: Path | str) -> str:
    return f"""\
parties: [ "10000=guest", "20000=host" ]
common-args: {{spark-master-name: "local[*]", runtime-image: tessera/runtime:dev, max-iter: 30}}
parties-args:
  10000: {{input: {guest_input}, output: {out}}}
  20000: {{input: {host_input}, output: {out}, hadoop-config: /etc/hadoop}}
"""


class LocalParty:
    """One party's flow_server state in a database, driven directly (no Kafka, no HTTP)."""

    def __init__(
        self, me: str, peers: set[str], db_url: str, out: Path, *, granted: Path | None = None
    ) -> None:
        from flow_server.db import make_engine, make_sessionmaker, upgrade_to_head
        from flow_server.protocol import PartyContext

        self.engine = make_engine(db_url)
        upgrade_to_head(self.engine)
        self.sessions = make_sessionmaker(self.engine)
        self.ctx = PartyContext(me, frozenset(peers), CATALOG, out)
        if granted is not None:
            for peer in sorted(peers):
                self.grant(peer, path=str(granted), role="guest")

    def grant(self, peer: str, **kwargs: object) -> str:
        """Grant ``peer`` a table or a path of this party's (``grants.create_grant``'s keywords)."""
        from flow_server import grants

        with self.sessions.begin() as s:
            return grants.create_grant(
                s,
                peer=peer,
                kind=str(kwargs.pop("kind", "input")),
                created_by="test",
                **kwargs,  # type: ignore[arg-type]
            ).id

    def submit(self, pipeline_text: str, job_text: str) -> str:
        from flow_server import crud, protocol
        from flow_server.dsl import parse_pipeline

        with self.sessions.begin() as s:
            row = crud.create_pipeline(
                s, pipeline=parse_pipeline(pipeline_text, CATALOG), yaml_text=pipeline_text
            )
            return protocol.submit_job(s, self.ctx, pipeline_row=row, job_yaml=job_text).id

    def apply(self, env: Envelope) -> bool:
        from flow_server import protocol

        with self.sessions.begin() as s:
            return protocol.apply(s, self.ctx, env)

    def drain(self) -> list[tuple[str, Envelope]]:
        """Take every envelope in the outbox, oldest first."""
        from sqlalchemy import delete, select

        from flow_server.models import OutboxRecord

        with self.sessions.begin() as s:
            rows = s.scalars(select(OutboxRecord).order_by(OutboxRecord.id)).all()
            out = [(r.topic, Envelope.from_bytes(r.payload)) for r in rows]
            s.execute(delete(OutboxRecord))
        return out

    def close(self) -> None:
        self.engine.dispose()

    def job(self, job_id: str) -> Job:
        with self.sessions() as s:
            job = s.get(Job, job_id)
            assert job is not None
            _ = (job.tasks, job.members)
            return job
