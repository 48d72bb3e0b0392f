"""``intersect``: align the guest's and every host's rows on their common ids, privately (ECDH PSI).

Protocol (guest G with secret scalar a, each host H with secret scalar b, H(·) the salted hash
of :mod:`fedalgo.blinding`):

1. G draws a random salt for this job and sends it to every host.
2. G sends a·H(x) for its ids x; each H sends b·H(y) for its ids y, in a private random order.
3. Each H returns b·(a·H(x)) in G's order; G computes a·(b·H(y)) and matches the two.
4. G keeps the ids every host matched and sends each host the positions, in that host's own list,
   of the kept ids, in one shared order; both sides write their rows in that order.

Threat model (semi-honest parties; each sees only what the protocol sends it):

* The guest learns the intersection and how many distinct ids each host has. It never sees a
  host id outside the intersection, only points blinded with a scalar it does not know. Hosts
  shuffle before blinding, so positions reveal nothing about a host's file order.
* A host learns the final intersection (the rows it is told to keep) and how many distinct ids
  the guest has. With several hosts it learns only the common intersection of all of them.
  The shared row order is a random permutation (``shuffle``, on by default), because the guest's
  own file order may carry information, e.g. rows sorted by label.
* Not covered: a malicious party can put ids it does not hold into its list to probe membership,
  and the guest decides the result (inherent to two-party PSI without verification).

Arguments: :class:`IntersectParams` (``shuffle``).
Duplicate ids are dropped (first occurrence kept) on each side before anything is sent.
"""

from __future__ import annotations

import os
import random

import numpy as np
from pydantic import Field

from fedalgo import blinding
from fedalgo.components.registry import component
from fedalgo.context import Context
from fedalgo.errors import ArgumentError, ProtocolError
from fedalgo.tables import ID_COLUMN, Table, write_table
from fedcore.params import Params

_SALT = "intersect/salt"
_GUEST_BLINDED = "intersect/guest_blinded"
_HOST_BLINDED = "intersect/host_blinded"
_GUEST_DOUBLE = "intersect/guest_double_blinded"
_POSITIONS = "intersect/positions"


class IntersectParams(Params):
    """``intersect``'s arguments (the guest's)."""

    shuffle: bool = Field(
        True, description="randomly permute the common rows; false keeps the guest's order"
    )


@component(
    "intersect",
    roles=("guest", "host"),
    inputs=("data",),
    outputs=("data",),
    params=IntersectParams,
)
def intersect(ctx: Context) -> None:
    """Private set intersection on the ``id`` column; writes each party's aligned rows."""
    if not ctx.party_ids("host"):
        raise ArgumentError("intersect needs at least one host")
    path = ctx.input_location("data")
    table = ctx.read_table("data")
    ids, rows = _unique_rows(ctx, table, table.column_index(ID_COLUMN, path))
    if ctx.role == "guest":
        kept = _guest(ctx, ids, shuffle=ctx.params(IntersectParams).shuffle)
    else:
        kept = _host(ctx, ids)
    write_table(ctx.output("data"), table.header, [rows[i] for i in kept])
    ctx.metric("intersection_size", len(kept))


def _unique_rows(ctx: Context, table: Table, id_idx: int) -> tuple[list[str], list[list[str]]]:
    seen: set[str] = set()
    ids: list[str] = []
    rows: list[list[str]] = []
    for row in table.rows:
        if row[id_idx] not in seen:
            seen.add(row[id_idx])
            ids.append(row[id_idx])
            rows.append(row)
    if len(rows) < len(table.rows):
        ctx.logger.warning("dropped %d rows with duplicate ids", len(table.rows) - len(rows))
    return ids, rows


def _guest(ctx: Context, ids: list[str], *, shuffle: bool) -> list[int]:
    """Run the guest's side; the indices (into ``ids``) of the intersection, in output order."""
    salt = os.urandom(blinding.SALT_BYTES)
    ctx.send("host", _SALT, salt)
    blinder = blinding.Blinder()
    hashed = blinding.hash_ids(salt, ids, ctx.computing)
    ctx.send("host", _GUEST_BLINDED, blinding.pack(blinder.blind(hashed, ctx.computing)))

    hosts = ctx.party_ids("host")
    host_blinded = ctx.recv_all("host", _HOST_BLINDED)
    guest_double = ctx.recv_all("host", _GUEST_DOUBLE)
    positions: dict[str, list[int]] = {}
    for host in hosts:
        theirs = blinder.blind(blinding.unpack(host_blinded[host]), ctx.computing)
        where = {point: pos for pos, point in enumerate(theirs)}
        mine = blinding.unpack(guest_double[host], expected=len(ids))
        positions[host] = [where.get(point, -1) for point in mine]

    kept = [i for i in range(len(ids)) if all(positions[h][i] >= 0 for h in hosts)]
    if shuffle:
        random.SystemRandom().shuffle(kept)
    for host in hosts:
        ctx.send(host, _POSITIONS, np.array([positions[host][i] for i in kept], dtype=np.int64))
    ctx.logger.info("intersection: %d of %d guest ids", len(kept), len(ids))
    return kept


def _host(ctx: Context, ids: list[str]) -> list[int]:
    """Run a host's side; the indices (into ``ids``) the guest selected, in its order."""
    salt = ctx.recv("guest", _SALT)
    if not isinstance(salt, bytes):
        raise ProtocolError("the intersection salt must be bytes")
    # A private order, so the positions the guest learns say nothing about this file's order.
    order = list(range(len(ids)))
    random.SystemRandom().shuffle(order)
    blinder = blinding.Blinder()
    hashed = blinding.hash_ids(salt, [ids[i] for i in order], ctx.computing)
    ctx.send("guest", _HOST_BLINDED, blinding.pack(blinder.blind(hashed, ctx.computing)))
    guest_points = blinding.unpack(ctx.recv("guest", _GUEST_BLINDED))
    ctx.send("guest", _GUEST_DOUBLE, blinding.pack(blinder.blind(guest_points, ctx.computing)))

    positions = ctx.recv("guest", _POSITIONS)
    if not isinstance(positions, np.ndarray) or positions.ndim != 1 or positions.dtype.kind != "i":
        raise ProtocolError("intersection positions must be a 1-D integer array")
    if positions.size and (positions.min() < 0 or positions.max() >= len(ids)):
        raise ProtocolError("intersection positions out of range")
    if len(np.unique(positions)) != len(positions):
        raise ProtocolError("intersection positions repeat")
    return [order[p] for p in positions.tolist()]
