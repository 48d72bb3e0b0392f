"""Context: addressing parties by role or id, argument parsing, metrics; the component registry."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from pydantic import Field

import fedalgo
from fedalgo import ArgumentError, Context, UnknownComponentError, get_component
from fedalgo.components import all_components
from fedalgo.federation import InMemoryFederation
from fedcore.params import Params

PARTIES = {"guest": ["1"], "host": ["2", "3"]}


def ctx_for(hub: InMemoryFederation, pid: str, role: str, **kw: Any) -> Context:
    return Context(
        role=role,
        party_id=pid,
        parties=PARTIES,
        args=kw.pop("args", {}),
        inputs={},
        outputs={},
        federation=hub.endpoint(pid),
        **kw,
    )


def test_send_to_role_reaches_every_party_and_recv_all_collects() -> None:
    hub = InMemoryFederation(recv_timeout_s=5)
    guest = ctx_for(hub, "1", "guest")
    hosts = [ctx_for(hub, "2", "host"), ctx_for(hub, "3", "host")]
    guest.send("host", "hello", {"x": np.arange(3)})
    for h in hosts:
        got = h.recv("guest", "hello")
        assert got["x"].tolist() == [0, 1, 2]
        h.send("guest", "reply", int(h.party_id) * 10)
    assert guest.recv_all("host", "reply") == {"2": 20, "3": 30}
    hosts[0].send("3", "direct", "hi")
    assert hosts[1].recv("2", "direct") == "hi"


def test_messages_with_one_tag_arrive_in_order_and_tags_do_not_mix() -> None:
    hub = InMemoryFederation(recv_timeout_s=5)
    guest, host = ctx_for(hub, "1", "guest"), ctx_for(hub, "2", "host")
    for i in range(3):
        guest.send("2", "a", i)
    guest.send("2", "b", "other")
    assert host.recv("guest", "b") == "other"
    assert [host.recv("1", "a") for _ in range(3)] == [0, 1, 2]


def test_recv_from_a_role_with_several_parties_is_refused() -> None:
    hub = InMemoryFederation(recv_timeout_s=1)
    guest = ctx_for(hub, "1", "guest")
    with pytest.raises(ValueError, match="recv_all"):
        guest.recv("host", "x")
    with pytest.raises(ValueError, match="neither a role nor a party"):
        guest.send("arbiter", "x", 1)


def test_context_checks_its_own_role() -> None:
    with pytest.raises(ValueError, match="not listed as a host"):
        ctx_for(InMemoryFederation(), "1", "host")


class _Args(Params):
    max_iter: int = Field(30, ge=1)
    flag: bool = False


def test_params_reads_the_declared_keys_and_leaves_the_rest() -> None:
    ctx = ctx_for(
        InMemoryFederation(), "1", "guest", args={"max-iter": "5", "flag": "yes", "input": "x.csv"}
    )
    assert ctx.params(_Args) == _Args.model_validate({"max-iter": 5, "flag": True})


def test_params_errors_name_the_argument_and_the_bound() -> None:
    ctx = ctx_for(InMemoryFederation(), "1", "guest", args={"max-iter": 0, "flag": 2})
    with pytest.raises(ArgumentError) as err:
        ctx.params(_Args)
    assert "'max-iter' should be greater than or equal to 1, got 0" in str(err.value)
    assert "'flag' should be a valid boolean" in str(err.value)


def test_input_and_output_errors_are_clear(tmp_path: Any) -> None:
    ctx = Context(
        role="guest",
        party_id="1",
        parties=PARTIES,
        args={},
        inputs={"data": tmp_path / "nope.csv"},
        outputs={"model": tmp_path / "deep" / "model"},
        federation=InMemoryFederation().endpoint("1"),
    )
    with pytest.raises(ArgumentError, match="no file at"):
        ctx.input("data")
    with pytest.raises(ArgumentError, match="'labels' was not given"):
        ctx.input("labels")
    assert ctx.output("model").parent.is_dir()


def test_metrics_are_plain_data() -> None:
    seen: list[tuple[str, Any, int | None]] = []
    ctx = ctx_for(
        InMemoryFederation(), "1", "guest", on_metric=lambda n, v, s: seen.append((n, v, s))
    )
    ctx.metric("loss", np.float64(0.5), step=3)
    ctx.metric("curve", {"x": np.array([0.0, 1.0])})
    assert seen == [("loss", 0.5, 3), ("curve", {"x": [0.0, 1.0]}, None)]
    assert type(seen[0][1]) is float


def test_registry_lists_every_component_with_its_contract() -> None:
    specs = all_components()
    assert set(specs) >= {"intersect", "scale", "hetero_lr", "evaluation"}
    lr = get_component("hetero_lr")
    assert (lr.roles, lr.inputs, lr.outputs) == (
        ("guest", "host"),
        ("data",),
        ("model", "predictions"),
    )
    assert get_component("evaluation").roles == ("guest",)
    assert get_component("scale").outputs == ("data", "model")
    assert lr.description


def test_unknown_component_error_is_a_clear_key_error() -> None:
    with pytest.raises(KeyError) as info:
        get_component("hetero_sbt")
    assert isinstance(info.value, UnknownComponentError)
    assert str(info.value).startswith("unknown component 'hetero_sbt' (known: ")


def test_registering_a_different_function_under_a_taken_name_fails() -> None:
    with pytest.raises(ValueError, match="already registered"):
        fedalgo.component("scale", roles=("guest",))(lambda ctx: None)


def test_public_exports() -> None:
    assert {"Context", "Federation", "component", "get_component", "all_components"} <= set(
        fedalgo.__all__
    )
    for name in fedalgo.__all__:
        assert hasattr(fedalgo, name)


def test_recv_blocks_until_the_value_arrives() -> None:
    hub = InMemoryFederation(recv_timeout_s=5)
    guest, host = ctx_for(hub, "1", "guest"), ctx_for(hub, "2", "host")
    timer = threading.Timer(0.2, lambda: guest.send("2", "late", 1))
    timer.start()
    assert host.recv("guest", "late") == 1
