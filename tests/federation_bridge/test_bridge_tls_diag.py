"""TLS (and mTLS) on the bridge's listener, ``tessera diagnose`` and ``/metrics``, on real
bridge processes and the real brokers."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from bridge_procs import (
    A,
    B,
    BridgeProcess,
    Tail,
    fed,
    free_port,
    has_id,
    keygen,
    stopped_after,
)
from typer.testing import CliRunner

from fedcore import topics
from fedcore.bus import Bus
from federation_bridge import diag, signing
from federation_bridge.wire import PATH
from tessera.cli import app as cli
from tessera.diagnose import DiagnoseOptions, diagnose
from tls_material import Pki, make_pki

pytestmark = pytest.mark.kafka

_MIB = 1024 * 1024


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return keygen(tmp_path_factory.mktemp("keys"), A, B)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _context(pki: Pki, cert: tuple[Path, Path] | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


@pytest.fixture(scope="module")
def tls_bridges(
    kafka_pair: Any, keys: Path, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[BridgeProcess, BridgeProcess]]:
    """Two bridges on HTTPS that require client certificates (mTLS) from the test CA.

    The peer's CA comes per peer (PARTY_MQ_CA_<id>); the body limit is 8 MiB for diagnose.
    """
    broker_a, broker_b = kafka_pair
    root = tmp_path_factory.mktemp("tls-bridges")
    port_a, port_b = free_port(), free_port()
    procs = []
    for party, bootstrap, port, peer, peer_port in (
        (A, broker_a.bootstrap, port_a, B, port_b),
        (B, broker_b.bootstrap, port_b, A, port_a),
    ):
        cert, key = pki.issue(f"bridge-{party}")
        extra = {
            "BRIDGE_TLS_CERT": str(cert),
            "BRIDGE_TLS_KEY": str(key),
            "BRIDGE_TLS_CA": str(pki.ca),
            "BRIDGE_TLS_REQUIRE_CLIENT_CERT": "true",
            "BRIDGE_TLS_CLIENT_CERT": str(cert),
            "BRIDGE_TLS_CLIENT_KEY": str(key),
            f"PARTY_MQ_CA_{peer}": str(pki.ca),
            "BRIDGE_MAX_BODY_BYTES": str(8 * _MIB),
        }
        verify = _context(pki, (cert, key))
        procs.append(
            BridgeProcess(
                root,
                party,
                bootstrap,
                port,
                {peer: peer_port},
                keys,
                extra,
                scheme="https",
                verify=verify,
            )
        )
    a, b = procs
    with stopped_after(a, b):
        b.start()
        a.start()
        yield a, b


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bus_a(kafka_pair: Any) -> AsyncIterator[Bus]:
    async with Bus(kafka_pair[0].bootstrap, client_id="test-tls-a") as bus:
        yield bus


async def test_a_record_crosses_over_mutual_tls(
    tls_bridges: Any, bus_a: Bus, kafka_pair: Any
) -> None:
    env = fed(A, B, value=[1, 2])
    async with Tail(kafka_pair[1].bootstrap, topics.IN_FED) as tail:
        await bus_a.publish(topics.OUT_FED, env)
        got = await tail.collect(has_id(env.id), count=1)
    assert [r.value for r in got] == [env.to_bytes()]
    assert (await tls_bridges[0].health())["tls"] is True


def test_plain_http_and_clients_without_a_certificate_are_refused(
    tls_bridges: Any, pki: Pki
) -> None:
    _, b = tls_bridges
    with pytest.raises(httpx.TransportError):
        httpx.post(b.url.replace("https://", "http://") + PATH, timeout=5)
    # the server's certificate checks out, but the client presents none: the handshake fails
    with pytest.raises(httpx.TransportError):
        httpx.post(b.url + PATH, timeout=5, verify=_context(pki, None))
    # a certificate from another CA is refused too
    other = make_pki(pki.root / "other", "other-ca")
    with pytest.raises(httpx.TransportError):
        httpx.post(b.url + PATH, timeout=5, verify=_context(pki, other.issue("intruder")))


async def test_diagnose_over_mtls_reports_every_figure(tls_bridges: Any) -> None:
    a, _ = tls_bridges
    opts = DiagnoseOptions(
        pings=10, throughput_bytes=8 * _MIB, payload_bytes=_MIB, max_probe_bytes=32 * _MIB
    )
    report = await asyncio.to_thread(diagnose, B, a.env_file, opts)
    assert report.ok, report
    assert [c.name for c in report.checks] == [
        "reachable",
        "signed ping",
        "throughput",
        "largest message",
    ]
    assert report.peer_version == diag.bridge_version()
    assert report.rtt_ms_p50 is not None and 0 < report.rtt_ms_p50 < 1000
    assert report.throughput_mb_s is not None and report.throughput_mb_s > 0
    # the peer's limit is 8 MiB of body: the probe finds it to within 64 KiB
    assert report.largest_message_bytes is not None
    assert 8 * _MIB - 64 * 1024 <= report.largest_message_bytes <= 8 * _MIB


def test_the_cli_prints_json_and_a_table(tls_bridges: Any) -> None:
    a, _ = tls_bridges
    args = ["diagnose", B, "--env-file", str(a.env_file), "--pings", "3"]
    small = ["--throughput-mb", "2", "--max-probe-mb", "2"]
    result = CliRunner().invoke(cli, [*args, *small, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] is True and data["peer"] == B and data["party"] == A
    table = CliRunner().invoke(cli, [*args, *small])
    assert table.exit_code == 0, table.output
    assert "signed ping" in table.output and "all checks passed" in table.output


def test_diagnose_fails_when_the_peer_answers_with_another_key(
    tls_bridges: Any, tmp_path: Path
) -> None:
    a, _ = tls_bridges
    signing.generate_keypair(tmp_path / "stranger")
    env_file = tmp_path / "party-a.env"
    env_file.write_text(
        a.env_file.read_text() + f"PARTY_PUBLIC_KEY_{B}={tmp_path / 'stranger' / 'public.pem'}\n"
    )
    result = CliRunner().invoke(cli, ["diagnose", B, "--env-file", str(env_file), "--json"])
    assert result.exit_code == 1, result.output
    checks = {c["name"]: c for c in json.loads(result.output)["checks"]}
    assert checks["signed ping"]["ok"] is False
    assert "does not verify" in checks["signed ping"]["detail"]


def test_diagnose_of_a_peer_that_is_down_says_unreachable(tls_bridges: Any, tmp_path: Path) -> None:
    a, _ = tls_bridges
    env_file = tmp_path / "party-a.env"
    env_file.write_text(
        a.env_file.read_text() + f"PARTY_MQ_HTTP_URL_{B}=https://127.0.0.1:{free_port()}\n"
    )
    result = CliRunner().invoke(cli, ["diagnose", B, "--env-file", str(env_file), "--json"])
    assert result.exit_code == 1
    [check] = json.loads(result.output)["checks"]
    assert check["name"] == "reachable" and check["ok"] is False


async def test_a_forged_ping_is_refused_and_counted(tls_bridges: Any, keys: Path) -> None:
    _, b = tls_bridges
    before = (await b.metrics()).get('tessera_bridge_rejected_batches_total{reason="bad_ping"}', 0)
    # signed by 10000 but addressed to another party
    _, body, headers = diag.make_ping(
        A, "21000", signing.load_private_key(keys / A / "private.pem")
    )
    async with httpx.AsyncClient(verify=b.verify, timeout=5) as client:
        resp = await client.post(b.url + diag.PING_PATH, content=body, headers=headers)
    assert (resp.status_code, resp.json()["error"]) == (403, "bad_ping")
    after = (await b.metrics())['tessera_bridge_rejected_batches_total{reason="bad_ping"}']
    assert after == before + 1


async def test_metrics_count_records_both_ways(
    tls_bridges: Any, bus_a: Bus, kafka_pair: Any
) -> None:
    a, b = tls_bridges
    sent_before = (await a.metrics()).get(f'tessera_bridge_records_sent_total{{peer="{B}"}}', 0)
    envs = [fed(A, B, i=i) for i in range(5)]
    ids = {e.id.encode() for e in envs}
    async with Tail(kafka_pair[1].bootstrap, topics.IN_FED) as tail:
        for env in envs:
            await bus_a.publish(topics.OUT_FED, env)
        got = await tail.collect(lambda r: dict(r.headers or ()).get("id") in ids, count=5)
    assert len(got) == 5
    ma, mb = await a.metrics(), await b.metrics()
    assert ma[f'tessera_bridge_records_sent_total{{peer="{B}"}}'] >= sent_before + 5
    assert ma[f'tessera_bridge_bytes_sent_total{{peer="{B}"}}'] > 0
    assert ma[f'tessera_bridge_delivery_seconds_count{{peer="{B}"}}'] >= 5
    assert ma[f'tessera_bridge_pending_records{{peer="{B}"}}'] == 0
    assert ma[f'tessera_bridge_outbound_lag_records{{topic="{topics.OUT_FED}"}}'] == 0
    assert mb[f'tessera_bridge_records_received_total{{peer="{A}"}}'] >= 5
