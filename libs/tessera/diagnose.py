"""``tessera diagnose <party>``: check the federation channel between this party and a peer.

Runs against the peer's bridge with this party's own keys and TLS settings (the env file), so a
pass means the bridges can really talk: the peer is reachable, answers a signed ping with a
signature that verifies under the key this party holds for it, and accepts payloads up to some
size. Payloads go to the peer's diagnostic sink, which verifies and discards them; nothing is
produced into the peer's Kafka.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from fedcore.settings import PartySettings, SettingsError, environment
from federation_bridge import diag, signing, tls
from federation_bridge.options import BridgeOptions

_MIB = 1024 * 1024


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    party: str
    peer: str
    url: str
    checks: list[Check] = field(default_factory=list)
    peer_version: str | None = None
    rtt_ms_p50: float | None = None
    rtt_ms_p99: float | None = None
    rtt_ms_min: float | None = None
    throughput_mb_s: float | None = None
    largest_message_bytes: int | None = None

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name, ok, detail))
        return ok


@dataclass(frozen=True)
class DiagnoseOptions:
    pings: int = 20
    throughput_bytes: int = 64 * _MIB
    payload_bytes: int = 4 * _MIB
    max_probe_bytes: int = 256 * _MIB
    timeout_s: float = 30.0


def diagnose(
    peer: str, env_file: str | Path | None = None, options: DiagnoseOptions | None = None
) -> Report:
    """Run every check against ``peer``; a failed check stops those that depend on it."""
    opts = options or DiagnoseOptions()
    settings = PartySettings.from_env(env_file)
    bridge_opts = BridgeOptions.from_env(env_file)
    if peer not in settings.peers:
        known = ", ".join(sorted(settings.peers)) or "none"
        raise SettingsError(f"party {peer} is not a peer of party {settings.party_id} ({known})")
    if settings.private_key_file is None:
        raise SettingsError("PARTY_PRIVATE_KEY is not set: diagnose signs like the bridge")
    key = signing.load_private_key(settings.private_key_file)
    peer_key_file = settings.public_keys.get(peer)
    if peer_key_file is None:
        raise SettingsError(f"PARTY_PUBLIC_KEY_{peer} is not set")
    peer_key = signing.load_public_key(peer_key_file)
    ca = tls.peer_cas(environment(env_file)).get(peer)
    ctx = tls.client_context(bridge_opts, ca)
    url = settings.peers[peer]
    report = Report(settings.party_id, peer, url)
    with httpx.Client(base_url=url, verify=ctx, timeout=opts.timeout_s) as client:
        if not _reachability(client, report):
            return report
        if not _signed_ping(client, report, settings.party_id, peer, key, peer_key, opts):
            return report
        _throughput(client, report, settings.party_id, key, opts)
        _largest(client, report, settings.party_id, key, opts)
    return report


def _reachability(client: httpx.Client, report: Report) -> bool:
    # an unsigned request to the signed ping: any HTTP answer (a 401) proves the connection and
    # TLS handshake work; the peers' port serves nothing unsigned (its /health is internal)
    start = time.perf_counter()
    try:
        resp = client.post(diag.PING_PATH, content=b"")
    except httpx.HTTPError as exc:
        return report.add("reachable", False, f"{type(exc).__name__}: {exc}")
    ms = (time.perf_counter() - start) * 1000
    scheme = "https" if report.url.startswith("https") else "http (no TLS)"
    return report.add("reachable", True, f"{scheme}, HTTP {resp.status_code} in {ms:.1f} ms")


def _signed_ping(
    client: httpx.Client,
    report: Report,
    party: str,
    peer: str,
    key: signing.Ed25519PrivateKey,
    peer_key: signing.Ed25519PublicKey,
    opts: DiagnoseOptions,
) -> bool:
    rtts: list[float] = []
    for i in range(max(1, opts.pings)):
        ping, body, headers = diag.make_ping(party, peer, key)
        start = time.perf_counter()
        try:
            resp = client.post(diag.PING_PATH, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return report.add("signed ping", False, f"{type(exc).__name__}: {exc}")
        rtts.append((time.perf_counter() - start) * 1000)
        if not resp.is_success:
            return report.add(
                "signed ping", False, f"the peer refused: HTTP {resp.status_code} {resp.text[:300]}"
            )
        try:
            pong = diag.check_pong(resp.content, dict(resp.headers), ping=ping, peer_key=peer_key)
        except diag.DiagError as exc:
            return report.add("signed ping", False, str(exc))
        if i == 0:
            report.peer_version = pong.version
    rtts.sort()
    report.rtt_ms_p50 = round(statistics.median(rtts), 2)
    report.rtt_ms_p99 = round(rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))], 2)
    report.rtt_ms_min = round(rtts[0], 2)
    report.add("signed ping", True, f"both signatures verify; peer version {report.peer_version}")
    return True


def _sink(
    client: httpx.Client, party: str, key: signing.Ed25519PrivateKey, body: bytes
) -> httpx.Response:
    return client.post(diag.SINK_PATH, content=body, headers=diag.signed_headers(party, key, body))


def _throughput(
    client: httpx.Client,
    report: Report,
    party: str,
    key: signing.Ed25519PrivateKey,
    opts: DiagnoseOptions,
) -> None:
    payload = os.urandom(opts.payload_bytes)
    count = max(1, opts.throughput_bytes // opts.payload_bytes)
    signature_headers = diag.signed_headers(party, key, payload)  # the same payload each time
    start = time.perf_counter()
    try:
        for _ in range(count):
            resp = client.post(diag.SINK_PATH, content=payload, headers=signature_headers)
            if not resp.is_success:
                report.add("throughput", False, f"HTTP {resp.status_code}: {resp.text[:300]}")
                return
    except httpx.HTTPError as exc:
        report.add("throughput", False, f"{type(exc).__name__}: {exc}")
        return
    elapsed = time.perf_counter() - start
    report.throughput_mb_s = round(count * len(payload) / _MIB / elapsed, 1)
    report.add(
        "throughput", True, f"{count} x {len(payload) // 1024} KiB in {elapsed:.2f} s (signed)"
    )


def _largest(
    client: httpx.Client,
    report: Report,
    party: str,
    key: signing.Ed25519PrivateKey,
    opts: DiagnoseOptions,
) -> None:
    """Double the size until the peer refuses (or the cap), then bisect to 64 KiB."""

    def passes(size: int) -> bool:
        try:
            return _sink(client, party, key, os.urandom(size)).is_success
        except httpx.HTTPError:
            return False

    good, bad = 0, None
    size = _MIB
    while size <= opts.max_probe_bytes:
        if not passes(size):
            bad = size
            break
        good, size = size, size * 2
    if bad is not None:
        while bad - good > 64 * 1024:
            mid = (good + bad) // 2
            good, bad = (mid, bad) if passes(mid) else (good, mid)
    report.largest_message_bytes = good
    if good == 0:
        report.add("largest message", False, "even 1 MiB was refused")
        return
    cap = "" if bad is not None else f" (probed up to the {opts.max_probe_bytes // _MIB} MiB cap)"
    report.add("largest message", True, f"{good / _MIB:.1f} MiB passes{cap}")


def render(report: Report) -> str:
    """The report as a readable table."""
    rows = [(c.name, "ok" if c.ok else "FAIL", c.detail) for c in report.checks]
    largest = report.largest_message_bytes
    figures: list[tuple[str, str | None]] = [
        ("peer version", report.peer_version),
        ("round trip p50", _fmt(report.rtt_ms_p50, "ms")),
        ("round trip p99", _fmt(report.rtt_ms_p99, "ms")),
        ("throughput", _fmt(report.throughput_mb_s, "MiB/s")),
        ("largest message", _fmt(None if largest is None else round(largest / _MIB, 1), "MiB")),
    ]
    width = max(len(name) for name in [*(r[0] for r in rows), *(f[0] for f in figures)])
    lines = [f"party {report.party} -> party {report.peer} at {report.url}", ""]
    lines += [f"  {name:<{width}}  {status:<4}  {detail}" for name, status, detail in rows]
    lines.append("")
    lines += [f"  {name:<{width}}  {value or '-'}" for name, value in figures]
    lines += ["", "all checks passed" if report.ok else "SOME CHECKS FAILED"]
    return "\n".join(lines)


def _fmt(value: float | None, unit: str) -> str | None:
    return None if value is None else f"{value} {unit}"
