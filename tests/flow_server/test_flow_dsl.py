"""pipeline.yaml and job.yaml: every bad input is refused with what is wrong and where."""

from __future__ import annotations

from pathlib import Path

import pytest
from flow_helpers import CATALOG, EXAMPLES, PIPELINE, job_yaml

from flow_server.catalog import Catalog
from flow_server.dsl import (
    ArgRef,
    DslError,
    OutputRef,
    check_job,
    check_step_args,
    parse_job,
    parse_pipeline,
)


def bad_pipeline(text: str | bytes, catalog: Catalog) -> DslError:
    with pytest.raises(DslError) as info:
        parse_pipeline(text, catalog)
    return info.value


def bad_step_args(text: str, catalog: Catalog) -> DslError:
    pipeline = parse_pipeline(text, catalog)  # a stored pipeline is always readable
    with pytest.raises(DslError) as info:
        check_step_args(pipeline)
    return info.value


def test_parses_the_example_pipeline(catalog: Catalog) -> None:
    p = parse_pipeline((EXAMPLES / "pipeline.yaml").read_bytes(), catalog)
    assert p.name == "hetero-lr"
    assert p.step_names == ["intersect", "scale", "train", "evaluate"]
    train = p.step("train")
    assert train.component == "hetero_lr"
    assert train.inputs == {"data": OutputRef("scale", "data")}
    assert train.deps == ("scale",)
    assert train.args["learning-rate"] == 0.15
    assert p.step("intersect").inputs == {"data": ArgRef("input")}
    assert p.step("evaluate").roles == ("guest",)


def test_the_example_job_matches_the_article_format() -> None:
    job = parse_job((EXAMPLES / "job.yaml").read_bytes())
    assert job.parties == {"10000": "guest", "20000": "host"}
    assert job.common_args["max-iter"] == 30
    assert job.common_args["runtime-image"] == "tessera/runtime:dev"
    assert set(job.party_args) == {"10000", "20000"}
    assert {"input", "output"} <= set(job.party_args["10000"])


@pytest.mark.parametrize(
    ("text", "code", "where"),
    [
        (b"", "empty_file", None),
        ("   \n# only a comment\n", "empty_file", None),
        ("name: x\nsteps: [\n", "malformed_yaml", "line 3, column 1"),
        ("name: [x\n", "malformed_yaml", "line 2, column 1"),
        (b"\xff\xfe", "bad_encoding", "byte 0"),
        ("- a\n- b\n", "invalid_document", None),
        ("steps: []\n", "missing_key", None),
        ("name: x\n", "missing_key", None),
        ("name: x\nsteps: []\n", "invalid_value", "steps"),
        ("name: x\nsteps:\n  - name: a\n", "missing_key", "steps[0]"),
        (
            "name: x\nsteps:\n  - {name: a, component: evaluation, inputs: {predictions: $p},"
            " arg: {}}\n",
            "unknown_key",
            "steps[0].arg",
        ),
        (
            "name: x\nsteps:\n  - {name: a, component: nope, inputs: {data: $input}}\n",
            "unknown_component",
            "steps[0].component",
        ),
        (
            "name: x\nsteps:\n  - {name: a, component: intersect, inputs: {data: $input}}\n"
            "  - {name: a, component: scale, inputs: {data: a.data}}\n",
            "duplicate_step",
            "steps[1].name",
        ),
        (
            "name: x\nsteps:\n  - {name: a, component: intersect, inputs: {data: b.data}}\n"
            "  - {name: b, component: scale, inputs: {data: a.data}}\n",
            "dependency_cycle",
            "steps",
        ),
        (
            "name: x\nsteps:\n  - {name: a, component: intersect, inputs: {data: a.data}}\n",
            "dependency_cycle",
            "steps",
        ),
        (
            "name: x\nsteps:\n  - {name: a, component: intersect, inputs: {data: $input},"
            " depends: [a]}\n",
            "dependency_cycle",
            "steps",
        ),
        (
            "name: x\nsteps:\n  - {name: a, component: intersect, inputs: {data: ghost.data}}\n",
            "unknown_step",
            "steps[0].inputs.data",
        ),
        (
            "name: x\nsteps:\n  - {name: a, component: intersect, inputs: {data: $input}}\n"
            "  - {name: b, component: scale, inputs: {data: a.model}}\n",
            "unknown_output",
            "steps[1].inputs.data",
        ),
        (
            "name: x\nsteps:\n  - {name: a, component: intersect, inputs: {data: $input},"
            " depends: [ghost]}\n",
            "unknown_step",
            "steps[0].depends[0]",
        ),
        (
            "name: x\nsteps:\n  - {name: a, component: intersect, inputs: {data: input}}\n",
            "invalid_reference",
            "steps[0].inputs.data",
        ),
        (
            "name: x\nsteps:\n  - {name: a, component: intersect, inputs: {table: $input}}\n",
            "unknown_input",
            "steps[0].inputs.table",
        ),
        (
            "name: x\nsteps:\n  - {name: a, component: intersect}\n",
            "missing_input",
            "steps[0].inputs",
        ),
        (
            "name: x\nsteps:\n  - {name: a.b, component: intersect, inputs: {data: $input}}\n",
            "invalid_value",
            "steps[0].name",
        ),
    ],
)
def test_bad_pipelines(text: str | bytes, code: str, where: str | None, catalog: Catalog) -> None:
    err = bad_pipeline(text, catalog)
    assert err.code == code, err
    assert err.where == where, err
    assert err.message


def test_error_messages_name_the_problem(catalog: Catalog) -> None:
    err = bad_pipeline(
        "name: x\nsteps:\n  - {name: a, component: nope, inputs: {data: $input}}\n", catalog
    )
    assert "nope" in err.message and "hetero_lr" in err.message  # lists the known ones
    err = bad_pipeline(
        "name: x\nsteps:\n  - {name: a, component: intersect, inputs: {data: b.data}}\n"
        "  - {name: b, component: scale, inputs: {data: a.data}}\n",
        catalog,
    )
    assert "a -> b -> a" in err.message
    err = bad_pipeline("name: x\nsteps:\n  - name: a\n", catalog)
    assert "'component'" in err.message


def test_dependencies_follow_inputs_and_depends(catalog: Catalog) -> None:
    p = parse_pipeline(
        "name: x\nsteps:\n"
        "  - {name: e, component: evaluation, inputs: {predictions: t.predictions}}\n"
        "  - {name: i, component: intersect, inputs: {data: $input}}\n"
        "  - {name: t, component: hetero_lr, inputs: {data: i.data}, depends: [i]}\n",
        catalog,
    )
    assert p.step("e").deps == ("t",)
    assert p.step("t").deps == ("i",)  # not twice


def test_dates_stay_strings(catalog: Catalog) -> None:
    p = parse_pipeline(PIPELINE.replace("max-iter: 5", "runtime-image: 2024-01-01"), catalog)
    assert p.step("train").args["runtime-image"] == "2024-01-01"


# --- job.yaml --------------------------------------------------------------------------------


def bad_job(text: str) -> DslError:
    with pytest.raises(DslError) as info:
        parse_job(text)
    return info.value


ARGS = "parties-args:\n  10000: {input: a}\n  20000: {input: b}\n"


@pytest.mark.parametrize(
    ("text", "code", "where"),
    [
        ("", "empty_file", None),
        ("parties: [\n", "malformed_yaml", "line 2, column 1"),
        ("common-args: {}\n" + ARGS, "missing_key", None),
        ('parties: ["10000=guest", "20000=host"]\n', "missing_key", None),
        ("parties: []\n" + ARGS, "bad_party_spec", "parties"),
        ('parties: "10000=guest"\n' + ARGS, "bad_party_spec", "parties"),
        ('parties: ["10000:guest", "20000=host"]\n' + ARGS, "bad_party_spec", "parties[0]"),
        ('parties: ["10000=guest", "abc=host"]\n' + ARGS, "bad_party_spec", "parties[1]"),
        ('parties: ["10000=guest", "20000=boss"]\n' + ARGS, "bad_party_spec", "parties[1]"),
        ('parties: ["10000=guest", "10000=host"]\n' + ARGS, "bad_party_spec", "parties[1]"),
        ('parties: ["10000=guest", 20000]\n' + ARGS, "bad_party_spec", "parties[1]"),
        (
            'parties: ["10000=guest", "20000=host"]\nparties-args:\n  10000: {input: a}\n',
            "missing_party_args",
            "parties-args",
        ),
        (
            'parties: ["10000=guest"]\n' + ARGS,
            "unknown_party",
            "parties-args.20000",
        ),
        (
            'parties: ["10000=guest", "20000=host"]\ncommon-args: [1]\n' + ARGS,
            "invalid_value",
            "common-args",
        ),
        (
            'parties: ["10000=guest", "20000=host"]\nparties-args:\n  10000: a\n  20000: {}\n',
            "invalid_value",
            "parties-args.10000",
        ),
    ],
)
def test_bad_jobs(text: str, code: str, where: str | None) -> None:
    err = bad_job(text)
    assert err.code == code, err
    assert err.where == where, err


def check(text: str, catalog: Catalog, me: str = "10000", pipeline: str = PIPELINE) -> None:
    job = parse_job(text)
    check_job(
        job, parse_pipeline(pipeline, catalog), me=me, peers={"20000", "30000"}, check_args_of=None
    )


def test_a_job_without_this_party_is_refused(catalog: Catalog) -> None:
    with pytest.raises(DslError) as info:
        check(job_yaml("g", "h", "o"), catalog, me="30000")
    assert info.value.code == "party_not_in_job"
    assert "30000" in info.value.message


def test_a_job_with_an_unreachable_party_is_refused(catalog: Catalog) -> None:
    text = (
        job_yaml("g", "h", "o").replace('"20000=host"', '"40000=host"').replace("20000:", "40000:")
    )
    with pytest.raises(DslError) as info:
        check(text, catalog)
    assert (info.value.code, info.value.where) == ("unknown_party", "parties")


def test_a_component_role_missing_from_the_job(catalog: Catalog) -> None:
    text = 'parties: ["10000=host", "20000=host"]\n' + ARGS
    with pytest.raises(DslError) as info:
        check(text, catalog)
    assert info.value.code == "missing_role"
    assert "guest" in info.value.message and "intersect" in info.value.message


def test_a_role_no_component_takes(catalog: Catalog) -> None:
    text = 'parties: ["10000=guest", "20000=host", "30000=arbiter"]\n' + ARGS + "  30000: {}\n"
    with pytest.raises(DslError) as info:
        check(text, catalog)
    assert info.value.code == "role_not_allowed"
    assert "30000" in info.value.message and "arbiter" in info.value.message


def test_a_missing_input_argument(catalog: Catalog) -> None:
    text = (
        'parties: ["10000=guest", "20000=host"]\nparties-args:\n  10000: {input: a}\n  20000: {}\n'
    )
    with pytest.raises(DslError) as info:
        check(text, catalog)
    assert (info.value.code, info.value.where) == ("missing_arg", "parties-args.20000")


def test_args_precedence(catalog: Catalog) -> None:
    pipeline = parse_pipeline(PIPELINE, catalog)
    job = parse_job(job_yaml("g.csv", "h.csv", "/out"))
    train = pipeline.step("train")
    guest = job.args_for(train, "10000")
    assert guest["learning-rate"] == 0.15  # the step's own
    assert guest["max-iter"] == 30  # common-args over the step's args
    assert guest["spark-master-name"] == "local[*]"  # a platform key reaches every step
    assert guest["input"] == "g.csv"
    host = job.args_for(train, "20000")
    assert host["hadoop-config"] == "/etc/hadoop"
    over = parse_job(
        'parties: ["10000=guest", "20000=host"]\ncommon-args: {max-iter: 30}\n'
        "parties-args:\n  10000: {input: a, max-iter: 7}\n  20000: {input: b}\n"
    )
    assert over.args_for(train, "10000")["max-iter"] == 7  # the party's own args win
    assert over.args_for(train, "20000")["max-iter"] == 30


def test_party_keys_may_be_quoted_or_not(tmp_path: Path) -> None:
    job = parse_job(
        'parties: ["10000=guest", "20000=host"]\n'
        "parties-args:\n  '10000': {input: a}\n  20000: {input: b}\n"
    )
    assert set(job.party_args) == {"10000", "20000"}
    assert job.roles() == {"guest": ["10000"], "host": ["20000"]}


def test_the_example_pipeline_parses_with_the_real_registry() -> None:
    from flow_server.catalog import component_catalog

    real = component_catalog()
    for name, info in CATALOG.items():
        assert name in real
        assert set(info.roles) <= set(real[name].roles), name
        assert set(info.inputs) == set(real[name].inputs), name
        assert set(info.outputs) <= set(real[name].outputs), name
    pipeline = parse_pipeline((EXAMPLES / "pipeline.yaml").read_bytes(), real)
    assert pipeline.step_names == ["intersect", "scale", "train", "evaluate"]


# --- arguments against the components' declarations ------------------------------------------


def test_a_misspelt_step_arg_is_refused_with_the_valid_names(catalog: Catalog) -> None:
    err = bad_step_args(PIPELINE.replace("max-iter: 5", "max-iters: 5"), catalog)
    assert (err.code, err.where) == ("unknown_arg", "steps[1].args.max-iters")
    assert "step 'train' (hetero_lr) takes no argument 'max-iters'" in err.message
    assert "did you mean 'max-iter'?" in err.message
    assert "learning-rate" in err.message and "auto-retries" in err.message  # the valid names


def test_an_out_of_range_step_arg_is_refused_with_the_bound(catalog: Catalog) -> None:
    err = bad_step_args(PIPELINE.replace("max-iter: 5", "max-iter: 0"), catalog)
    assert (err.code, err.where) == ("invalid_arg", "steps[1].args.max-iter")
    assert "step 'train' (hetero_lr): 'max-iter' should be greater than or equal to 1" in str(err)


def test_a_parameter_of_another_step_is_not_a_step_arg(catalog: Catalog) -> None:
    err = bad_step_args(
        PIPELINE.replace(
            "inputs: {data: $input}", "args: {max-iter: 3}\n    inputs: {data: $input}"
        ),
        catalog,
    )
    assert (err.code, err.where) == ("unknown_arg", "steps[0].args.max-iter")


@pytest.mark.parametrize(
    ("common", "party_extra", "code", "where", "says"),
    [
        ("max-iters: 3", "", "unknown_arg", "common-args.max-iters", "did you mean 'max-iter'?"),
        ("", ", batchsize: 3", "unknown_arg", "parties-args.20000.batchsize", "'batchsize'"),
        ("key-bits: 512", "", "invalid_arg", "common-args.key-bits", "should be 1024 or 2048"),
        ("", ", max-iter: 0", "invalid_arg", "parties-args.20000.max-iter", "greater than or"),
        ("auto-retries: -1", "", "invalid_arg", "common-args.auto-retries", "auto-retries"),
        ("timeout: ten", "", "invalid_arg", "common-args.timeout", "valid number"),
        ("max-iter: true", "", "invalid_arg", "common-args.max-iter", "not be true or false"),
    ],
)
def test_job_args_are_checked_per_step_against_the_declarations(
    catalog: Catalog, common: str, party_extra: str, code: str, where: str, says: str
) -> None:
    text = (
        f'parties: ["10000=guest", "20000=host"]\ncommon-args: {{{common}}}\n'
        f"parties-args:\n  10000: {{input: a}}\n  20000: {{input: b{party_extra}}}\n"
    )
    with pytest.raises(DslError) as info:
        check(text, catalog)
    assert (info.value.code, info.value.where) == (code, where), info.value
    assert says in info.value.message
    if code == "invalid_arg" and "retries" not in where and "timeout" not in where:
        assert "step 'train' (hetero_lr)" in info.value.message


def test_job_args_for_any_step_platform_keys_and_input_names_are_accepted(
    catalog: Catalog,
) -> None:
    # max-iter reaches intersect and evaluate too: it is for the step that declares it
    check(
        'parties: ["10000=guest", "20000=host"]\n'
        "common-args: {max-iter: 3, auto-retries: 1, task-timeout: 60, runtime-image: x}\n"
        "parties-args:\n  10000: {input: a, output: /o}\n  20000: {input: b, hadoop-config: h}\n",
        catalog,
    )


def test_a_peer_checks_only_its_own_args(catalog: Catalog) -> None:
    job = parse_job(
        'parties: ["10000=guest", "20000=host"]\n'
        "parties-args:\n  10000: {input: a, max-iter: 0}\n  20000: {input: b}\n"
    )
    pipeline = parse_pipeline(PIPELINE, catalog)
    check_job(job, pipeline, me="20000", check_args_of=["20000"])
    with pytest.raises(DslError) as info:
        check_job(job, pipeline, me="10000", check_args_of=["10000"])
    assert info.value.where == "parties-args.10000.max-iter"


def test_a_proposed_pipeline_s_step_args_are_checked_with_the_job(catalog: Catalog) -> None:
    text = (
        'parties: ["10000=guest", "20000=host"]\n'
        "parties-args:\n  10000: {input: a}\n  20000: {input: b}\n"
    )
    with pytest.raises(DslError) as info:
        check(text, catalog, pipeline=PIPELINE.replace("max-iter: 5", "max-iters: 5"))
    assert (info.value.code, info.value.where) == ("unknown_arg", "steps[1].args.max-iters")
