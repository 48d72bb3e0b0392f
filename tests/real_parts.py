"""Which skips a run tolerates, and where the suite finds the real parts that are not Python.

Under ``CI=true``, or ``TESSERA_STRICT=1`` (``make test`` sets it), a skipped test fails the run
(the hooks in conftest.py): a skip there means a real part of the suite (Kafka, PostgreSQL,
bubblewrap, Chromium, helm, kubeconform, Playwright, phe, the data sets) is missing, and a green
run would prove less than it says. Only a test that cannot apply to this machine at all skips
through :func:`not_applicable`, and still says why (``-rs``).

A plain module (not conftest) so test modules can import it unambiguously.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_SH = ROOT / "deploy" / "setup" / "system.sh"
NOT_APPLICABLE = "not applicable here: "
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HOW_TO_INSTALL = (
    "deploy/setup/system.sh installs the system packages (make install runs it), "
    "make install the Python ones, make deploy-tools helm and kubeconform"
)


def strict() -> bool:
    """Whether a skip fails the run (CI, or make test)."""
    ci = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
    return ci or os.environ.get("TESSERA_STRICT", "") == "1"


def not_applicable(reason: str) -> NoReturn:
    """Skip a test that cannot apply to this machine (not a missing part), even when strict."""
    pytest.skip(NOT_APPLICABLE + reason)


def skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    """The reason a skipped report gives (its longrepr is ``(path, line, "Skipped: reason")``)."""
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ")


def fail_if_strict(report: pytest.CollectReport | pytest.TestReport) -> None:
    """Turn a skip into a failure that says what to install, when the run is strict."""
    if not (report.skipped and strict()) or hasattr(report, "wasxfail"):
        return
    reason = skip_reason(report)
    if reason.startswith(NOT_APPLICABLE):
        return
    report.outcome = "failed"
    report.longrepr = (
        f"skipped, which fails under CI=true or TESSERA_STRICT=1 (make test): {reason}\n"
        f"A real part of the suite is missing. {HOW_TO_INSTALL}."
    )


def chromium() -> Path | None:
    """The Chromium the browser tests drive: the one ``deploy/setup/system.sh`` installs."""
    found = subprocess.run(
        [str(SYSTEM_SH), "chromium"], capture_output=True, text=True, check=False, timeout=30
    )
    return Path(found.stdout.strip()) if found.returncode == 0 else None


def chromium_browser() -> Iterator[Any]:
    """Headless Chromium through Playwright, for a module-scoped ``browser`` fixture to yield
    from; a skip (a failure under make test) when either is missing."""
    playwright_sync = pytest.importorskip("playwright.sync_api")
    executable = chromium()
    if executable is None:
        pytest.skip("no Chromium: deploy/setup/system.sh installs Debian's chromium")
    with playwright_sync.sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
