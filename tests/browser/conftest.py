"""The web chat page in a real browser: Debian's Chromium driven by Playwright, against a local stack.

The browser is never downloaded: Playwright launches /usr/bin/chromium (`make chromium` installs
it with apt). Everything stays on 127.0.0.1; every page's requests are checked to prove it, and
Chromium's own background connections are switched off. Screenshots go to a temporary folder;
with UPDATE_SCREENSHOT=1 the one of a streamed answer is copied to docs/screenshot.png.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterator, List

import pytest

from tests.integration.conftest import Stack, start_stack, stop_stack

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "screenshot.png"
WAIT_MS = 15_000  # the longest any single wait may take
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


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


def keep_screenshot(path: Path) -> None:
    """With UPDATE_SCREENSHOT=1, this screenshot becomes the README's."""
    if os.environ.get("UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(path, SCREENSHOT)


class Page:
    """One tab on the chat page, with what it fetched and what went wrong in it."""

    def __init__(self, page: Any, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.requests: List[str] = []
        self.errors: List[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("websocket", lambda socket: self.requests.append(socket.url))
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def open(self, token: str = "", url: str = "") -> None:
        fragment = "&".join(part for part in (f"token={token}" if token else "", f"url={url}" if url else "") if part)
        self.page.goto(self.base_url + ("#" + fragment if fragment else ""))

    def ask(self, prompt: str) -> None:
        self.page.fill("#prompt", prompt)
        self.page.click("#send")

    def last_turn(self) -> Any:
        return self.page.locator("#transcript .turn").last

    def wait_state(self, state: str) -> None:
        self.page.wait_for_selector(f"#transcript .turn:last-child[data-state={state}]", timeout=WAIT_MS)

    def turn(self) -> Any:
        return self.page.evaluate("window.agentstream.turn()")


@pytest.fixture
def web(browser_context: Any, web_stack: Stack) -> Iterator[Page]:
    page = Page(browser_context.new_page(), f"http://127.0.0.1:{web_stack.info['port']}/")
    yield page
    page.page.close()
    assert not page.errors, f"JavaScript errors: {page.errors}"
    elsewhere = [url for url in page.requests if not url.split("//", 1)[-1].startswith("127.0.0.1:")]
    assert not elsewhere, f"the page reached beyond this machine: {elsewhere}"
