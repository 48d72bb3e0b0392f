"""Who may send what: a consumed envelope is applied only if its sender may send that kind of
message about that job.

The bridge vouches that an envelope from another party was signed by the party in its ``src``
(and this party's own worker writes ``fl.status``); this module decides whether that party has
any business sending it. A party of a job may tell the others its own states and ask for the
lifecycle commands; only the initiator proposes and starts, and only to it are the answers sent;
a task's state comes only from the party it runs on. A message about a job this party does not
know passes here: its handler ignores it.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from fedcore.envelope import Envelope
from fedcore.messages import Body, JobPropose, TaskStatus
from flow_server.models import Job
from flow_server.protocol.context import PartyContext, ProtocolError, job_parties

_ANSWERS = frozenset({"job.accept", "job.reject"})


def check_sender(session: Session, ctx: PartyContext, env: Envelope, body: Body) -> None:
    """Raise :class:`ProtocolError` if ``env.src`` may not send ``env``."""
    if isinstance(body, JobPropose):
        _check_proposer(ctx, env, body)
        return
    job = session.get(Job, env.job_id)
    if job is None:
        return
    if env.src not in job_parties(job):
        raise ProtocolError(f"{env.type} about job {job.id} from {env.src}, not a party of it")
    if isinstance(body, TaskStatus):
        _check_task_owner(env, body)
    elif env.src == ctx.me:
        # this party's own job messages go to peers and workers, never back to itself
        raise ProtocolError(f"{env.type} about job {job.id} claims to come from this party")
    elif env.type in _ANSWERS and job.initiator != ctx.me:
        raise ProtocolError(f"{env.type} about job {job.id}, which this party did not propose")
    elif env.type == "job.start" and env.src != job.initiator:
        raise ProtocolError(f"job.start of job {job.id} from {env.src}, not its initiator")


def _check_proposer(ctx: PartyContext, env: Envelope, body: JobPropose) -> None:
    if env.src == ctx.me or env.src not in ctx.peers:
        raise ProtocolError(f"job.propose from {env.src}, not a known peer")
    if body.initiator != env.src:
        raise ProtocolError(
            f"job.propose from {env.src} names another initiator ({body.initiator})"
        )


def _check_task_owner(env: Envelope, body: TaskStatus) -> None:
    party = body.party or env.src
    if party != env.src:
        raise ProtocolError(
            f"task.status from {env.src} about party {party}'s copy of step {env.task}"
        )
