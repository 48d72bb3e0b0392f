"""After a crash of the receiver: settle the records it left pending, from what Kafka holds.

A record is pending from just before it is produced until its key is remembered as seen. If the
bridge was killed in between, the broker may or may not have the record, and the peer will send
it again because it never got a 2xx. At start, before serving, this module reads the inbound
topics from a little before the oldest pending record to their end, marks as seen the pending
keys found there (so the re-sent copy is dropped as a duplicate) and forgets the others (so the
re-sent copy is produced). The scan is bounded by the time since the crash.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from aiokafka import AIOKafkaConsumer, TopicPartition

from fedcore.bus import partitions
from federation_bridge.dedup import DedupStore, RecordKey
from federation_bridge.wire import find_header

log = logging.getLogger(__name__)

# producer timestamps come from this machine's clock; allow for it stepping back a little
_MARGIN_MS = 60_000
_POLL_MS = 500


async def recover_pending(dedup: DedupStore, bootstrap: str) -> tuple[int, int]:
    """Settle pending records; returns (found in Kafka, not found)."""
    rows = await dedup.pending()
    if not rows:
        return 0, 0
    wanted: dict[str, set[RecordKey]] = defaultdict(set)
    for key, topic, _ in rows:
        wanted[topic].add(key)
    since_ms = int(min(since for _, _, since in rows) * 1000) - _MARGIN_MS
    found = await _scan(bootstrap, wanted, since_ms)
    missing = {key for keys in wanted.values() for key in keys} - found
    await dedup.mark(found)
    await dedup.forget_pending(missing)
    log.warning(
        "recovered %d records left pending by a crash: %d had reached Kafka, %d had not",
        len(rows), len(found), len(missing),
    )  # fmt: skip
    return len(found), len(missing)


async def _scan(bootstrap: str, wanted: dict[str, set[RecordKey]], since_ms: int) -> set[RecordKey]:
    tps = [
        TopicPartition(t, p) for t, ps in (await partitions(bootstrap, wanted)).items() for p in ps
    ]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    found: set[RecordKey] = set()
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.offsets_for_times(dict.fromkeys(tps, max(0, since_ms)))
        todo = set()
        for tp in tps:
            hit = starts.get(tp)
            start = ends[tp] if hit is None else hit.offset
            consumer.seek(tp, start)
            if start < ends[tp]:
                todo.add(tp)
        while todo:
            for tp, records in (await consumer.getmany(*todo, timeout_ms=_POLL_MS)).items():
                for r in records:
                    headers = r.headers or ()
                    key = (
                        find_header(headers, "src") or "",
                        find_header(headers, "id") or "",
                        find_header(headers, "chunk") or "",
                    )
                    if key in wanted[tp.topic]:
                        found.add(key)
            for tp in list(todo):
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
    finally:
        await consumer.stop()
    return found
