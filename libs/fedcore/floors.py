"""A party's security floors: the limits its own settings put on every step run on its data.

Floors are party-level, on top of each component's parameter bounds. A peer's proposal cannot
lower them: the flow_server checks a proposal against them before it accepts (``flow_server.
floors``), and the component checks them again on this party's side with the floors its
task_engine read from the party's own settings (``fedalgo.floors``). A refusal names the floor
(:data:`FLOOR_NAMES`), which is the party's policy, not its data, so it may be told to peers.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict, Field

# floor name (as in refusals and error codes) → the settings variable that sets it
FLOOR_VARIABLES: Final = {
    "min-key-bits": "FLOOR_MIN_KEY_BITS",
    "min-batch-rows": "FLOOR_MIN_BATCH_ROWS",
    "max-bins": "FLOOR_MAX_BINS",
    "guest-data": "(grants: tessera grant add --as guest)",
    "runtime-image": "STEP_IMAGES",
}
FLOOR_NAMES: Final = frozenset(FLOOR_VARIABLES)


class SecurityFloors(BaseModel):
    """The limits; the defaults are the secure ones (a party may only raise or tighten them)."""

    model_config = ConfigDict(frozen=True)

    # every Paillier key made or used on this party's data (hetero_lr, binning, secureboost)
    min_key_bits: int = Field(default=2048, ge=1024)
    # rows in every hetero_lr mini-batch while this party holds the labels: the host decrypts
    # X_h[B]^T d per batch, so a batch of one row hands it that row's residual (its label)
    min_batch_rows: int = Field(default=64, ge=1)
    # bins per column of this party's binning and hetero_secureboost: a bin per row would tell
    # the guest the order of this party's values
    max_bins: int = Field(default=64, ge=2)


# No party policy: what a component run outside a party (tests, benchmarks) is held to. A party's
# steps always get its own floors (``PartySettings.floors``, secure by default).
NO_FLOORS: Final = SecurityFloors(min_key_bits=1024, min_batch_rows=1, max_bins=1_000_000)


class FloorRefusal(ValueError):
    """A step or a proposal crosses a floor: ``floor`` is one of :data:`FLOOR_NAMES`."""

    def __init__(self, floor: str, message: str) -> None:
        if floor not in FLOOR_NAMES:
            raise ValueError(f"unknown floor {floor!r}")
        super().__init__(f"floor {floor}: {message}")
        self.floor = floor


def check_key_bits(floors: SecurityFloors, bits: int) -> None:
    if bits < floors.min_key_bits:
        raise FloorRefusal(
            "min-key-bits",
            f"a {bits}-bit Paillier key is below this party's minimum of {floors.min_key_bits}",
        )


def check_batch_rows(floors: SecurityFloors, rows: int) -> None:
    if rows < floors.min_batch_rows:
        raise FloorRefusal(
            "min-batch-rows",
            f"a mini-batch of {rows} row(s) is below this party's minimum of "
            f"{floors.min_batch_rows} rows per batch while it holds the labels",
        )


def check_bins(floors: SecurityFloors, bins: int) -> None:
    if bins > floors.max_bins:
        raise FloorRefusal(
            "max-bins", f"{bins} bins per column exceed this party's maximum of {floors.max_bins}"
        )
