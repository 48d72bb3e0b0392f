"""Step arguments: the typed parameters each component declares, and the platform's own keys.

A component declares its parameters as a :class:`Params` model: each field's type, default,
bounds (``ge``/``le``/``gt``, or a ``Literal`` of choices) and a one-line ``description``. Jobs
spell a field with hyphens (``learning_rate`` is ``learning-rate`` in job.yaml). The flow_server
refuses unknown or out-of-range arguments when a job is submitted or proposed, and the step
process reads its arguments through the same model, so a peer's proposal is checked on both
sides by one declaration. :class:`PlatformArgs` declares, once, the keys that the platform reads
itself (paths, retries, timeouts, the step image) and that every step may therefore be given.

This module is light (pydantic only) so the flow_server can validate without importing the
algorithms.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError


def hyphenate(name: str) -> str:
    """A field's job.yaml spelling: ``learning_rate`` → ``learning-rate``."""
    return name.replace("_", "-")


@dataclass(frozen=True)
class Problem:
    """One argument that a parameter model refuses: its key and what is wrong with it."""

    key: str
    message: str


class InvalidArguments(ValueError):
    """Arguments a parameter model refuses; ``problems`` names each key."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


class Params(BaseModel):
    """Base of every parameter declaration: immutable, finite numbers, hyphenated keys."""

    model_config = ConfigDict(
        alias_generator=hyphenate,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        validate_default=True,
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic reads true as 1, but "max-iter: true" is a mistake, not one epoch.
        field = cls.model_fields[info.field_name] if info.field_name else None
        if isinstance(value, bool) and field is not None and field.annotation is not bool:
            raise PydanticCustomError("bool_not_allowed", "should not be true or false")
        return value

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The job.yaml keys this model declares."""
        return tuple(f.alias or hyphenate(n) for n, f in cls.model_fields.items())

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> Self:
        """The declared keys of ``args``, validated; other keys are not this model's business.

        A step's merged arguments also carry the platform's keys and parameters of other steps
        (``common-args`` reach every step), so only the declared keys are read here; the
        flow_server, which knows the whole pipeline, refuses keys that no step declares. A key
        given as null counts as absent (YAML ``key:`` with no value).
        """
        declared = set(cls.keys())
        picked = {k: v for k, v in args.items() if k in declared and v is not None}
        try:
            return cls.model_validate(picked)
        except ValidationError as exc:
            raise InvalidArguments([_problem(err) for err in exc.errors()]) from None


def _problem(err: Any) -> Problem:
    key = ".".join(str(part) for part in err["loc"]) or "?"
    rule = str(err["msg"])
    for prefix in ("Input ", "Value error, "):
        rule = rule.removeprefix(prefix)
    return Problem(key, f"'{key}' {rule}, got {err.get('input')!r}")


class PlatformArgs(Params):
    """Keys the platform reads for every step, whatever its component."""

    input: str | None = Field(
        None,
        description="this party's input: a path or table:NAME (what a step's $input reads)",
    )
    output: str | None = Field(
        None, description="where this party writes the job's outputs (its default otherwise)"
    )
    auto_retries: int = Field(
        0, ge=0, le=10, description="run a failed step again up to this many times"
    )
    timeout: float | None = Field(
        None, gt=0, description="this step's wall-clock limit in seconds (at most the worker's)"
    )
    task_timeout: float | None = Field(
        None, gt=0, description="every step's wall-clock limit in seconds, unless it sets timeout"
    )
    runtime_image: str | None = Field(
        None, description="the container image of the step on Kubernetes"
    )
    spark_master_name: str | None = Field(
        None, description="kept from PowerFL's job.yaml for Spark-backed steps"
    )
    spark_submit_args: str | None = Field(
        None, description="spark-submit options for the step, within what the party allows"
    )
    hadoop_config: str | None = Field(
        None, description="kept from PowerFL's job.yaml: the party's Hadoop configuration"
    )


PLATFORM_KEYS = frozenset(PlatformArgs.keys())


@dataclass(frozen=True)
class ParamInfo:
    """One declared parameter as the API, the CLI and docs/components.md show it."""

    name: str
    type: str
    description: str
    default: Any = None
    required: bool = False
    nullable: bool = False
    choices: list[Any] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None

    def bounds(self) -> str:
        """The bounds in one phrase, e.g. ``>= 1, <= 16`` or ``one of 1024, 2048``."""
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        limits = (
            (">=", self.minimum),
            (">", self.exclusive_minimum),
            ("<=", self.maximum),
            ("<", self.exclusive_maximum),
        )
        return ", ".join(f"{op} {_number(value)}" for op, value in limits if value is not None)


def describe(model: type[Params]) -> list[ParamInfo]:
    """Every parameter of ``model`` from its JSON schema, in declaration order."""
    schema = model.model_json_schema(by_alias=True)
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema.get("properties", {}).items():
        variants = prop.get("anyOf", [prop])
        nullable = any(v.get("type") == "null" for v in variants)
        main = next((v for v in variants if v.get("type") != "null"), prop)
        choices = main.get("enum", [main["const"]] if "const" in main else None)
        out.append(
            ParamInfo(
                name=name,
                type=str(main.get("type", "string")),
                description=str(prop.get("description", "")),
                default=prop.get("default"),
                required=name in required,
                nullable=nullable,
                choices=list(choices) if choices is not None else None,
                minimum=main.get("minimum"),
                maximum=main.get("maximum"),
                exclusive_minimum=main.get("exclusiveMinimum"),
                exclusive_maximum=main.get("exclusiveMaximum"),
            )
        )
    return out


def _number(value: float) -> str:
    """``1`` and ``4294967295`` as written, ``0.0001`` not as ``1e-04``."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
