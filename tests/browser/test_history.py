"""The chat page's history, in Debian's Chromium against the local stack: a reload restores the
conversation (GET /v1/conversations/{id}), a turn still running is resumed over the WebSocket, and
the History panel (GET /v1/conversations) goes back to an earlier conversation, which new questions
continue. Another user sees none of it.
"""
from __future__ import annotations

import json
import re
from typing import Any, Dict, Iterator, List

import pytest
import requests
from playwright.sync_api import expect

from tests.support.browser import WAIT_MS, Page, page_of
from tests.support.faults import unique_user
from tests.support.stack import Stack, start_stack, stop_stack

pytestmark = pytest.mark.integration

# The page's restore of the current conversation has answered (found turns, or a 404).
RESTORED = "(id) => window.agentstream.history().restored === id"


def rest_get(stack: Stack, token: str, path: str) -> requests.Response:
    return requests.get(f"{stack.rest_url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def conversation_id(web: Page) -> str:
    return web.page.evaluate("window.agentstream.conversationId()")


def transcript(web: Page) -> List[Dict[str, str]]:
    """Each turn on the page: its prompt, its answer as shown, its state."""
    return web.page.evaluate(
        """() => Array.from(document.querySelectorAll('#transcript > .turn')).map((turn) => ({
            prompt: turn.querySelector('.msg.user .bubble').textContent,
            answer: turn.querySelector('.answer').innerText,
            state: turn.getAttribute('data-state'),
        }))"""
    )


def history_ids(web: Page) -> List[str]:
    return web.page.evaluate(
        "() => Array.from(document.querySelectorAll('#history-list button')).map((b) => b.dataset.conversationId)")


def open_history(web: Page, ids: List[str]) -> None:
    """Open the History panel (it reads the list again) and wait until it lists exactly ``ids``."""
    if web.page.locator("#history").get_attribute("open") is None:
        web.page.click("#history summary")
    web.page.wait_for_function(
        """(ids) => document.querySelector('#history-list').getAttribute('aria-busy') === 'false' &&
            JSON.stringify(Array.from(document.querySelectorAll('#history-list button'))
                .map((b) => b.dataset.conversationId)) === JSON.stringify(ids)""",
        arg=ids, timeout=WAIT_MS)


def record_sent_frames(web: Page) -> List[Dict[str, Any]]:
    """Every message the page sends on any of its WebSockets from now on (reloads included), in order."""
    sent: List[Dict[str, Any]] = []
    web.page.on("websocket", lambda socket: socket.on("framesent", lambda payload: sent.append(json.loads(payload))))
    return sent


def test_a_reload_restores_the_conversation_and_history_goes_back_to_an_earlier_one(web, web_stack, shots):
    token = web_stack.token(unique_user("history"))
    web.open(token=token)
    web.page.wait_for_selector("#status[data-state=open]")
    assert web.page.locator("#history").is_visible()  # the local stack's page: REST on its own origin
    web.ask("first question")
    web.wait_state("done")
    web.ask("a **second** question")
    web.wait_state("done")
    first = conversation_id(web)
    live_meta = web.last_turn().locator(".meta").inner_text()

    # Reload: the same conversation (sessionStorage), its turns read back before anything else.
    web.page.reload()
    expect(web.page.locator("#transcript > .turn")).to_have_count(2, timeout=WAIT_MS)
    assert conversation_id(web) == first
    assert transcript(web) == [
        {"prompt": "first question", "answer": "You said: first question", "state": "done"},
        {"prompt": "a **second** question", "answer": "You said: a second question", "state": "done"},
    ]
    assert web.last_turn().locator(".answer strong").inner_text() == "second"  # through the Markdown renderer
    assert web.last_turn().locator(".meta").inner_text() == live_meta  # "N characters · ...", as it ended
    assert web.page.locator("#empty").is_hidden() and web.turn() is None
    web.page.screenshot(path=str(shots / "restored.png"))

    # A new conversation, then History: both, newest first.
    web.page.wait_for_selector("#status[data-state=open]")
    web.page.click("#new-conversation")
    assert web.page.locator("#transcript > .turn").count() == 0
    second = conversation_id(web)
    assert second != first
    web.ask("another topic")
    web.wait_state("done")
    open_history(web, [second, first])
    items = web.page.locator("#history-list button")
    assert items.nth(0).locator(".history-title").inner_text() == "another topic"
    assert items.nth(1).locator(".history-title").inner_text() == "first question"
    assert items.nth(0).get_attribute("aria-current") == "true" and items.nth(1).get_attribute("aria-current") is None
    assert re.match(r"\d{4}-\d\d-\d\dT", items.nth(1).locator("time").get_attribute("datetime"))
    assert items.nth(1).locator("time").inner_text()  # the date, as the browser's locale writes it
    assert "first question" in items.nth(1).get_attribute("aria-label")
    assert web.page.locator("#history-more").is_hidden()  # one page
    web.page.screenshot(path=str(shots / "history.png"))

    # Choose the first: its turns, and a new question continues it.
    items.nth(1).click()
    expect(web.page.locator("#transcript > .turn")).to_have_count(2, timeout=WAIT_MS)
    assert conversation_id(web) == first
    assert web.page.evaluate("sessionStorage.getItem('agentstream.conversationId')") == first
    assert [turn["prompt"] for turn in transcript(web)] == ["first question", "a **second** question"]
    web.ask("and a third")
    web.wait_state("done")
    assert [turn["answer"] for turn in transcript(web)] == [
        "You said: first question", "You said: a second question", "You said: and a third"]
    answer = rest_get(web_stack, token, f"/v1/conversations/{first}")
    assert answer.status_code == 200
    assert [turn["prompt"] for turn in answer.json()["turns"]] == ["first question", "a **second** question", "and a third"]
    assert len(rest_get(web_stack, token, f"/v1/conversations/{second}").json()["turns"]) == 1
    web.page.wait_for_selector("#history:not([open])")
    open_history(web, [first, second])  # the one asked in most recently first


def test_a_reload_mid_answer_shows_it_and_resumes_it_over_the_websocket(web, web_stack):
    sent = record_sent_frames(web)
    web.open(token=web_stack.token(unique_user("reload-mid")))
    web.page.wait_for_selector("#status[data-state=open]")
    prompt = "!slow 5 " + " ".join(f"w{i}" for i in range(30))
    web.ask(prompt)
    web.page.wait_for_function("() => (window.agentstream.turn() || {text: ''}).text.includes('w3 ')")
    turn_id = web.turn()["turnId"]

    web.page.reload()
    web.page.wait_for_function("() => { const t = window.agentstream.turn(); return t && t.restored; }")
    assert web.turn()["turnId"] == turn_id
    assert web.page.locator("#send").is_disabled()  # in flight again
    web.wait_state("done")
    assert web.turn()["text"] == f"You said: {prompt}"  # whole, and once
    assert transcript(web) == [{"prompt": prompt, "answer": f"You said: {prompt}", "state": "done"}]
    resumes = [frame for frame in sent if frame.get("action") == "resume"]
    assert [frame.get("action") for frame in sent] == ["ask", "resume"], sent
    assert resumes[0]["turnId"] == turn_id and resumes[0]["fromSeq"] >= 0


def test_another_user_sees_none_of_it(web, web_stack, browser_context):
    alice = web_stack.token(unique_user("owner"))
    web.open(token=alice)
    web.ask("a private question")
    web.wait_state("done")
    theirs = conversation_id(web)

    bob = web_stack.token(unique_user("other"))
    with page_of(browser_context, web_stack) as other:  # a tab of its own: its own sessionStorage
        other.open(token=bob)
        other.page.wait_for_selector("#status[data-state=open]")
        assert conversation_id(other) != theirs
        other.page.click("#history summary")
        expect(other.page.locator("#history-status")).to_have_text("No past conversations yet.", timeout=WAIT_MS)
        assert other.page.locator("#history-list button").count() == 0
        # Even told the other user's conversation id, the page finds nothing in it (404).
        other.page.evaluate("(id) => sessionStorage.setItem('agentstream.conversationId', id)", theirs)
        other.page.reload()
        other.page.wait_for_function(RESTORED, arg=theirs)
        assert other.page.locator("#transcript > .turn").count() == 0
        assert other.page.locator("#empty").is_visible()
    assert rest_get(web_stack, bob, f"/v1/conversations/{theirs}").status_code == 404
    assert [c["conversationId"] for c in rest_get(web_stack, bob, "/v1/conversations").json()["conversations"]] == []


def test_history_pages_with_more_and_a_long_conversation_is_read_page_by_page(web, web_stack):
    """The page's paging (the API's pages are 20 conversations and 50 turns): answers made up here."""
    token = web_stack.token(unique_user("pages"))
    seen: List[Any] = []

    def conversations(route: Any) -> None:
        request = route.request
        seen.append(request)
        cursor = re.search(r"[?&]cursor=([^&]+)", request.url)
        if cursor is None:
            body = {"conversations": [{"conversationId": f"c{i}", "title": f"topic {i}", "createdAt": 1, "updatedAt":
                                       1_700_000_000_000 - i, "turns": 1} for i in range(2)], "cursor": "next page"}
        else:
            assert cursor.group(1) == "next%20page"
            body = {"conversations": [{"conversationId": "c2", "title": "", "createdAt": 1, "updatedAt": 1, "turns": 0}]}
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    def turns(route: Any) -> None:
        request = route.request
        seen.append(request)
        done = {"status": "done", "seq": 2, "createdAt": 1, "stats": {"characters": 6}}
        if "cursor=" not in request.url:
            body = {"conversationId": "c1", "turns": [{"prompt": "one", "turnId": "t1", "answer": "*once*", **done}],
                    "cursor": "more"}
        else:
            error = {"code": "agent_error", "message": "It failed.", "retryable": False}
            body = {"conversationId": "c1", "turns": [
                {"prompt": "two", "turnId": "t2", "answer": "twice", **done},
                {"prompt": "three", "turnId": "t3", "answer": "thr", "status": "error", "seq": 1, "createdAt": 2,
                 "error": error}]}
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    web.page.route(re.compile(r"/v1/conversations(\?.*)?$"), conversations)
    web.page.route(re.compile(r"/v1/conversations/c1(\?.*)?$"), turns)
    web.open(token=token)
    web.page.wait_for_selector("#status[data-state=open]")
    open_history(web, ["c0", "c1"])
    more = web.page.locator("#history-more")
    assert more.is_visible()
    more.click()
    expect(web.page.locator("#history-list button")).to_have_count(3, timeout=WAIT_MS)
    assert history_ids(web) == ["c0", "c1", "c2"] and more.is_hidden()
    assert web.page.locator("#history-list button").nth(2).locator(".history-title").inner_text() == "(untitled)"
    assert all(request.headers["authorization"] == f"Bearer {token}" for request in seen)

    web.page.click("#history-list button[data-conversation-id=c1]")
    expect(web.page.locator("#transcript > .turn")).to_have_count(3, timeout=WAIT_MS)
    assert transcript(web) == [
        {"prompt": "one", "answer": "once", "state": "done"},
        {"prompt": "two", "answer": "twice", "state": "done"},
        {"prompt": "three", "answer": "thr", "state": "error"},
    ]
    assert web.page.locator("#transcript > .turn").first.locator(".answer em").inner_text() == "once"
    assert web.last_turn().locator(".error-code").inner_text() == "agent_error"
    assert web.page.locator("#history").get_attribute("open") is None  # closed on choosing
    assert conversation_id(web) == "c1"


# ---- signed in (config.json names restUrl)


@pytest.fixture(scope="module")
def cognito_stack() -> Iterator[Stack]:
    # The hosted UI stand-in signs this user in without its form: a reload signs in again at once.
    stack = start_stack(AUTH="cognito", CONTROL_INTERVAL_MS="100", HOSTED_UI_USER=unique_user("signed-in"))
    yield stack
    stop_stack(stack)


def test_signed_in_the_page_restores_from_config_rest_url_and_keeps_no_token(browser_context, cognito_stack):
    with page_of(browser_context, cognito_stack) as web:
        rest: List[Any] = []
        web.page.on("request", lambda request: rest.append(request) if "/v1/" in request.url else None)
        web.open()
        web.page.click("#sign-in")
        web.page.wait_for_selector("#status[data-state=open]")
        web.ask("signed in question")
        web.wait_state("done")
        web.page.reload()  # signing in again: the tokens were in memory only
        web.page.click("#sign-in")
        expect(web.page.locator("#transcript > .turn")).to_have_count(1, timeout=WAIT_MS)
        assert transcript(web) == [{"prompt": "signed in question", "answer": "You said: signed in question", "state": "done"}]
        assert rest and all(request.url.startswith(cognito_stack.rest_url + "/v1/conversations/") for request in rest)
        assert all(request.headers["authorization"].startswith("Bearer ey") for request in rest)
        stored = web.page.evaluate("() => [localStorage, sessionStorage].flatMap((s) => Object.keys(s).map((k) => k + '=' + s.getItem(k)))")
        assert not [item for item in stored if "eyJ" in item], stored
