"""The two questions the floors and the output placement ask of this party's grants.

Both are about a peer (the job's initiator) and a path on this party, after ``table:``
references were resolved:

* may ``peer`` have this party write a job's outputs under ``path`` (a prefix granted for
  outputs)?
* may ``peer`` use the data at ``path`` with this party as the label-holding guest (data granted
  ``--as guest``)?

A :class:`GrantLookup` answers them from the party's grants. :class:`NoGrants` is a party that
has granted nothing: every answer is no, so a peer's ``output`` is never honoured and this
party's data never serves as a guest for another party's job.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.orm import Session


class GrantLookup(Protocol):
    def output_prefix_granted(self, session: Session, peer: str, path: str) -> bool:
        """``path`` (absolute, symlinks resolved) lies under a prefix granted to ``peer`` for
        outputs, and the grant has not expired."""
        ...

    def guest_data_granted(self, session: Session, peer: str, path: str) -> bool:
        """The data at ``path`` is granted to ``peer`` with the guest role, unexpired."""
        ...


class NoGrants:
    """A party that has granted nothing to anyone."""

    def output_prefix_granted(self, session: Session, peer: str, path: str) -> bool:
        return False

    def guest_data_granted(self, session: Session, peer: str, path: str) -> bool:
        return False
