"""API tokens as every service of a party checks them: when one is needed, and whether it is valid.

``tessera token create`` writes a token's SHA-256 into the flow_server's database
(``flow_server.auth``); the dashboard reads the same table through the same ``DATABASE_URL``, so
one token opens both. A token is 32 random bytes, so an unsalted digest is enough to make a
stolen database useless; the stored digest is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import Final

from sqlalchemy import Engine, column, select, table

from fedcore.settings import PartySettings

TOKEN_PREFIX: Final = "tsr_"
MAX_TOKEN_CHARS: Final = 256

_tokens = table("api_tokens", column("token_hash"))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def token_required(settings: PartySettings) -> bool:
    """Off loopback always; on loopback only with ``REQUIRE_API_TOKEN=1``."""
    return settings.require_api_token or not is_loopback(settings.bind_host)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def known_digest(engine: Engine, digest: str) -> bool:
    """Whether ``digest`` is the stored digest of a valid token (blocking: one indexed query)."""
    with engine.connect() as conn:
        stored = conn.execute(
            select(_tokens.c.token_hash).where(_tokens.c.token_hash == digest)
        ).scalar()
    return stored is not None and hmac.compare_digest(str(stored), digest)
