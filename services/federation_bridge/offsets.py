"""Which consumed offsets may be committed: never past a record not yet delivered.

Records of one partition can go to different peers and be delivered out of order, so each
partition keeps the offsets still in flight; its committable offset is the lowest of them, or one
past the highest offset seen when none is in flight.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka import TopicPartition


@dataclass
class _Partition:
    generation: int
    pending: dict[int, None] = field(default_factory=dict)  # insertion-ordered = ascending
    next_offset: int | None = None

    def committable(self) -> int | None:
        if self.pending:
            return next(iter(self.pending))
        return self.next_offset


@dataclass(frozen=True)
class Ticket:
    """Handed out with a tracked record; returned via :meth:`OffsetTracker.done`."""

    tp: TopicPartition
    offset: int
    generation: int


class OffsetTracker:
    def __init__(self) -> None:
        self._parts: dict[TopicPartition, _Partition] = {}
        self._generation = 0
        self._committed: dict[TopicPartition, int] = {}

    def track(self, tp: TopicPartition, offset: int) -> Ticket:
        """Note a record as in flight (offsets of a partition must be tracked in order)."""
        part = self._parts.get(tp)
        if part is None:
            self._generation += 1
            part = self._parts[tp] = _Partition(self._generation)
        part.pending[offset] = None
        part.next_offset = offset + 1
        return Ticket(tp, offset, part.generation)

    def done(self, ticket: Ticket) -> None:
        part = self._parts.get(ticket.tp)
        if part is not None and part.generation == ticket.generation:
            part.pending.pop(ticket.offset, None)

    def forget(self, tps: set[TopicPartition]) -> None:
        """Stop tracking partitions this consumer lost; late tickets for them are ignored."""
        for tp in tps:
            self._parts.pop(tp, None)
            self._committed.pop(tp, None)

    def to_commit(self, tps: set[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Offsets that moved since the last :meth:`committed` call."""
        out: dict[TopicPartition, int] = {}
        for tp, part in self._parts.items():
            if tps is not None and tp not in tps:
                continue
            offset = part.committable()
            if offset is not None and offset > self._committed.get(tp, -1):
                out[tp] = offset
        return out

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        self._committed.update(offsets)

    def position(self, tp: TopicPartition) -> int | None:
        """The offset a restart would resume ``tp`` from once in-flight records are done."""
        part = self._parts.get(tp)
        return part.committable() if part is not None else None

    def in_flight(self) -> int:
        return sum(len(p.pending) for p in self._parts.values())
