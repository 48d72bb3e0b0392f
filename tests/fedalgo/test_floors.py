"""A party's security floors inside the components: each party checks the values it really uses
against its own floors (given to its Context, never sent by a peer) and refuses naming the floor;
every failure maps to the error code the other parties are told."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fedalgo_helpers import GUEST, HOST, party

from fedalgo.errors import ArgumentError, DataError, FederationTimeout, ProtocolError, failure_code
from fedalgo.federation import run_parties
from fedalgo.logistic import batches, smallest_batch
from fedcore import failures
from fedcore.floors import FloorRefusal, SecurityFloors

Subset = Callable[[Path, int], Path]
OUTPUTS = ("model", "predictions")


def run(
    component: str,
    tmp_path: Path,
    guest: tuple[Path, dict[str, Any], SecurityFloors],
    host: tuple[Path, dict[str, Any], SecurityFloors],
    outputs: tuple[str, ...] = OUTPUTS,
) -> None:
    specs = {}
    for pid, role, (data, args, floors) in ((GUEST, "guest", guest), (HOST, "host", host)):
        specs[pid] = {**party(role, tmp_path / pid, outputs, args, data=data), "floors": floors}
    run_parties(component, specs, timeout_s=120)


@pytest.fixture
def breast(fl_data: Path, subset: Subset) -> tuple[Path, Path]:
    return (
        subset(fl_data / "breast_hetero_guest.csv", 100),
        subset(fl_data / "breast_hetero_host.csv", 100),
    )


def test_the_label_holder_refuses_one_row_batches_naming_its_floor(
    tmp_path: Path, breast: tuple[Path, Path]
) -> None:
    guest, host = breast
    floors = SecurityFloors(min_key_bits=1024, min_batch_rows=32)
    args = {"key-bits": 1024, "batch-size": 1, "max-iter": 1}
    with pytest.raises(FloorRefusal, match="floor min-batch-rows: a mini-batch of 1 row") as exc:
        run("hetero_lr", tmp_path, (guest, args, floors), (host, {}, floors))
    assert failure_code(exc.value) == "floor.min-batch-rows"
    # the short last batch counts too: 100 rows in batches of 40 leave 20
    assert smallest_batch(100, 40) == 20 == min(len(b) for b in batches(100, 40, seed=1, epoch=0))
    with pytest.raises(FloorRefusal, match="a mini-batch of 20 row"):
        run(
            "hetero_lr",
            tmp_path,
            (guest, {**args, "batch-size": 40}, floors),
            (host, {}, floors),
        )


def test_the_host_refuses_a_key_below_its_floor_whatever_the_guest_allows(
    tmp_path: Path, breast: tuple[Path, Path]
) -> None:
    guest, host = breast
    lax = SecurityFloors(min_key_bits=1024, min_batch_rows=1)
    args = {"key-bits": 1024, "max-iter": 1}
    with pytest.raises(FloorRefusal, match="floor min-key-bits: a 1024-bit") as exc:
        run("hetero_lr", tmp_path, (guest, args, lax), (host, {}, SecurityFloors()))
    assert "raised by party 20000 (host)" in "".join(exc.value.__notes__)


def test_a_party_refuses_more_bins_than_its_floor(
    tmp_path: Path, breast: tuple[Path, Path]
) -> None:
    guest, host = breast
    lax = SecurityFloors(min_key_bits=1024, max_bins=100)
    tight = SecurityFloors(min_key_bits=1024, max_bins=8)
    with pytest.raises(FloorRefusal, match="floor max-bins: 20 bins per column exceed") as exc:
        run(
            "binning",
            tmp_path,
            (guest, {"key-bits": 1024, "bins": 8}, lax),
            (host, {"bins": 20}, tight),
            outputs=("model",),
        )
    assert "raised by party 20000 (host)" in "".join(exc.value.__notes__)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ArgumentError("argument 'bins' must be >= 2"), failures.BAD_ARGUMENTS),
        (DataError("no column 'income' in /srv/host.csv"), failures.BAD_DATA),
        (ProtocolError("bad shape"), failures.PEER_PROTOCOL),
        (FederationTimeout("no answer"), failures.FEDERATION),
        (PermissionError(13, "denied", "/etc/passwd"), failures.INPUT_UNREADABLE),
        (MemoryError(), failures.OUT_OF_MEMORY),
        (ZeroDivisionError("division by zero"), failures.STEP_ERROR),
    ],
)
def test_every_failure_has_a_code_and_its_public_reason_says_nothing_else(
    exc: BaseException, code: str
) -> None:
    assert failure_code(exc) == code
    public = failures.public_reason(code)
    assert public.startswith(f"{code}: ") and "/" not in public and "income" not in public


def test_an_unknown_code_reads_as_a_plain_failure() -> None:
    assert failures.known("'/etc/passwd' exists") == failures.STEP_FAILED
    assert failures.public_reason(None) == "step_failed: the step failed"
    assert failures.public_reason("floor.max-bins") == (
        "floor.max-bins: refused by the party's security floor max-bins"
    )
