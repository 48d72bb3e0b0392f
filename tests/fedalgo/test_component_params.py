"""Every component's parameter declaration: described, hyphenated, apart from the platform's keys;
and docs/components.md is what the declarations generate."""

from __future__ import annotations

from fedalgo import docs
from fedalgo.components import all_components
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
