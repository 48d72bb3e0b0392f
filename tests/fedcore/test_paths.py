"""fedcore.paths: received names and paths, refused unless they stay inside the party's roots."""

from pathlib import Path

import pytest

from fedcore.paths import PathRefused, name, under


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
