"""federation_bridge: the only thing that crosses a party's boundary.

The sender mirrors this party's outbound topics (``fl.out.*``) to the destination party's bridge as
signed batches over HTTP; the receiver verifies batches from peers, de-duplicates their records
and produces them into this party's inbound topics (``fl.in.*``).
"""

from federation_bridge.app import create_app

__all__ = ["create_app"]
