"""Which Tessera releases may run one job together."""

import pytest

from fedcore.version import TESSERA_VERSION, compatible


@pytest.mark.parametrize(
    ("ours", "theirs", "ok"),
    [
        ("1.2.0", "1.9.3", True),  # same major
        ("1.2.0", "2.0.0", False),
        ("0.1.0", "0.1.7", True),  # 0.x: the minor is the breaking part
        ("0.1.0", "0.2.0", False),
        ("0.1.0", "1.1.0", False),
    ],
)
def test_same_major_or_same_minor_below_one(ours: str, theirs: str, ok: bool) -> None:
    assert compatible(ours, theirs) is ok


def test_the_installed_version_is_compatible_with_itself() -> None:
    assert compatible(TESSERA_VERSION, TESSERA_VERSION)


def test_garbage_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a Tessera version"):
        compatible("1.0", "banana")
