"""TLS for the bridge: the listener's uvicorn options and the sender's per-peer trust.

TLS protects the channel (confidentiality, and with mTLS who may connect); the Ed25519 batch
signatures stay the authentication of content, so a record is accepted only if a known peer
signed it whatever the transport. The sender trusts a peer's certificate through
``PARTY_MQ_CA_<peer>`` (a CA file for that peer), else ``BRIDGE_TLS_CA_BUNDLE``, else the system's
CAs; it presents ``BRIDGE_TLS_CLIENT_CERT``/``_KEY`` to peers that require client certificates.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedcore.settings import SettingsError
from federation_bridge.options import BridgeOptions

_PEER_CA = re.compile(r"^PARTY_MQ_CA_(\d+)$")


def peer_cas(env: Mapping[str, str]) -> dict[str, Path]:
    """``PARTY_MQ_CA_<id>`` variables: peer party id -> CA file its bridge certificate chains to."""
    return {m[1]: Path(v) for k, v in env.items() if (m := _PEER_CA.match(k)) and v}


def server_options(options: BridgeOptions) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``: none for plain HTTP."""
    if not options.tls:
        return {}
    kwargs: dict[str, Any] = {
        "ssl_certfile": str(options.tls_cert),
        "ssl_keyfile": str(options.tls_key),
    }
    if options.tls_ca is not None:
        kwargs["ssl_ca_certs"] = str(options.tls_ca)
        kwargs["ssl_cert_reqs"] = (
            ssl.CERT_REQUIRED if options.tls_require_client_cert else ssl.CERT_OPTIONAL
        )
    return kwargs


def client_context(options: BridgeOptions, ca_file: Path | None) -> ssl.SSLContext:
    """The context the sender (and ``tessera diagnose``) uses towards one peer."""
    cafile = ca_file or options.tls_ca_bundle
    try:
        ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        if options.tls_client_cert is not None and options.tls_client_key is not None:
            ctx.load_cert_chain(str(options.tls_client_cert), str(options.tls_client_key))
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"cannot load TLS files for the bridge's client: {exc}") from exc
    return ctx
