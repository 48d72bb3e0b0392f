"""Where this party writes a job's outputs: where its own settings say, never where a peer says.

A job.yaml names every party's ``output`` (and ``common-args`` may too). On the party that
submitted the job that is its own operator's choice, and it is honoured. On a party the job was
proposed to it is the initiator's wish: honoured only if it lies under a prefix this party
granted to the initiator for outputs (and never inside this party's state directory, where its
database and every job's work dirs are); otherwise this party writes under its own output root
(``OUTPUT_ROOT``, else ``STATE_DIR/output``) and the job still runs. The decision is made when
the job is created or accepted here (for a proposal held for the operator, again when approved),
stored on the job and shown by ``GET /flow-server/jobs/{id}`` (``output``: where, who chose it,
why).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from flow_server import grants
from flow_server.models import Job

OUTPUT_ARG = "output"


@dataclass(frozen=True)
class OutputPlacement:
    root: str  # outputs go to <root>/<job id>/<party id>/<step>/
    chosen_by: str  # "job.yaml" (this party's own), "grant" (a peer's, granted) or "settings"
    requested: str | None  # the `output` the job named for this party, if any
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def requested_output(own_args: dict[str, Any], common_args: dict[str, Any]) -> str | None:
    value = own_args.get(OUTPUT_ARG, common_args.get(OUTPUT_ARG))
    return str(value) if value not in (None, "") else None


def choose(
    session: Session,
    *,
    me: str,
    initiator: str,
    requested: str | None,
    default_root: Path,
    state_dir: Path,
) -> OutputPlacement:
    """Where party ``me`` writes the outputs of a job ``initiator`` submitted."""
    default = str(default_root)
    if requested is None:
        return OutputPlacement(default, "settings", None, "the job names no output for this party")
    if initiator == me:
        return OutputPlacement(requested, "job.yaml", requested, "this party's own job.yaml")
    resolved = os.path.realpath(requested)
    if not os.path.isabs(requested) or _inside(resolved, os.path.realpath(state_dir)):
        why = "is not an absolute path outside this party's state directory"
    elif grants.output_grant(session, peer=initiator, path=resolved) is not None:
        return OutputPlacement(
            resolved, "grant", requested, f"under a prefix granted to {initiator}"
        )
    else:
        why = f"is not under a prefix this party granted to {initiator} for outputs"
    reason = f"the output {initiator} named {why}: this party writes under its own output root"
    return OutputPlacement(default, "settings", requested, reason)


def output_root(job: Job, default_root: Path) -> str:
    """The root this party writes the job's outputs under (its own default for a job stored
    before placements were recorded)."""
    placement = job.output_placement or {}
    root = placement.get("root")
    return str(root) if isinstance(root, str) and root else str(default_root)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)
