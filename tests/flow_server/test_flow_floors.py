"""flow_server.floors and flow_server.placement: a party's own limits against a job (pure checks),
and where its outputs go by its output grants (on SQLite and PostgreSQL). The protocol, grants
and end-to-end tests drive both through proposals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flow_helpers import Databases, LocalParty

from fedcore.floors import SecurityFloors
from flow_server import floors, placement
from flow_server.catalog import component_catalog
from flow_server.dsl import DslError, JobSpec, parse_pipeline

ME, PEER = "20000", "10000"
LR = """\
name: lr
steps:
  - name: intersect
    component: intersect
    inputs: {data: $input}
  - name: train
    component: hetero_lr
    inputs: {data: intersect.data}
    args: {key-bits: 2048}
"""
CATALOG = component_catalog()


def check(
    roles: dict[str, str],
    common: dict[str, object],
    *,
    images: tuple[str, ...] = (),
    party_floors: SecurityFloors | None = None,
    pipeline: str = LR,
) -> None:
    spec = JobSpec(roles, common, {ME: {"input": "/data/mine.csv"}})
    floors.check_job(
        spec,
        parse_pipeline(pipeline, CATALOG),
        me=ME,
        party_floors=party_floors or SecurityFloors(),
        images=images,
    )


def test_the_role_flip_with_one_row_batches_names_the_floor() -> None:
    with pytest.raises(DslError) as refused:
        check({PEER: "host", ME: "guest"}, {"batch-size": 1})
    assert refused.value.code == "security_floor"
    text = str(refused.value)
    assert "floor min-batch-rows: a mini-batch of 1 row(s) is below this party's minimum of 64" in (
        text
    )
    assert "/data/mine.csv" not in text, "said the same whether the file exists or not"


def test_full_batches_pass_and_a_host_is_not_held_to_the_batch_floor() -> None:
    check({PEER: "host", ME: "guest"}, {"batch-size": -1})
    check({PEER: "host", ME: "guest"}, {"batch-size": 64})
    check({PEER: "guest", ME: "host"}, {"batch-size": 1})  # the labels are not this party's


def test_key_bits_bins_and_images_below_or_beyond_the_floors() -> None:
    with pytest.raises(DslError, match="floor min-key-bits: a 1024-bit Paillier key"):
        check({PEER: "guest", ME: "host"}, {"key-bits": 1024})
    binning = LR.replace("hetero_lr", "binning").replace("key-bits: 2048", "bins: 500")
    with pytest.raises(DslError, match=r"floor max-bins: 500 bins per column exceed .* 64"):
        check({PEER: "guest", ME: "host"}, {}, pipeline=binning)
    check(
        {PEER: "guest", ME: "host"}, {}, pipeline=binning, party_floors=SecurityFloors(max_bins=500)
    )
    images = ("tessera/runtime:0.1.0",)
    with pytest.raises(DslError, match="floor runtime-image: runtime-image 'evil:1' is not one"):
        check({PEER: "guest", ME: "host"}, {"runtime-image": "evil:1"}, images=images)
    check({PEER: "guest", ME: "host"}, {"runtime-image": "tessera/runtime:0.1.0"}, images=images)
    # a party that runs no images (the sandbox) has nothing to choose from: the arg is unused
    check({PEER: "guest", ME: "host"}, {"runtime-image": "evil:1"})


@pytest.fixture
def party(databases: Databases, tmp_path: Path) -> Iterator[LocalParty]:
    local = LocalParty(ME, {PEER}, databases.new("floors"), tmp_path / "state" / "output")
    yield local
    local.close()


def choose(
    party: LocalParty, requested: str | None, tmp_path: Path, initiator: str = PEER
) -> placement.OutputPlacement:
    with party.sessions() as session:
        return placement.choose(
            session,
            me=ME,
            initiator=initiator,
            requested=requested,
            default_root=tmp_path / "state" / "output",
            state_dir=tmp_path / "state",
        )


def test_a_peers_output_is_honoured_only_under_a_granted_prefix(
    party: LocalParty, tmp_path: Path
) -> None:
    default = str(tmp_path / "state" / "output")
    elsewhere = str(tmp_path / "shared" / "out")
    assert choose(party, None, tmp_path).root == default
    refused = choose(party, elsewhere, tmp_path)
    assert (refused.root, refused.chosen_by, refused.requested) == (default, "settings", elsewhere)
    assert f"not under a prefix this party granted to {PEER} for outputs" in refused.reason
    party.grant(PEER, kind="output", path=str(tmp_path / "shared"))
    granted = choose(party, elsewhere, tmp_path)
    assert (granted.root, granted.chosen_by) == (elsewhere, "grant")
    # an input grant or a grant to another peer is no output grant
    party.grant("30000", kind="output", path=str(tmp_path / "other"))
    party.grant(PEER, path=str(tmp_path / "inputs"), role="host")
    for path in (str(tmp_path / "other" / "x"), str(tmp_path / "inputs" / "x")):
        assert choose(party, path, tmp_path).chosen_by == "settings", path
    # the party's own job.yaml is its operator's choice
    own = choose(party, str(tmp_path / "mine"), tmp_path, initiator=ME)
    assert (own.root, own.chosen_by) == (str(tmp_path / "mine"), "job.yaml")


def test_a_granted_prefix_never_reaches_the_state_dir(party: LocalParty, tmp_path: Path) -> None:
    party.grant(PEER, kind="output", path=str(tmp_path))  # wider than it should be
    for path in (str(tmp_path / "state" / "db"), "out", f"{tmp_path}/shared/../state/x"):
        assert choose(party, path, tmp_path).chosen_by == "settings", path
    (tmp_path / "shared").mkdir()
    (tmp_path / "state").mkdir()
    (tmp_path / "shared" / "link").symlink_to(tmp_path / "state")
    assert choose(party, str(tmp_path / "shared" / "link"), tmp_path).chosen_by == "settings"
