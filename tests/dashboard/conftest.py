"""Fixtures of the dashboard tests: headless Chromium: Debian's `chromium`, driven by Playwright.

The browser is the system package (`apt-get install chromium`), never one that
Playwright downloads. Without it the tests are skipped on a developer's
machine and fail in CI (`CI` set), where `.ci/run` installs it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("AI_SERVICE_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def require_chromium() -> None:
    if Path(CHROMIUM).exists() or shutil.which(CHROMIUM):
        return
    message = f"no Chromium at {CHROMIUM}: apt-get install -y chromium"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


class PageProblems(list[str]):
    """Console errors and uncaught exceptions a page reported (CSP violations among them)."""


def in_browser(scenario: Callable[[Any, PageProblems], None]) -> None:
    """Run `scenario(page, problems)` in a fresh headless Chromium, on a thread of its own.

    Playwright's sync API runs an event loop on its thread; a thread of its own
    keeps it away from the fixtures that call `asyncio.run()` on the main one.
    """
    require_chromium()

    def run() -> None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                context = browser.new_context(viewport={"width": 1440, "height": 900})
                page = context.new_page()
                problems = PageProblems()
                page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
                page.on(
                    "console",
                    lambda msg: (
                        problems.append(f"console {msg.type}: {msg.text}")
                        if msg.type in ("error", "warning")
                        else None
                    ),
                )
                scenario(page, problems)
            finally:
                browser.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(run).result(timeout=300)


def screenshot_path(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / f"{name}.png"
