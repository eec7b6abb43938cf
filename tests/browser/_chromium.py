"""The browser tests' shared set-up: Debian's Chromium driven by Playwright (no browser download)
against the real uvicorn gateway of tests/gateway/test_gateway's `gw` fixture.

`signed_in_page` opens a console page, is sent to the sign-in form, signs in with a dev bearer
token and hands the page over; each test file keeps only its own scenario. `needs_chromium`
skips a test file when /usr/bin/chromium is missing; a missing Playwright skips the test.
Screenshots go to docs/console/ (`SHOTS`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.test_gateway import Gw

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"

needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")


@asynccontextmanager
async def signed_in_page(
    gw: Gw, path: str, token: str, *, sign_in_shot: str | None = None
) -> AsyncIterator[Any]:
    """A browser page on the console's `path`, signed in with `token` (the sign-in form's
    screenshot saved as `sign_in_shot` when given); the browser closes when the block ends."""
    playwright = pytest.importorskip("playwright.async_api")
    base = str(gw.http.base_url).rstrip("/")
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with playwright.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1366, "height": 900})
            await page.goto(f"{base}{path}")
            assert "/console/sign-in" in page.url
            if sign_in_shot is not None:
                await page.screenshot(path=str(SHOTS / sign_in_shot))
            await page.get_by_label("Bearer token").fill(token)
            await page.get_by_role("button", name="Sign in").click()
            yield page
        finally:
            await browser.close()
