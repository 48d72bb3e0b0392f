"""fedcore.paths: received names and paths, refused unless they stay inside the party's roots."""

from pathlib import Path

import pytest

from fedcore.paths import PathRefused, join, name, under


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "/etc", "../../x", "x\0y", "n" * 129])
def test_a_name_is_one_plain_path_component(bad: str) -> None:
    with pytest.raises(PathRefused):
        name(bad, what="job id")


def test_plain_names_pass() -> None:
    assert name("0f" * 16, what="job id") == "0f" * 16
    assert name("train-1", what="step name") == "train-1"


def test_a_path_must_resolve_inside_a_root(tmp_path: Path) -> None:
    root, other = tmp_path / "data", tmp_path / "other"
    root.mkdir()
    other.mkdir()
    (other / "secret.csv").write_text("x")
    (root / "link.csv").symlink_to(other / "secret.csv")
    assert under(str(root / "in.csv"), [root], what="input") == (root / "in.csv").resolve()
    assert under(f"{root}/sub/../in.csv", [other, root], what="input") == root / "in.csv"
    for bad, why in [
        (f"{root}/../other/secret.csv", "outside this party's roots"),
        (str(root / "link.csv"), "outside this party's roots"),  # through a symbolic link
        ("relative/in.csv", "not an absolute path"),
        (f"{root}/in\0.csv", "NUL byte"),
        ("/" + "a" * 5000, "longer than"),
    ]:
        with pytest.raises(PathRefused, match=why):
            under(bad, [root], what="input")
    with pytest.raises(PathRefused, match=r"\(none configured\)"):
        under(str(root / "in.csv"), [], what="input")


def test_joined_parts_inside_the_root_resolve_under_it(tmp_path: Path) -> None:
    assert (
        join(tmp_path, "a" * 32, "10000", "train")
        == tmp_path.resolve() / ("a" * 32) / "10000" / "train"
    )
    assert join(tmp_path, "x/../y") == tmp_path.resolve() / "y"


@pytest.mark.parametrize(
    "parts",
    [("/etc",), ("..",), ("a", "../../b"), ("",), ("a\x00b",), ("/" + "a" * 31, "10000")],
)
def test_joined_parts_that_escape_are_refused(tmp_path: Path, parts: tuple[str, ...]) -> None:
    with pytest.raises(PathRefused):
        join(tmp_path / "root", *parts)


def test_a_joined_link_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "out").symlink_to(tmp_path)
    with pytest.raises(PathRefused):
        join(root, "out", "x")
