"""What the end-to-end modules share: the two example parties and their running stack.

A plain module (not conftest) so test modules can import it unambiguously; the fixture that starts
the stack is ``two_parties`` in this folder's conftest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tessera.example import DemoData, render_job
from tessera.sdk import Tessera
from tessera.stack import Party, Stack

GUEST, HOST = "10000", "20000"


@dataclass(frozen=True)
class TwoParties:
    """The guest and the host as real processes on the session's two brokers, with demo data."""

    stack: Stack
    data: DemoData
    root: Path

    def flow(self, party: str) -> Tessera:
        """A client of ``party``'s flow_server (use it as a context manager)."""
        return Tessera(self.stack.party(party).flow_server_url)

    def processes(self, party: str) -> Party:
        """``party``'s service processes (to kill, stop or restart one)."""
        return next(p for p in self.stack.parties if p.party_id == party)

    def job_text(self) -> str:
        """The example job.yaml with this stack's demo data and an output folder under ``root``."""
        return render_job(self.data, self.root / "output")
