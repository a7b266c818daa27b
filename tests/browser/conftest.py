"""Fixtures for the web chat page in a real browser: Debian's Chromium driven by Playwright, against a local stack.

Everything stays on 127.0.0.1; every page's requests are checked to prove it. Screenshots go to a
temporary folder. The browser's settings and the page wrapper are in tests/support/browser.py.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, Page, page_of
from tests.support.stack import Stack, start_stack, stop_stack


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium` (Debian's chromium through apt-get)")
    return CHROMIUM


@pytest.fixture(scope="session")
def web_stack() -> Iterator[Stack]:
    # A fast watcher: a resumed turn is re-attached to the new connection within 0.1 s.
    stack = start_stack(CONTROL_INTERVAL_MS="100")
    yield stack
    stop_stack(stack)


@pytest.fixture(scope="session")
def browser_context(chromium_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # a fresh user-data dir
            executable_path=chromium_path,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1100, "height": 760},
            device_scale_factor=1,
            color_scheme="light",
            timeout=30_000,
        )
        context.set_default_timeout(WAIT_MS)
        yield context
        context.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def web(browser_context: Any, web_stack: Stack) -> Iterator[Page]:
    with page_of(browser_context, web_stack) as page:
        yield page
