"""pipeline.yaml and job.yaml: parsing and validation, with errors that say what is wrong and where.

A pipeline is a DAG of steps; each step runs a component of the algorithm catalog. Its inputs are
``$<arg>`` (a path the party gives in its job args) or ``<step>.<output>`` (an earlier step's
output on the same party). A job names its parties with roles and gives their arguments. A step's
arguments are its ``args``, overridden by the job's ``common-args``, overridden by the party's own
``parties-args``. Every key must be declared: a parameter of the step's component (its ``args``)
or of some step of the pipeline (``common-args`` and ``parties-args`` reach every step), a key of
the platform's own (:class:`fedcore.params.PlatformArgs`), or an argument an input reads
(``$<arg>``); values are checked against the declarations of each step they reach.

Documents come from users and, in a proposal, from other parties, so the YAML reader is bounded:
at most :data:`MAX_YAML_BYTES`, nested at most :data:`MAX_YAML_DEPTH` levels, no anchors or
aliases (a few hundred bytes of aliases expand to gigabytes), and argument values limited as
``fedcore.messages.Args`` says (JSON-like, no bytes, no NaN, bounded depth and size).
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from fedcore.messages import MAX_PARTIES, MAX_PIPELINE_CHARS, MAX_STEPS, STEP_NAME, Args, describe
from fedcore.params import PLATFORM_KEYS, InvalidArguments, Params, PlatformArgs
from flow_server.catalog import Catalog

ROLES = ("guest", "host", "arbiter")

MAX_YAML_BYTES = MAX_PIPELINE_CHARS
MAX_YAML_DEPTH = 24

_STEP_NAME = STEP_NAME
_ARG_REF = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_.-]*)$")
_OUT_REF = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)\.([A-Za-z_][A-Za-z0-9_-]*)$")
_PARTY_SPEC = re.compile(r"^\s*(\d{1,18})\s*=\s*([a-z_]+)\s*$")


class DslError(ValueError):
    """A pipeline or job document is invalid: ``code`` says what, ``where`` says where."""

    def __init__(self, code: str, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


# --- YAML ------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """Safe YAML without implicit timestamps (dates stay strings so every value can be sent),
    without anchors and aliases, and nested at most ``MAX_YAML_DEPTH`` levels (the composer
    recurses once per level, so the cap also keeps it far from Python's recursion limit)."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases (&, *) are not allowed", event.start_mark
            )
        if self._depth >= MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", event.start_mark
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1


_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _str_keys(value: Any) -> Any:
    """YAML reads ``10000:`` as an int key; every key is a string from here on."""
    if isinstance(value, dict):
        return {str(k): _str_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_str_keys(v) for v in value]
    return value


def load_yaml(data: bytes | str, what: str) -> dict[str, Any]:
    """Parse a YAML document that must be a mapping."""
    if len(data) > MAX_YAML_BYTES:
        raise DslError(
            "document_too_large", f"the {what} is larger than {MAX_YAML_BYTES // 1024} KiB"
        )
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DslError(
                "bad_encoding", f"the {what} is not UTF-8 text", f"byte {exc.start}"
            ) from None
    if not data.strip():
        raise DslError("empty_file", f"the {what} is empty")
    try:
        doc = yaml.load(data, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        raise DslError(
            "malformed_yaml", f"the {what} is not valid YAML: {exc.problem}", where
        ) from None
    except yaml.YAMLError as exc:
        raise DslError("malformed_yaml", f"the {what} is not valid YAML: {exc}") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise DslError("malformed_yaml", f"the {what} holds a value out of range: {exc}") from None
    if doc is None:
        raise DslError("empty_file", f"the {what} is empty")
    if not isinstance(doc, dict):
        raise DslError(
            "invalid_document", f"the {what} must be a mapping, not a {type(doc).__name__}"
        )
    return dict(_str_keys(doc))


def _where(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _translate(exc: ValidationError, what: str) -> DslError:
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    if err["type"] == "missing":
        parent = _where(loc[:-1]) or None
        return DslError("missing_key", f"the {what} is missing the key '{loc[-1]}'", parent)
    if err["type"] == "extra_forbidden":
        return DslError("unknown_key", f"'{loc[-1]}' is not a key of a {what} step", _where(loc))
    return DslError("invalid_value", f"{err['msg']} in the {what}", _where(loc) or None)


# --- pipeline --------------------------------------------------------------------------------


class _StepDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    component: str = Field(max_length=128)
    inputs: dict[str, str] = Field(default_factory=dict, max_length=64)
    args: Args = Field(default_factory=dict)
    depends: list[str] = Field(default_factory=list, max_length=MAX_STEPS)


class _PipelineDoc(BaseModel):
    model_config = ConfigDict(extra="allow")  # e.g. a description

    name: str = Field(max_length=200)
    steps: list[_StepDoc] = Field(min_length=1, max_length=MAX_STEPS)


@dataclass(frozen=True)
class ArgRef:
    """``$<arg>``: the value of this argument in the party's job args."""

    arg: str


@dataclass(frozen=True)
class OutputRef:
    """``<step>.<output>``: an output of an earlier step on the same party."""

    step: str
    output: str


InputRef = ArgRef | OutputRef


@dataclass(frozen=True)
class Step:
    name: str
    component: str
    roles: tuple[str, ...]
    inputs: dict[str, InputRef]
    args: dict[str, Any]
    deps: tuple[str, ...]
    params: type[Params] = Params  # the component's parameter declaration


@dataclass(frozen=True)
class Pipeline:
    name: str
    steps: tuple[Step, ...]

    @property
    def step_names(self) -> list[str]:
        return [s.name for s in self.steps]

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def roles(self) -> set[str]:
        return {r for s in self.steps for r in s.roles}

    @property
    def arg_refs(self) -> set[str]:
        """The arguments the steps' inputs read (``$input`` ...): paths each party gives."""
        return {r.arg for s in self.steps for r in s.inputs.values() if isinstance(r, ArgRef)}

    def job_keys(self) -> set[str]:
        """Every key a job's ``common-args`` or ``parties-args`` may give."""
        return {k for s in self.steps for k in s.params.keys()} | PLATFORM_KEYS | self.arg_refs


def _parse_ref(text: str, where: str) -> InputRef:
    if m := _ARG_REF.match(text):
        return ArgRef(m[1])
    if m := _OUT_REF.match(text):
        return OutputRef(m[1], m[2])
    raise DslError(
        "invalid_reference",
        f"'{text}' is neither $<arg> nor <step>.<output>",
        where,
    )


def parse_pipeline(data: bytes | str, catalog: Catalog) -> Pipeline:
    """Parse and validate a pipeline.yaml against the component catalog."""
    raw = load_yaml(data, "pipeline")
    try:
        doc = _PipelineDoc.model_validate(raw)
    except ValidationError as exc:
        raise _translate(exc, "pipeline") from None

    index: dict[str, int] = {}
    for i, s in enumerate(doc.steps):
        where = f"steps[{i}].name"
        if not _STEP_NAME.fullmatch(s.name):
            raise DslError(
                "invalid_value",
                f"step name '{s.name[:80]}' must start with a letter, hold only letters, "
                "digits, '_' and '-', and be at most 64 characters long",
                where,
            )
        if s.name in index:
            raise DslError(
                "duplicate_step",
                f"step name '{s.name}' is used twice (also steps[{index[s.name]}])",
                where,
            )
        index[s.name] = i
        if s.component not in catalog:
            raise DslError(
                "unknown_component",
                f"unknown component '{s.component}'; known: {', '.join(sorted(catalog))}",
                f"steps[{i}].component",
            )

    steps: list[Step] = []
    for i, s in enumerate(doc.steps):
        comp = catalog[s.component]
        inputs: dict[str, InputRef] = {}
        deps: list[str] = []
        for name, text in s.inputs.items():
            where = f"steps[{i}].inputs.{name}"
            if name not in comp.inputs:
                raise DslError(
                    "unknown_input",
                    f"component '{comp.name}' has no input '{name}' "
                    f"(its inputs: {', '.join(comp.inputs) or 'none'})",
                    where,
                )
            ref = _parse_ref(text, where)
            if isinstance(ref, OutputRef):
                if ref.step not in index:
                    raise DslError(
                        "unknown_step", f"'{text}' refers to an unknown step '{ref.step}'", where
                    )
                src = catalog[doc.steps[index[ref.step]].component]
                if ref.output not in src.outputs:
                    raise DslError(
                        "unknown_output",
                        f"'{text}': step '{ref.step}' ({src.name}) has no output '{ref.output}' "
                        f"(its outputs: {', '.join(src.outputs) or 'none'})",
                        where,
                    )
                deps.append(ref.step)
            inputs[name] = ref
        missing = [n for n in comp.inputs if n not in s.inputs]
        if missing:
            raise DslError(
                "missing_input",
                f"step '{s.name}' ({comp.name}) needs the input(s) {', '.join(missing)}",
                f"steps[{i}].inputs",
            )
        for j, dep in enumerate(s.depends):
            if dep not in index:
                raise DslError(
                    "unknown_step",
                    f"depends on an unknown step '{dep}'",
                    f"steps[{i}].depends[{j}]",
                )
            deps.append(dep)
        steps.append(
            Step(
                name=s.name,
                component=s.component,
                roles=comp.roles,
                inputs=inputs,
                args=dict(s.args),
                deps=tuple(dict.fromkeys(deps)),
                params=comp.params,
            )
        )
    _check_acyclic(steps)
    return Pipeline(name=doc.name, steps=tuple(steps))


# --- arguments -------------------------------------------------------------------------------


def check_step_args(pipeline: Pipeline) -> None:
    """Each step's own ``args`` against its component's declaration and the platform's keys.

    Separate from :func:`parse_pipeline`, which also re-reads stored pipelines: a declaration that
    changed must not make an accepted job unreadable. Called at upload and by :func:`check_job`.
    """
    for i, step in enumerate(pipeline.steps):
        valid = set(step.params.keys()) | PLATFORM_KEYS | pipeline.arg_refs
        for key in step.args:
            _check_known(
                key,
                valid,
                f"steps[{i}].args.{key}",
                f"step '{step.name}' ({step.component}) takes no argument",
            )
        _check_values(step, step.args, functools.partial(_step_arg, i))


def _step_arg(index: int, key: str) -> str:
    return f"steps[{index}].args.{key}"


def _check_known(key: str, valid: set[str], where: str, refusal: str) -> None:
    """``key`` is one of ``valid``, else ``unknown_arg``: the refusal, the key, the valid ones."""
    if key in valid:
        return
    near = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    raise DslError(
        "unknown_arg",
        f"{refusal} '{key}'{hint}; valid: {', '.join(sorted(valid))}",
        where,
    )


def _check_values(step: Step, args: Mapping[str, Any], where_of: Callable[[str], str]) -> None:
    """``args`` as ``step`` would read them: its component's parameters and the platform's."""
    for model in (step.params, PlatformArgs):
        try:
            model.from_args(args)
        except InvalidArguments as exc:
            problem = exc.problems[0]
            raise DslError(
                "invalid_arg",
                f"step '{step.name}' ({step.component}): {problem.message}",
                where_of(problem.key),
            ) from None


def _check_acyclic(steps: list[Step]) -> None:
    deps = {s.name: s.deps for s in steps}
    done: set[str] = set()
    path: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in path:
            cycle = [*path[path.index(name) :], name]
            raise DslError(
                "dependency_cycle",
                f"steps {' -> '.join(cycle)} depend on each other in a cycle",
                "steps",
            )
        path.append(name)
        for dep in deps[name]:
            visit(dep)
        path.pop()
        done.add(name)

    for s in steps:
        visit(s.name)


# --- job -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobSpec:
    """A job's parties with their roles (in job.yaml order) and the arguments this party knows."""

    parties: dict[str, str]  # party id -> role
    common_args: dict[str, Any] = field(default_factory=dict)
    party_args: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def party_specs(self) -> list[str]:
        return [f"{p}={r}" for p, r in self.parties.items()]

    def roles(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for party, role in self.parties.items():
            out.setdefault(role, []).append(party)
        return out

    def args_for(self, step: Step, party: str) -> dict[str, Any]:
        return {**step.args, **self.common_args, **self.party_args.get(party, {})}

    def where_given(self, step: Step, party: str, key: str) -> str:
        """Which document gave ``key`` of ``step``'s args on ``party`` (the last one wins)."""
        if key in self.party_args.get(party, {}):
            return f"parties-args.{party}.{key}"
        if key in self.common_args:
            return f"common-args.{key}"
        return f"pipeline step '{step.name}' args.{key}"


def parse_party_specs(specs: Any, where: str = "parties") -> dict[str, str]:
    """``["10000=guest", "20000=host"]`` → ``{"10000": "guest", "20000": "host"}``."""
    if not isinstance(specs, list) or not specs:
        raise DslError(
            "bad_party_spec", 'parties must be a non-empty list like ["10000=guest"]', where
        )
    if len(specs) > MAX_PARTIES:
        raise DslError("bad_party_spec", f"a job has at most {MAX_PARTIES} parties", where)
    parties: dict[str, str] = {}
    for i, spec in enumerate(specs):
        m = _PARTY_SPEC.match(spec) if isinstance(spec, str) else None
        if m is None:
            raise DslError(
                "bad_party_spec",
                f"{spec!r} is not '<party id>=<role>' (e.g. '10000=guest')",
                f"{where}[{i}]",
            )
        party, role = m[1], m[2]
        if role not in ROLES:
            raise DslError(
                "bad_party_spec",
                f"role '{role}' is not one of {', '.join(ROLES)}",
                f"{where}[{i}]",
            )
        if party in parties:
            raise DslError("bad_party_spec", f"party {party} is listed twice", f"{where}[{i}]")
        parties[party] = role
    return parties


_ARGS: TypeAdapter[dict[str, Any]] = TypeAdapter(Args)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    """Arguments: a mapping of JSON-like values within ``fedcore.messages.Args``' bounds."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DslError("invalid_value", f"must be a mapping, not a {type(value).__name__}", where)
    try:
        return _ARGS.validate_python(value)
    except ValidationError as exc:
        raise DslError("invalid_value", describe(exc), where) from None


def parse_job(data: bytes | str) -> JobSpec:
    """Parse a job.yaml: ``parties``, ``common-args`` and ``parties-args`` for every party."""
    raw = load_yaml(data, "job")
    if "parties" not in raw:
        raise DslError("missing_key", "the job is missing the key 'parties'")
    parties = parse_party_specs(raw["parties"])
    common = _mapping(raw.get("common-args"), "common-args")
    if "parties-args" not in raw:
        raise DslError("missing_key", "the job is missing the key 'parties-args'")
    given = _mapping(raw["parties-args"], "parties-args")
    party_args: dict[str, dict[str, Any]] = {}
    for party, args in given.items():
        if party not in parties:
            raise DslError(
                "unknown_party",
                f"party {party} has parties-args but is not in parties",
                f"parties-args.{party}",
            )
        party_args[party] = _mapping(args, f"parties-args.{party}")
    missing = [p for p in parties if p not in given]
    if missing:
        raise DslError(
            "missing_party_args",
            f"party {', '.join(missing)} is in parties but has no parties-args",
            "parties-args",
        )
    return JobSpec(parties=parties, common_args=common, party_args=party_args)


def takes_part(step: Step, role: str) -> bool:
    return role in step.roles


def check_job(
    job: JobSpec,
    pipeline: Pipeline,
    *,
    me: str,
    peers: Collection[str] | None = None,
    check_args_of: Iterable[str] | None = None,
) -> None:
    """Check a job against its pipeline as party ``me`` sees it.

    ``peers``: the parties this one can reach (None: do not check). ``check_args_of``: the
    parties whose ``$<arg>`` inputs must resolve (default: those whose args this party holds).
    """
    if me not in job.parties:
        raise DslError(
            "party_not_in_job",
            f"this party ({me}) is not one of the job's parties ({', '.join(job.party_specs)})",
            "parties",
        )
    if peers is not None:
        for party in job.parties:
            if party != me and party not in peers:
                raise DslError(
                    "unknown_party",
                    f"party {party} is not a peer of this party (see OTHER_PARTIES)",
                    "parties",
                )
    present = set(job.parties.values())
    used = pipeline.roles
    for party, role in job.parties.items():
        if role not in used:
            raise DslError(
                "role_not_allowed",
                f"party {party} has role '{role}', which no step of pipeline "
                f"'{pipeline.name}' takes (roles used: {', '.join(sorted(used))})",
                "parties",
            )
    for step in pipeline.steps:
        lacking = [r for r in step.roles if r not in present]
        if lacking:
            raise DslError(
                "missing_role",
                f"step '{step.name}' ({step.component}) needs role(s) {', '.join(lacking)}, "
                "but no party of the job has it",
                "parties",
            )
    check_step_args(pipeline)
    valid = pipeline.job_keys()
    taker = f"no step of pipeline '{pipeline.name}' takes an argument"
    for key in job.common_args:
        _check_known(key, valid, f"common-args.{key}", taker)
    for party in job.party_args if check_args_of is None else check_args_of:
        role = job.parties[party]
        for key in job.party_args.get(party, {}):
            _check_known(key, valid, f"parties-args.{party}.{key}", taker)
        for step in pipeline.steps:
            if not takes_part(step, role):
                continue
            args = job.args_for(step, party)
            _check_values(step, args, functools.partial(job.where_given, step, party))
            for name, ref in step.inputs.items():
                if isinstance(ref, ArgRef) and ref.arg not in args:
                    raise DslError(
                        "missing_arg",
                        f"step '{step.name}' reads input '{name}' from ${ref.arg}, but party "
                        f"{party} gives no '{ref.arg}' in its parties-args or the common-args",
                        f"parties-args.{party}",
                    )
