"""The cross-party job protocol and the scheduler's side effects, one transaction per event.

Who sees what: a proposed-to party receives the pipeline, the parties with their roles, the common
args and only its own ``parties-args``; parties exchange task *states* and reasons, never paths
or data. Every function here runs inside a caller's transaction and announces what it changed by
writing envelopes to the outbox table (published after the commit), so a state change and its
messages are never separated. Envelopes produced while handling an event get ids derived from that
event, so re-applying it after a crash reproduces the same ids and receivers de-duplicate them.

What other parties send is hostile input: a consumed envelope reaches its handler only as its
bounded body model (``fedcore.messages``) and only if its sender may send it; whatever cannot be
applied raises, and the consumer's guard (``flow_server.events``) sets it aside on ``fl.dead``.

The modules: ``context`` (what they share), ``jobstate`` (state changes and the messages they
cause), ``proposals`` (submission, proposal, answers, start, acceptance deadline), ``status``
(task and job states from workers and peers), ``faults`` (steps rerun after this party's
platform faults), ``lifecycle`` (stop, pause, resume, rerun, delete), ``senders`` (who may send
what), ``approvals`` (a proposal held for this party's operator: approve, reject, deadline) and
``dispatch`` (one consumed envelope through its model and its sender's rights to its handler).
"""

from flow_server.protocol.approvals import approve_job, reject_job
from flow_server.protocol.context import PartyContext, ProtocolError, derived_id, emit
from flow_server.protocol.dispatch import apply
from flow_server.protocol.faults import PLATFORM
from flow_server.protocol.lifecycle import delete_job, pause_job, rerun_job, resume_job, stop_job
from flow_server.protocol.proposals import expire_acceptance, submit_job, waiting_for_answers

__all__ = [
    "PLATFORM",
    "PartyContext",
    "ProtocolError",
    "apply",
    "approve_job",
    "delete_job",
    "derived_id",
    "emit",
    "expire_acceptance",
    "pause_job",
    "reject_job",
    "rerun_job",
    "resume_job",
    "stop_job",
    "submit_job",
    "waiting_for_answers",
]
