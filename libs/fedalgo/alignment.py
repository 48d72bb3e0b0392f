"""The opening handshake of the guest-and-hosts components: are the rows aligned, are there columns.

Each host sends the guest ``{"samples", "features", "ids_digest"}``: its row count, its feature
count and a SHA-256 of its ids in order. The ids themselves never cross (after ``intersect``
both sides hold the same ids, so the digest only confirms what each already knows). The guest
checks every host before any expensive work starts.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fedalgo.context import Context
from fedalgo.errors import DataError
from fedalgo.tables import Dataset


def ids_digest(ids: list[str]) -> bytes:
    return hashlib.sha256("\n".join(ids).encode("utf-8")).digest()


def host_info(data: Dataset) -> dict[str, Any]:
    """What a host tells the guest about its data."""
    return {
        "samples": data.n_samples,
        "features": len(data.features),
        "ids_digest": ids_digest(data.ids),
    }


def check_hosts(
    ctx: Context, tag: str, data: Dataset, *, need_features: bool = True
) -> dict[str, int]:
    """Receive every host's :func:`host_info` under ``tag``; each host's feature count.

    Raises :class:`DataError` if a host's rows differ from the guest's or it has no features.
    """
    digest = ids_digest(data.ids)
    counts: dict[str, int] = {}
    for host, info in ctx.recv_all("host", tag).items():
        if not isinstance(info, dict):
            raise DataError(f"host {host} sent no data description")
        if info.get("samples") != data.n_samples or info.get("ids_digest") != digest:
            raise DataError(
                f"host {host}'s rows are not aligned with the guest's "
                f"({info.get('samples')} vs {data.n_samples} rows); run intersect first"
            )
        features = info.get("features")
        if not isinstance(features, int) or isinstance(features, bool) or features < 0:
            raise DataError(f"host {host} sent a bad feature count {features!r}")
        if need_features and features < 1:
            raise DataError(f"host {host} has no feature columns")
        counts[host] = features
    return counts


def host_feature_name(host: str, index: int) -> str:
    """How the guest names a host's feature it may not know the name of: ``host20000_f3``."""
    return f"host{host}_f{index}"
