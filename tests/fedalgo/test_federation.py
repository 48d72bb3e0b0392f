"""The in-memory federation and run_parties: wire safety, failures, deadlocks, byte counts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from phe import paillier

from fedalgo.components import registry
from fedalgo.context import Context
from fedalgo.errors import FederationTimeout
from fedalgo.federation import InMemoryFederation, run_parties
from fedcore import codec
from fedcore.codec import CodecError, IntArray
from fedcore.params import Params


@pytest.fixture
def temp_component() -> Iterator[None]:
    """Register throw-away components for these tests, and remove them afterwards."""

    class PingParams(Params):
        value: int = 0

    @registry.component("t_ping", roles=("guest", "host"), params=PingParams)
    def ping(ctx: Context) -> None:
        if ctx.role == "guest":
            ctx.send("host", "ping", ctx.params(PingParams).value)
            ctx.metric("pong", ctx.recv("host", "pong"))
        else:
            ctx.send("guest", "pong", ctx.recv("guest", "ping") + 1)

    @registry.component("t_deadlock", roles=("guest", "host"))
    def deadlock(ctx: Context) -> None:
        ctx.recv("host" if ctx.role == "guest" else "guest", "never")

    @registry.component("t_fail", roles=("guest", "host"))
    def fail(ctx: Context) -> None:
        if ctx.role == "host":
            raise RuntimeError("host broke")
        ctx.recv("host", "never")

    @registry.component("t_unsafe", roles=("guest", "host"))
    def unsafe(ctx: Context) -> None:
        if ctx.role == "guest":
            ctx.send("host", "x", ctx.args["payload"])
        else:
            ctx.recv("guest", "x")

    yield
    for name in ("t_ping", "t_deadlock", "t_fail", "t_unsafe"):
        registry._REGISTRY.pop(name)


def two(args: dict | None = None) -> dict[str, dict]:
    return {"1": {"role": "guest", "args": args or {}}, "2": {"role": "host"}}


@pytest.mark.usefixtures("temp_component")
def test_run_parties_runs_every_party_and_collects_metrics() -> None:
    result = run_parties("t_ping", two({"value": 41}))
    assert result.last("1", "pong") == 42
    assert result.federation.bytes_sent["1"] > 0 and result.federation.bytes_sent["2"] > 0


@pytest.mark.usefixtures("temp_component")
def test_a_deadlock_fails_instead_of_hanging() -> None:
    with pytest.raises(FederationTimeout):
        run_parties("t_deadlock", two(), timeout_s=1.0)


@pytest.mark.usefixtures("temp_component")
def test_the_first_real_failure_is_reraised_and_the_others_aborted() -> None:
    with pytest.raises(RuntimeError, match="host broke") as info:
        run_parties("t_fail", two(), timeout_s=30)
    assert any("party 2 (host)" in note for note in info.value.__notes__)


@pytest.mark.usefixtures("temp_component")
@pytest.mark.parametrize(
    "payload",
    [
        np.array(["a", "b"], dtype=object),
        paillier.generate_paillier_keypair(n_length=512)[0].encrypt(1),
        {1, 2},
    ],
    ids=["object-array", "phe-EncryptedNumber", "set"],
)
def test_values_that_cannot_cross_the_wire_fail_at_the_sender(payload: object) -> None:
    with pytest.raises(CodecError):
        run_parties("t_unsafe", two({"payload": payload}), timeout_s=10)


def test_big_ints_and_numeric_arrays_cross_intact() -> None:
    hub = InMemoryFederation(recv_timeout_s=5, record=True)
    value = {"c": [2**2047 + 1, -(2**100)], "a": np.arange(6, dtype=np.float64).reshape(2, 3)}
    hub.endpoint("1").send("2", "t", value)
    got = hub.endpoint("2").recv("1", "t")
    # Delivered as a step's channel delivers them: big ints still encoded until materialised
    # (Context.recv does it unless a component asks for them encoded).
    assert isinstance(got["c"], IntArray) and got["c"].ints() == value["c"]
    assert codec.materialise(got)["c"] == value["c"] and np.array_equal(got["a"], value["a"])
    assert hub.received_by("2")[0].tag == "t"


def test_unknown_component(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="unknown component"):
        run_parties("nope", two())
