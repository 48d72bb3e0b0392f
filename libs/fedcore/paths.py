"""Paths built from received values (a peer's job id, a step name, an output name), kept inside
the root they are meant for."""

from __future__ import annotations

from pathlib import Path


class PathEscape(ValueError):
    """A path built from received values would lie outside its root."""


def under(root: Path | str, *parts: str) -> Path:
    """``root / parts…`` resolved (symlinks followed), or :class:`PathEscape` if that is not
    inside ``root``: a part that is absolute, empty, ``..``, holds a NUL, or leads through a
    link out of ``root`` is refused."""
    base = Path(root).resolve()
    for part in parts:
        if not part or "\x00" in part or Path(part).is_absolute():
            raise PathEscape(f"{part!r} is not a relative path inside {base}")
    path = base.joinpath(*parts).resolve()
    if not path.is_relative_to(base):
        raise PathEscape(f"{'/'.join(parts)!r} leads outside {base}")
    return path
