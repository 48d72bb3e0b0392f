"""Tessera's version, and which versions may work together in one job.

Parties upgrade at different times. Releases with the same major version (the same minor while
the major is 0) speak the same cross-party protocol; a proposal from any other version is refused.
"""

from __future__ import annotations

from importlib.metadata import version as _installed_version

TESSERA_VERSION = _installed_version("tessera")


def _release(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(".")[:2])
    except ValueError:
        raise ValueError(f"not a Tessera version: {text!r}") from None


def compatible(ours: str, theirs: str) -> bool:
    """Whether a party at ``ours`` may take part in a job proposed by a party at ``theirs``."""
    a, b = _release(ours), _release(theirs)
    return a[:1] == b[:1] and (a[0] != 0 or a[1:2] == b[1:2])
