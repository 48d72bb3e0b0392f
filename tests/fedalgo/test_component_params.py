"""Every component's parameter declaration: described, hyphenated, apart from the platform's keys;
and docs/components.md is what the declarations generate."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedalgo import ArgumentError, docs
from fedalgo.components import all_components
from fedalgo.federation import run_parties
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
