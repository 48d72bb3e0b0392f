"""Paths built from received values, checked before anything is opened, made or mounted.

A job id, a step name, an input path or an output dir may have been chosen by another party
(a job's arguments come from its initiator). :func:`name` accepts one path component only;
:func:`under` accepts an absolute path that, once resolved (``..`` and symbolic links followed),
lies inside one of the party's roots. Both refuse NUL bytes, which the OS would refuse later
with a bare ``ValueError``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Final

MAX_NAME_CHARS: Final = 128
MAX_PATH_CHARS: Final = 4096


class PathRefused(ValueError):
    """A received path or path component is not acceptable; the message says which and why."""


def name(value: str, *, what: str) -> str:
    """``value`` as one path component: not empty, no ``/``, not ``.`` or ``..``, no NUL."""
    if not value or len(value) > MAX_NAME_CHARS:
        raise PathRefused(f"{what} must be 1 to {MAX_NAME_CHARS} characters")
    if "\0" in value or "/" in value or value in (".", ".."):
        raise PathRefused(f"{what} {value[:MAX_NAME_CHARS]!r} is not a plain name")
    return value


def under(value: str | Path, roots: Iterable[Path], *, what: str) -> Path:
    """``value`` resolved, if it is absolute and lies inside one of ``roots`` (also resolved)."""
    text = os.fspath(value)
    if "\0" in text:
        raise PathRefused(f"{what} contains a NUL byte")
    if len(text) > MAX_PATH_CHARS:
        raise PathRefused(f"{what} is longer than {MAX_PATH_CHARS} characters")
    path = Path(text)
    if not path.is_absolute():
        raise PathRefused(f"{what} {text!r} is not an absolute path")
    resolved = path.resolve()
    allowed = [root.resolve() for root in roots]
    if not any(resolved.is_relative_to(root) for root in allowed):
        places = ", ".join(str(root) for root in allowed) or "(none configured)"
        raise PathRefused(f"{what} {text!r} is outside this party's roots: {places}")
    return resolved


def join(root: str | Path, *parts: str) -> Path:
    """``root / parts…`` resolved (symbolic links followed), if that lies inside ``root``: a part
    that is empty, absolute, holds a NUL or leads out of ``root`` (``..``, a link) is refused."""
    base = Path(root).resolve()
    for part in parts:
        if not part or "\0" in part or Path(part).is_absolute():
            raise PathRefused(f"{part[:MAX_NAME_CHARS]!r} is not a relative path inside {base}")
    path = base.joinpath(*parts).resolve()
    if not path.is_relative_to(base):
        raise PathRefused(f"{'/'.join(parts)[:MAX_PATH_CHARS]!r} leads outside {base}")
    return path
