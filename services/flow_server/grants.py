"""Data grants: what of this party's data each peer may name in the jobs it proposes.

A peer's proposal carries this party's ``parties-args``, written by the peer. Without grants the
peer would choose which of this party's files its steps read. So an input of a peer's job is
admitted only through a grant this party made for that peer (the idea of Kuscia's
DomainDataGrant): ``table:<name>`` of a registered table granted to it, or an absolute path equal
to or under a granted path. Everything else is refused *before any file is touched*, with the same
words whether the file exists or not ("not granted to 10000"), so refusals are no oracle of this
party's filesystem. Expired and revoked grants are invisible to the check.

A grant also says the role the data may serve (``host``: features only; ``guest``: the
label-holding side, which may serve as host too), and optionally the only components this party
may run in such a job. An ``output`` grant names a directory a peer may give as this party's
``output`` (``output_grant``); what happens to outputs is decided where steps are dispatched.

A ``model:<id>`` input needs no grant when the model came out of a job the proposing peer was a
party of (it is the product of their joint work); an imported model does.

The initiator's own args are its own business: nothing here runs for a job this party submits.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from fedcore.envelope import new_id
from flow_server import datasets, references
from flow_server.dsl import ArgRef, DslError, JobSpec, Pipeline, takes_part
from flow_server.models import DataGrant, Job, Model, now_ms

__all__ = [
    "INPUT",
    "OUTPUT",
    "Admitted",
    "GrantInvalid",
    "admit_inputs",
    "create_grant",
    "ensure_setting_grants",
    "grant_state",
    "input_grant",
    "list_grants",
    "output_grant",
    "revoke_grant",
    "serves_as",
]

INPUT = "input"
OUTPUT = "output"
# the roles a grant's data may serve in a job, by the grant's role
_SERVES = {"host": frozenset({"host"}), "guest": frozenset({"guest", "host"})}
_GRANT_ID_NAMESPACE = uuid.UUID("0b7e3c1a-62a4-4f55-9f3e-1f2c4d5e6a7b")


class GrantInvalid(ValueError):
    """A grant cannot be made as asked; ``where`` names the field."""

    def __init__(self, code: str, message: str, where: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.where = where


# --- making, listing and revoking grants -------------------------------------------------------


def _clean_path(raw: str, where: str) -> str:
    if not raw.startswith("/"):
        raise GrantInvalid("bad_path", f"{raw!r} is not an absolute path", where)
    path = os.path.normpath(raw)
    if path == "/":
        raise GrantInvalid("bad_path", "grant a file or a directory, not all of /", where)
    return path


def create_grant(
    session: Session,
    *,
    peer: str,
    kind: str,
    table: str | None = None,
    path: str | None = None,
    role: str | None = None,
    components: Iterable[str] = (),
    expires_ms: int | None = None,
    created_by: str,
    known_peers: Iterable[str] | None = None,
    known_components: Iterable[str] | None = None,
    grant_id: str | None = None,
) -> DataGrant:
    """Record a grant; ``GrantInvalid`` says what is wrong with the request."""
    if not peer.isdigit():
        raise GrantInvalid("bad_peer", f"{peer!r} is not a party id", "peer")
    if known_peers is not None and peer not in set(known_peers):
        raise GrantInvalid("unknown_party", f"party {peer} is not a peer of this party", "peer")
    if kind not in (INPUT, OUTPUT):
        raise GrantInvalid("bad_kind", f"kind is 'input' or 'output', not {kind!r}", "kind")
    if (table is None) == (path is None):
        raise GrantInvalid("bad_grant", "a grant names either a table or a path", "table")
    comps = sorted(set(components))
    if known_components is not None:
        unknown = sorted(set(comps) - set(known_components))
        if unknown:
            raise GrantInvalid(
                "unknown_component", f"no such component: {', '.join(unknown)}", "components"
            )
    if expires_ms is not None and expires_ms <= now_ms():
        raise GrantInvalid("bad_expiry", "the expiry is in the past", "expires_ms")
    table_id = None
    if kind == OUTPUT:
        if path is None:
            raise GrantInvalid("bad_grant", "an output grant names a directory (path)", "path")
        if role is not None or comps:
            raise GrantInvalid("bad_grant", "an output grant has no role and no components", "role")
    else:
        if role not in _SERVES:
            raise GrantInvalid("bad_role", "role is 'host' or 'guest'", "role")
        if table is not None:
            row = datasets.find_table(session, table)
            if row is None:
                raise GrantInvalid("table_not_found", f"no registered table {table!r}", "table")
            table_id = row.id
    grant = DataGrant(
        id=grant_id or new_id(),
        peer=peer,
        kind=kind,
        table_id=table_id,
        path=_clean_path(path, "path") if path is not None else None,
        role=role,
        components=comps,
        expires_ms=expires_ms,
        created_by=created_by,
    )
    session.add(grant)
    session.flush()
    return grant


def ensure_setting_grants(session: Session, grants: Mapping[str, Iterable[Path]]) -> None:
    """Make the input grants of the settings (``GRANT_INPUT_PATHS_<peer>``), once each.

    A grant from the settings has an id derived from the peer and the path, so a restart does not
    duplicate it, and one its operator revoked stays revoked.
    """
    for peer, paths in grants.items():
        for raw in paths:
            path = str(Path(raw).resolve())
            grant_id = uuid.uuid5(_GRANT_ID_NAMESPACE, f"{peer}/{path}").hex
            if session.get(DataGrant, grant_id) is None:
                create_grant(
                    session,
                    peer=peer,
                    kind=INPUT,
                    path=path,
                    role="host",
                    created_by=f"settings (GRANT_INPUT_PATHS_{peer})",
                    grant_id=grant_id,
                )


def grant_state(grant: DataGrant, now: int | None = None) -> str:
    """``active``, ``expired`` or ``revoked``."""
    if grant.revoked_ms is not None:
        return "revoked"
    if grant.expires_ms is not None and grant.expires_ms <= (now if now is not None else now_ms()):
        return "expired"
    return "active"


def _active(query: Select[DataGrant], now: int) -> Select[DataGrant]:
    return query.where(
        DataGrant.revoked_ms.is_(None),
        (DataGrant.expires_ms.is_(None)) | (DataGrant.expires_ms > now),
    )


def list_grants(
    session: Session,
    *,
    peer: str | None = None,
    kind: str | None = None,
    active_only: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[DataGrant], int]:
    query = select(DataGrant)
    if peer is not None:
        query = query.where(DataGrant.peer == peer)
    if kind is not None:
        query = query.where(DataGrant.kind == kind)
    if active_only:
        query = _active(query, now_ms())
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(
        query.order_by(DataGrant.created_ms.desc(), DataGrant.id).limit(limit).offset(offset)
    )
    return list(rows), int(total or 0)


def revoke_grant(session: Session, grant: DataGrant, *, by: str) -> DataGrant:
    """Revoke a grant (once: revoking again changes nothing)."""
    if grant.revoked_ms is None:
        grant.revoked_ms = now_ms()
        grant.revoked_by = by
    return grant


# --- lookups -----------------------------------------------------------------------------------


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _path_grants(session: Session, *, peer: str, kind: str, path: str, now: int) -> list[DataGrant]:
    """The active grants of ``kind`` whose path holds ``path``, oldest first.

    The lexical check comes first, so nothing outside a granted path is ever looked at; inside
    one, the real path must stay inside too (a symlink may not lead out of it).
    """
    if not path.startswith("/"):
        return []
    candidate = os.path.normpath(path)
    query = _active(
        select(DataGrant).where(
            DataGrant.peer == peer, DataGrant.kind == kind, DataGrant.path.is_not(None)
        ),
        now,
    )
    return [
        grant
        for grant in session.scalars(query.order_by(DataGrant.created_ms, DataGrant.id))
        if _under(candidate, str(grant.path))
        and _under(os.path.realpath(candidate), os.path.realpath(str(grant.path)))
    ]


def output_grant(
    session: Session, *, peer: str, path: str, now: int | None = None
) -> DataGrant | None:
    """The active output grant that lets ``peer`` name ``path`` as this party's output."""
    found = _path_grants(
        session, peer=peer, kind=OUTPUT, path=path, now=now if now is not None else now_ms()
    )
    return found[0] if found else None


@dataclass(frozen=True)
class Granted:
    """An input value a peer may use: the local path it stands for, and the grants that cover it
    (none for a model of a job the peer took part in)."""

    path: str
    grants: tuple[DataGrant, ...]


def input_grant(
    session: Session, *, peer: str, value: Any, now: int | None = None
) -> Granted | None:
    """What lets ``peer`` name ``value`` as an input of this party's, or None."""
    at = now if now is not None else now_ms()
    if not isinstance(value, str):
        return None
    if value.startswith(references.TABLE):
        table = datasets.find_table(session, value[len(references.TABLE) :].strip())
        if table is None:
            return None
        found = session.scalars(
            _active(
                select(DataGrant).where(
                    DataGrant.peer == peer,
                    DataGrant.kind == INPUT,
                    DataGrant.table_id == table.id,
                ),
                at,
            ).order_by(DataGrant.created_ms, DataGrant.id)
        ).all()
        return Granted(table.path, tuple(found)) if found else None
    if value.startswith(references.MODEL):
        model = session.get(Model, value[len(references.MODEL) :].strip())
        if model is None:
            return None
        job = session.get(Job, model.job_id) if model.job_id else None
        if job is not None and any(p.split("=")[0] == peer for p in job.parties):
            return Granted(model.path, ())
        value = model.path
    found = _path_grants(session, peer=peer, kind=INPUT, path=value, now=at)
    return Granted(os.path.normpath(value), tuple(found)) if found else None


def serves_as(grant: DataGrant, role: str) -> bool:
    """Whether the grant's data may serve ``role`` (``guest`` only if granted as guest)."""
    return role in _SERVES.get(grant.role or "", frozenset())


# --- a peer's proposal -------------------------------------------------------------------------


@dataclass(frozen=True)
class Admitted:
    """This party's args with every input replaced by the local path it was granted as."""

    args: dict[str, Any]
    grants: tuple[str, ...]  # ids of the grants used


def admit_inputs(
    session: Session,
    *,
    me: str,
    initiator: str,
    pipeline: Pipeline,
    spec: JobSpec,
    now: int | None = None,
) -> Admitted:
    """Check every input this party's steps read against its grants to ``initiator``.

    Raises ``DslError`` (``not_granted``, ``role_not_granted``, ``component_not_granted``) on
    the first input that is not admitted; nothing of the filesystem is looked at for a value no
    grant covers. The returned args carry the granted local paths in this party's own args
    (whether the peer gave the value there or in the common args), and every other table or
    model reference resolved.
    """
    at = now if now is not None else now_ms()
    role = spec.parties[me]
    own = dict(spec.party_args.get(me, {}))
    mine = [s for s in pipeline.steps if takes_part(s, role)]
    components = sorted({s.component for s in mine})
    used: dict[str, str] = {}
    for step in mine:
        args = spec.args_for(step, me)
        for name, ref in step.inputs.items():
            if not isinstance(ref, ArgRef):
                continue
            where = f"parties-args.{me}.{ref.arg}"
            what = f"step '{step.name}' input '{name}' (${ref.arg})"
            granted = input_grant(session, peer=initiator, value=args.get(ref.arg), now=at)
            if granted is None:
                raise DslError("not_granted", f"{what}: not granted to {initiator}", where)
            if granted.grants:
                grant = _fitting(granted.grants, role, components, what, initiator, where)
                used[grant.id] = grant.id
            own[ref.arg] = granted.path
    resolved = references.resolve_args(session, own, me=me)
    return Admitted(resolved, tuple(used))


def _fitting(
    found: tuple[DataGrant, ...],
    role: str,
    components: list[str],
    what: str,
    initiator: str,
    where: str,
) -> DataGrant:
    """The first of the grants covering an input that allows the role and the components; if
    none does, ``DslError`` says what the first one does not allow."""
    for grant in found:
        if serves_as(grant, role) and all(
            c in grant.components for c in components if grant.components
        ):
            return grant
    first = found[0]
    if not serves_as(first, role):
        # the label-holding side is the party's floor `guest-data` (fedcore.floors)
        floor = " (floor guest-data: only data granted --as guest holds the labels)"
        raise DslError(
            "role_not_granted",
            f"{what}: granted to {initiator} as {first.role} only, not as {role}"
            + (floor if role == "guest" else ""),
            where,
        )
    refused = [c for c in components if c not in first.components]
    raise DslError(
        "component_not_granted",
        f"{what}: not granted to {initiator} for component(s) {', '.join(refused)} "
        f"(granted for {', '.join(first.components)})",
        where,
    )
