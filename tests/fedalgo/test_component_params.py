"""Every component's parameter declaration: described, hyphenated, apart from the platform's keys;
and docs/components.md is what the declarations generate."""

from __future__ import annotations

import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from fedalgo import ArgumentError, Context, ProtocolError, docs, get_component
from fedalgo.components import all_components
from fedalgo.components.hetero_lr import HeteroLRParams, TrainingConfig
from fedalgo.components.secureboost import BoostConfig, BoostParams
from fedalgo.federation import InMemoryFederation, run_parties
from fedcore.params import PLATFORM_KEYS, describe


def test_every_parameter_has_a_description_and_a_default() -> None:
    for spec in all_components().values():
        for p in describe(spec.params):
            assert p.description, f"{spec.name}.{p.name} has no description"
            assert not p.required, f"{spec.name}.{p.name}: a job must run on defaults"
            assert "_" not in p.name, f"{spec.name}.{p.name} is not spelt with hyphens"
            assert p.name not in PLATFORM_KEYS, f"{spec.name}.{p.name} is a platform key"


def test_docs_components_md_is_current() -> None:
    committed = docs.DOC.read_text() if docs.DOC.exists() else ""
    assert committed == docs.render(), "docs/components.md is stale: run python -m fedalgo.docs"


def test_every_role_checks_its_args_before_running(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("id,x\n1,0.5\n")
    party = {"args": {}, "inputs": {"data": data}, "outputs": {"data": tmp_path / "out.csv"}}
    with pytest.raises(ArgumentError, match="'shuffle' should be a valid boolean") as info:
        run_parties(
            "intersect",
            {
                "10000": {**party, "role": "guest"},
                # the host does not use shuffle, but a peer's bad value is refused all the same
                "20000": {**party, "role": "host", "args": {"shuffle": "maybe"}},
            },
            timeout_s=30,
        )
    assert "raised by party 20000 (host) in intersect" in info.value.__notes__
    assert not (tmp_path / "out.csv").exists()


def _host_against(tmp_path: Path, component: str, setup_tag: str, setup: dict[str, Any]) -> Any:
    """Run ``component``'s host side against a guest that sends ``setup``; what the host raised."""
    data = tmp_path / "host.csv"
    data.write_text("id,a\n1,0.5\n2,0.1\n3,0.9\n")
    hub = InMemoryFederation(recv_timeout_s=30)
    ctx = Context(
        role="host",
        party_id="20000",
        parties={"guest": ["10000"], "host": ["20000"]},
        args={},
        inputs={"data": data},
        outputs={"model": tmp_path / "model", "predictions": tmp_path / "predictions"},
        federation=hub.endpoint("20000"),
    )
    raised: list[BaseException] = []

    def host() -> None:
        try:
            get_component(component).run(ctx)
        except BaseException as exc:  # handed to the test below
            raised.append(exc)

    thread = threading.Thread(target=host)
    thread.start()
    guest = hub.endpoint("10000")
    guest.recv("20000", setup_tag.replace("setup", "host_info"))
    guest.send("20000", setup_tag, setup)
    thread.join(30)
    assert raised, "the host accepted the setup"
    return raised[0]


def test_a_host_checks_the_guests_lr_setup_against_the_declaration(tmp_path: Path) -> None:
    setup = asdict(TrainingConfig.from_params(HeteroLRParams())) | {"batch_size": 0}
    raised = _host_against(tmp_path, "hetero_lr", "hetero_lr/setup", setup)
    assert isinstance(raised, ProtocolError)
    assert "bad training setup from the guest: 'batch-size' must be -1 or >= 1" in str(raised)


def test_a_host_checks_the_guests_boosting_setup_against_the_declaration(tmp_path: Path) -> None:
    setup = asdict(BoostConfig.from_params(BoostParams())) | {"max_depth": 99}
    raised = _host_against(tmp_path, "hetero_secureboost", "secureboost/setup", setup)
    assert isinstance(raised, ProtocolError)
    assert "'max-depth' should be less than or equal to 16, got 99" in str(raised)
