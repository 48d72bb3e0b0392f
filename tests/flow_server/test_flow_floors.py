"""flow_server.floors and flow_server.placement: a party's own limits and output root against a
job, as pure checks (the protocol and end-to-end tests drive them through proposals)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from fedcore.floors import SecurityFloors
from flow_server import floors, placement
from flow_server.catalog import component_catalog
from flow_server.dsl import DslError, JobSpec, parse_pipeline
from flow_server.grant_lookup import NoGrants

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
SESSION = Session()  # the lookups below never touch it
CATALOG = component_catalog()


class Grants:
    """A party that granted ``PEER`` outputs under ``prefix`` and ``guest`` data at ``data``."""

    def __init__(self, prefix: str = "", data: str = "") -> None:
        self.prefix, self.data = prefix, data

    def output_prefix_granted(self, session: Session, peer: str, path: str) -> bool:
        return peer == PEER and bool(self.prefix) and path.startswith(self.prefix)

    def guest_data_granted(self, session: Session, peer: str, path: str) -> bool:
        return peer == PEER and path == self.data


def check(
    roles: dict[str, str],
    common: dict[str, object],
    *,
    initiator: str = PEER,
    grants: Grants | NoGrants | None = None,
    images: tuple[str, ...] = (),
    party_floors: SecurityFloors | None = None,
    pipeline: str = LR,
) -> None:
    spec = JobSpec(roles, common, {ME: {"input": "/data/mine.csv"}})
    floors.check_job(
        SESSION,
        spec,
        parse_pipeline(pipeline, CATALOG),
        me=ME,
        initiator=initiator,
        party_floors=party_floors or SecurityFloors(),
        images=images,
        grants=grants or NoGrants(),
    )


def test_the_role_flip_with_one_row_batches_names_both_floors() -> None:
    with pytest.raises(DslError) as refused:
        check({PEER: "host", ME: "guest"}, {"batch-size": 1})
    assert refused.value.code == "security_floor"
    text = str(refused.value)
    assert "floor min-batch-rows: a mini-batch of 1 row(s) is below this party's minimum of 64" in (
        text
    )
    assert f"floor guest-data: input 'data' ($input) is not granted to {PEER}" in text
    assert "/data/mine.csv" not in text, "said the same whether the file exists or not"


def test_guest_data_granted_to_the_initiator_passes_and_full_batches_are_fine() -> None:
    check({PEER: "host", ME: "guest"}, {"batch-size": -1}, grants=Grants(data="/data/mine.csv"))
    check({PEER: "host", ME: "guest"}, {"batch-size": 64}, grants=Grants(data="/data/mine.csv"))


def test_a_host_is_not_held_to_the_batch_floor_and_its_own_data_needs_no_grant() -> None:
    check({PEER: "guest", ME: "host"}, {"batch-size": 1})  # the labels are not this party's
    check({ME: "guest", PEER: "host"}, {"batch-size": 64}, initiator=ME)  # its own job


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


def choose(requested: str | None, tmp_path: Path, **kw: object) -> placement.OutputPlacement:
    args: dict[str, object] = {
        "me": ME,
        "initiator": PEER,
        "requested": requested,
        "default_root": tmp_path / "state" / "output",
        "state_dir": tmp_path / "state",
        "grants": NoGrants(),
        **kw,
    }
    return placement.choose(SESSION, **args)  # type: ignore[arg-type]


def test_a_peers_output_is_honoured_only_under_a_granted_prefix(tmp_path: Path) -> None:
    default = str(tmp_path / "state" / "output")
    elsewhere = str(tmp_path / "shared" / "out")
    assert choose(None, tmp_path).root == default
    refused = choose(elsewhere, tmp_path)
    assert (refused.root, refused.chosen_by, refused.requested) == (default, "settings", elsewhere)
    assert f"not under a prefix this party granted to {PEER} for outputs" in refused.reason
    granted = choose(elsewhere, tmp_path, grants=Grants(prefix=str(tmp_path / "shared")))
    assert (granted.root, granted.chosen_by) == (elsewhere, "grant")
    # a granted prefix does not reach into the state dir, nor does a relative path or '..'
    wide = Grants(prefix="/")
    for path in (str(tmp_path / "state" / "db"), "out", f"{tmp_path}/shared/../state/x"):
        assert choose(path, tmp_path, grants=wide).chosen_by == "settings", path
    # the party's own job.yaml is its operator's choice
    own = choose(elsewhere, tmp_path, initiator=ME)
    assert (own.root, own.chosen_by) == (elsewhere, "job.yaml")


def test_a_symlink_under_a_granted_prefix_is_followed_before_the_check(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "state").mkdir()
    (tmp_path / "shared" / "link").symlink_to(tmp_path / "state")
    chosen = choose(
        str(tmp_path / "shared" / "link"), tmp_path, grants=Grants(prefix=str(tmp_path / "shared"))
    )
    assert chosen.chosen_by == "settings"
