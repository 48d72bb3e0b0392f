"""fedcore.paths.under: a path built from received parts stays inside its root."""

from pathlib import Path

import pytest

from fedcore.paths import PathEscape, under


def test_parts_inside_the_root_resolve_under_it(tmp_path: Path) -> None:
    assert (
        under(tmp_path, "a" * 32, "10000", "train")
        == tmp_path.resolve() / ("a" * 32) / "10000" / "train"
    )
    assert under(tmp_path, "x/../y") == tmp_path.resolve() / "y"


@pytest.mark.parametrize(
    "parts",
    [("/etc",), ("..",), ("a", "../../b"), ("",), ("a\x00b",), ("/" + "a" * 31, "10000")],
)
def test_parts_that_escape_are_refused(tmp_path: Path, parts: tuple[str, ...]) -> None:
    with pytest.raises(PathEscape):
        under(tmp_path / "root", *parts)


def test_a_link_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "out").symlink_to(tmp_path)
    with pytest.raises(PathEscape):
        under(root, "out", "x")
