"""Per-peer admission of requests at the receiver: how many at once and how many body bytes.

A request is admitted before its body is read, on the size it declares (``Content-Length``,
required and at most ``max_body_bytes``); its body is then read up to that size only. A peer over
its share is answered 429 with ``Retry-After`` (the sender retries, see
:mod:`federation_bridge.delivery`); the other peers are unaffected. The claimed party is not yet
authenticated when a request is admitted, so a forger can use up a peer's share but not more;
mTLS (``BRIDGE_TLS_REQUIRE_CLIENT_CERT``) closes that too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from federation_bridge.metrics import BridgeMetrics
from federation_bridge.receiver import Rejected

RETRY_AFTER_S = 1


class PeerAdmission:
    def __init__(
        self, *, max_requests: int, max_bytes: int, metrics: BridgeMetrics | None = None
    ) -> None:
        self._max_requests = max_requests
        self._max_bytes = max_bytes
        self._metrics = metrics or BridgeMetrics()
        self._requests: Counter[str] = Counter()
        self._bytes: Counter[str] = Counter()

    @contextmanager
    def admit(self, peer: str, size: int) -> Iterator[None]:
        """Hold one of ``peer``'s requests and ``size`` of its bytes for the block; Rejected
        (429) if either is over its share."""
        if self._requests[peer] >= self._max_requests:
            raise Rejected(
                429,
                "too_many_requests",
                f"party {peer} has {self._max_requests} requests in progress",
                retry_after_s=RETRY_AFTER_S,
            )
        if self._bytes[peer] + size > self._max_bytes:
            raise Rejected(
                429,
                "too_many_bytes",
                f"party {peer} has {self._bytes[peer]} bytes in progress,"
                f" at most {self._max_bytes}",
                retry_after_s=RETRY_AFTER_S,
            )
        gauge = self._metrics.in_progress_bytes.labels(peer)
        self._requests[peer] += 1
        self._bytes[peer] += size
        gauge.inc(size)
        try:
            yield
        finally:
            self._requests[peer] -= 1
            self._bytes[peer] -= size
            gauge.dec(size)

    def in_progress(self, peer: str) -> tuple[int, int]:
        """Requests and bytes ``peer`` has in progress now."""
        return self._requests[peer], self._bytes[peer]
