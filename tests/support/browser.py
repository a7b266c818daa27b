"""The chat page in Debian's Chromium: where the browser is, how it runs, and one tab on the page.

The browser is never downloaded: Playwright launches /usr/bin/chromium (`make chromium` installs
it with apt). Chromium's own background connections are switched off. With UPDATE_SCREENSHOT=1
the screenshot of a streamed answer is copied to docs/screenshot.png.
"""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, List

if TYPE_CHECKING:
    from tests.support.stack import Stack

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


@contextmanager
def page_of(browser_context: Any, stack: Stack) -> Iterator[Page]:
    """The stack's page in a new tab; after use, no JavaScript error and nothing reached off this machine."""
    page = Page(browser_context.new_page(), f"http://127.0.0.1:{stack.info['port']}/")
    yield page
    page.page.close()
    assert not page.errors, f"JavaScript errors: {page.errors}"
    elsewhere = [url for url in page.requests if not url.split("//", 1)[-1].startswith("127.0.0.1:")]
    assert not elsewhere, f"the page reached beyond this machine: {elsewhere}"
