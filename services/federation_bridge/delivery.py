"""One peer's link: POST signed batches to its bridge, retrying until it answers 2xx.

Batches are numbered (``seq``) in the order they were taken, within a ``stream`` named afresh by
each link (each process start); several may be in flight at once and the peer applies them in
order (:mod:`federation_bridge.ordering`). Each attempt also carries ``base``, the lowest ``seq``
still without a 2xx.

A batch is never skipped: transport errors, 5xx and 4xx alike are retried with capped exponential
backoff (with jitter); a batch waiting to retry goes at once when another batch of the link
succeeds, since a later batch can only have failed waiting for an earlier one. A 429 (this party
has more requests or bytes in progress at the peer than its share) waits at least the peer's
``Retry-After``. Another 4xx means the two parties' configurations disagree (keys, party ids,
limits) and is logged as an error on every attempt, because only an operator can fix it;
meanwhile the records wait in Kafka behind the bounded buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from dataclasses import dataclass

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from federation_bridge import signing
from federation_bridge.metrics import BridgeMetrics
from federation_bridge.options import BridgeOptions
from federation_bridge.wire import (
    CONTENT_TYPE,
    PARTY_HEADER,
    PATH,
    SIGNATURE_HEADER,
    Batch,
    WireRecord,
)

log = logging.getLogger(__name__)


@dataclass
class LinkStats:
    batches: int = 0
    records: int = 0
    failed_attempts: int = 0
    last_error: str | None = None


class PeerLink:
    def __init__(
        self,
        *,
        party_id: str,
        peer_id: str,
        url: str,
        client: httpx.AsyncClient,
        private_key: Ed25519PrivateKey,
        options: BridgeOptions,
        metrics: BridgeMetrics | None = None,
    ) -> None:
        self.party_id = party_id
        self.peer_id = peer_id
        self.url = url + PATH
        self._client = client
        self._key = private_key
        self._options = options
        self.stats = LinkStats()
        self.metrics = metrics or BridgeMetrics()
        self.stream = uuid.uuid4().hex
        self._next_seq = 0
        self._unacked: dict[int, None] = {}  # insertion-ordered, so the first is the lowest
        self._progress = asyncio.Event()

    def number(self) -> int:
        """The ``seq`` of the next batch; call in the order the batches' records were read."""
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        self._unacked[seq] = None
        return seq

    def encode(
        self, seq: int, batch_id: str, records: list[WireRecord]
    ) -> tuple[bytes, dict[str, str]]:
        """The signed body and HTTP headers of one attempt (``sent_ms`` is the attempt's time)."""
        batch = Batch(
            src=self.party_id,
            dst=self.peer_id,
            batch_id=batch_id,
            sent_ms=int(time.time() * 1000),
            records=records,
            stream=self.stream,
            seq=seq,
            base=next(iter(self._unacked), seq),
        )
        body = batch.encode()
        headers = {
            "Content-Type": CONTENT_TYPE,
            PARTY_HEADER: self.party_id,
            SIGNATURE_HEADER: signing.sign(self._key, body),
        }
        return body, headers

    async def deliver(self, seq: int, records: list[WireRecord]) -> None:
        """Send ``records`` as batch ``seq`` (from :meth:`number`); return once the peer answered
        2xx."""
        batch_id = uuid.uuid4().hex
        delay_s = self._options.retry_initial_s
        while True:
            body, headers = self.encode(seq, batch_id, records)
            level = logging.WARNING
            try:
                resp = await self._client.post(self.url, content=body, headers=headers)
            except httpx.RequestError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if resp.is_success:
                    del self._unacked[seq]
                    self._progress.set()
                    self._progress = asyncio.Event()
                    self.stats.batches += 1
                    self.stats.records += len(records)
                    self.stats.last_error = None
                    self.metrics.batches_out.labels(self.peer_id).inc()
                    self.metrics.records_out.labels(self.peer_id).inc(len(records))
                    self.metrics.bytes_out.labels(self.peer_id).inc(len(body))
                    return
                problem = f"HTTP {resp.status_code}: {resp.text[:500]}"
                if resp.status_code == 429:  # over our share at the peer: as told, later
                    delay_s = max(delay_s, _retry_after_s(resp))
                elif resp.is_client_error:
                    level = logging.ERROR
            self.stats.failed_attempts += 1
            self.metrics.retries.labels(self.peer_id).inc()
            self.stats.last_error = problem
            log.log(
                level,
                "batch %s (%d records) to party %s at %s failed, retrying in %.1f s: %s",
                batch_id, len(records), self.peer_id, self.url, delay_s, problem,
            )  # fmt: skip
            progress = self._progress
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(progress.wait(), delay_s * random.uniform(0.8, 1.2))
            delay_s = min(delay_s * 2, self._options.retry_max_s)


def _retry_after_s(resp: httpx.Response) -> float:
    """The peer's ``Retry-After`` in seconds (0 when absent or not a small number)."""
    value = resp.headers.get("retry-after", "")
    return float(value) if value.isdigit() and len(value) < 5 else 0.0
