"""The one way an end-to-end module gets its two-party stack: the ``two_parties`` fixture.

Each module gets its own stack (module scope) on the session's two real brokers (``kafka_pair``),
from env files with free ports; the host has granted the guest its demo CSV, as the README
shows. A module that needs other party settings overrides ``party_env`` (both parties') or
``own_env`` (one party's, such as its DATABASE_URL).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from e2e_stack import GUEST, HOST, TwoParties

from tessera.envfiles import local_parties, write_env_files
from tessera.example import grant_host_data, make_demo_data
from tessera.stack import Stack


@pytest.fixture(scope="module")
def party_env() -> Mapping[str, str]:
    """Variables added to both parties' env files (none unless a module overrides this)."""
    return {}


@pytest.fixture(scope="module")
def own_env() -> Mapping[str, Mapping[str, str]]:
    """Variables added to one party's env file only, by party id (none unless overridden)."""
    return {}


@pytest.fixture(scope="module")
def two_parties(
    request: pytest.FixtureRequest,
    kafka_pair: tuple[Any, Any],
    party_env: Mapping[str, str],
    own_env: Mapping[str, Mapping[str, str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TwoParties]:
    root = tmp_path_factory.mktemp(request.module.__name__.removeprefix("test_"))
    parties = local_parties([GUEST, HOST], kafka_ports=[b.port for b in kafka_pair])
    env_files = write_env_files(parties, root / "env", data_roots=[root])
    for party, path in zip((GUEST, HOST), env_files, strict=True):
        variables = {**party_env, **own_env.get(party, {})}
        with path.open("a") as env:
            env.writelines(f"{key}={value}\n" for key, value in variables.items())
    data = make_demo_data(root / "data")
    with Stack(env_files, start_brokers=False) as stack:
        two = TwoParties(stack, data, root)
        with two.flow(HOST) as host:
            grant_host_data(host, GUEST, data)  # the README's grant step
        yield two
