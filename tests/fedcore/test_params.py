"""Parameter declarations: hyphenated keys, strict values, errors that name the key and the bound,
and the description the API, the CLI and docs/components.md show."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import Field

from fedcore.params import PLATFORM_KEYS, InvalidArguments, Params, describe


class Demo(Params):
    max_iter: int = Field(30, ge=1, le=100, description="epochs")
    rate: float = Field(0.1, gt=0, description="step")
    mode: Literal["a", "b"] = Field("a", description="which")
    seed: int | None = Field(None, description="optional")
    flag: bool = Field(True, description="on or off")


def test_keys_are_hyphenated_and_other_keys_are_left_alone() -> None:
    assert Demo.keys() == ("max-iter", "rate", "mode", "seed", "flag")
    got = Demo.from_args({"max-iter": "7", "rate": 1, "flag": "no", "input": "x", "seed": None})
    assert (got.max_iter, got.rate, got.flag, got.seed) == (7, 1.0, False, None)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ({"max-iter": 0}, "'max-iter' should be greater than or equal to 1, got 0"),
        ({"max-iter": 101}, "'max-iter' should be less than or equal to 100"),
        ({"max-iter": 2.5}, "'max-iter' should be a valid integer"),
        ({"max-iter": True}, "'max-iter' should not be true or false"),
        ({"rate": "nan"}, "'rate' should be a finite number"),
        ({"rate": 0}, "'rate' should be greater than 0"),
        ({"mode": "c"}, "'mode' should be 'a' or 'b', got 'c'"),
        ({"flag": 2}, "'flag' should be a valid boolean"),
    ],
)
def test_bad_values_name_the_key_and_the_bound(args: dict[str, object], says: str) -> None:
    with pytest.raises(InvalidArguments) as info:
        Demo.from_args(args)
    assert info.value.problems[0].key == next(iter(args))
    assert says in str(info.value)


def test_describe_gives_type_default_bounds_and_description() -> None:
    info = {p.name: p for p in describe(Demo)}
    assert list(info) == ["max-iter", "rate", "mode", "seed", "flag"]
    assert (info["max-iter"].type, info["max-iter"].default) == ("integer", 30)
    assert info["max-iter"].bounds() == ">= 1, <= 100"
    assert info["rate"].bounds() == "> 0"
    assert (info["mode"].type, info["mode"].bounds()) == ("string", "one of a, b")
    assert (info["seed"].type, info["seed"].nullable, info["seed"].default) == (
        "integer",
        True,
        None,
    )
    assert info["flag"].bounds() == "" and info["flag"].description == "on or off"


def test_the_platform_keys_are_the_job_yaml_spellings() -> None:
    assert {"input", "output", "auto-retries", "timeout", "task-timeout", "runtime-image"} <= (
        PLATFORM_KEYS
    )
    assert {"spark-master-name", "spark-submit-args", "hadoop-config"} <= PLATFORM_KEYS
