"""The bridge's own tuning knobs, read like PartySettings (env file overlaid by the environment).

Every knob has a safe default; none is needed to run a party. Units are in the names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Self

from pydantic import BaseModel, Field

from fedcore.settings import SettingsError, environment

_PREFIX = "BRIDGE_"


class BridgeOptions(BaseModel):
    """Batch sizes, buffering, retry and de-duplication limits (env ``BRIDGE_<FIELD>``)."""

    # one POST carries at most this many records / about this many value bytes (at least 1 record)
    batch_max_records: int = Field(default=500, ge=1)
    batch_max_bytes: int = Field(default=4_000_000, ge=1)
    # per peer, records read from Kafka but not yet delivered; when full, reading pauses
    buffer_max_records: int = Field(default=2_000, ge=1)
    buffer_max_bytes: int = Field(default=32_000_000, ge=1)
    retry_initial_s: float = Field(default=0.2, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)
    http_timeout_s: float = Field(default=30.0, gt=0)
    # how long a record id is remembered by the receiver; older batches are refused
    dedup_retention_s: float = Field(default=7 * 24 * 3600.0, gt=0)
    max_body_bytes: int = Field(default=64_000_000, ge=1)
    shutdown_grace_s: float = Field(default=5.0, ge=0)

    @classmethod
    def from_env(
        cls, env_file: str | Path | None = None, environ: Mapping[str, str] | None = None
    ) -> Self:
        env = environment(env_file, environ)
        fields = {
            name: env[key]
            for name in cls.model_fields
            if (key := _PREFIX + name.upper()) in env and env[key]
        }
        try:
            return cls.model_validate(fields)
        except ValueError as exc:
            raise SettingsError(str(exc)) from exc
