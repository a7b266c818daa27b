"""The chat page (client/web/) as a person uses it, in Debian's Chromium, against the local stack."""
from __future__ import annotations

import json
import re
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from playwright.sync_api import expect

from tests.support.browser import WAIT_MS, Page, keep_screenshot
from tests.support.faults import connection_ids, drop, unique_user
from tests.support.stack import Stack, answer_of, receive_turn, start_stack, stop_stack

pytestmark = pytest.mark.integration

# The streaming turn once its text is no longer ``length`` characters long, or it finished.
NEXT_LENGTH = """(length) => {
    const turn = window.agentstream.turn();
    return turn && (turn.finished || turn.text.length !== length) ? turn : null;
}"""


@pytest.fixture(scope="module")
def progress_stack() -> Iterator[Stack]:
    """A stack whose running turns send ``progress`` after half a second of silence (not 10 s)."""
    stack = start_stack(CONTROL_INTERVAL_MS="100", PROGRESS_INTERVAL_S="0.5")
    yield stack
    stop_stack(stack)


def record_sent_frames(web: Page) -> List[Dict[str, Any]]:
    """Every message the page sends on any of its WebSockets from now on, decoded, in order."""
    sent: List[Dict[str, Any]] = []

    def watch(socket: Any) -> None:
        socket.on("framesent", lambda payload: sent.append(json.loads(payload)))

    web.page.on("websocket", watch)
    return sent


def test_a_streamed_answer_appears_progressively(web, web_stack, shots):
    web.page.set_viewport_size({"width": 1100, "height": 980})  # room for the whole conversation
    web.open(token=web_stack.token(unique_user("stream")))
    web.page.wait_for_selector("#status[data-state=open]")
    web.ask("Hello! What can you do?")  # a finished turn above the streaming one, for the picture
    web.wait_state("done")
    prompt = (
        "!slow 3 Explain the flow.\n\n"
        "## How a turn flows\n"
        "1. `$default` records the turn and answers **accepted** at once\n"
        "2. SQS hands it to the *turn worker*\n"
        "3. the worker streams the agent's answer back, chunk by chunk\n\n"
        "| event | when |\n|---|---|\n| `chunk` | answer text, in order |\n| `done` | the turn ended well |"
    )
    web.ask(prompt)
    seen: List[int] = []
    screenshot = shots / "streaming.png"
    while True:  # every length the answer shows on its way, as the page changes (no polling by the clock)
        turn = web.page.wait_for_function(NEXT_LENGTH, arg=seen[-1] if seen else 0, timeout=WAIT_MS).json_value()
        if turn["text"] and (not seen or len(turn["text"]) != seen[-1]):
            seen.append(len(turn["text"]))
            if not screenshot.exists() and "answer text, in order" in turn["text"]:
                web.page.screenshot(path=str(screenshot))
        if turn["finished"]:
            break
    web.wait_state("done")
    expected = f"You said: {prompt}"
    assert web.turn()["text"] == expected
    assert len([n for n in seen if 0 < n < len(expected)]) >= 5, f"not progressive: {seen}"
    assert seen == sorted(seen)
    web.page.screenshot(path=str(shots / "streamed.png"))
    keep_screenshot(screenshot if screenshot.exists() else shots / "streamed.png")
    answer = web.last_turn().locator(".answer")
    assert answer.locator("h2").inner_text() == "How a turn flows"
    assert answer.locator("ol li").count() == 3 and answer.locator("table tr").count() == 3
    assert "characters" in web.last_turn().locator(".meta").inner_text()


def test_markdown_renders_and_html_in_the_answer_stays_text(web, web_stack):
    web.open(token=web_stack.token(unique_user("markdown")))
    attack = (
        "**bold** and `code` <script>window.pwned = 1</script> "
        '<img src=x onerror="window.pwned = 2"> [click](javascript:window.pwned=3) [docs](https://example.com/x)'
    )
    web.ask(attack)
    web.wait_state("done")
    answer = web.last_turn().locator(".answer")
    assert answer.locator("strong").inner_text() == "bold"
    assert answer.locator("code").inner_text() == "code"
    assert "<script>window.pwned = 1</script>" in answer.inner_text()
    assert '<img src=x onerror="window.pwned = 2">' in answer.inner_text()
    assert web.page.locator("#transcript script, #transcript img, #transcript [onerror]").count() == 0
    assert answer.locator("a").count() == 1
    assert answer.locator("a").get_attribute("href") == "https://example.com/x"
    assert answer.locator("a").get_attribute("rel") == "noopener noreferrer nofollow"
    assert web.page.evaluate("typeof window.pwned") == "undefined"


def slow_ask(web: Page, stack: Stack, who: str, seconds: int, under_way: str) -> Tuple[str, str]:
    """Open the page as a new user and ask for a thirty-word answer spread over ``seconds``; return
    (user, prompt) once ``under_way`` is in the answer: a point in the turn a fault can strike at."""
    user = unique_user(who)
    web.open(token=stack.token(user))
    web.page.wait_for_selector("#status[data-state=open]")
    prompt = f"!slow {seconds} " + " ".join(f"w{i}" for i in range(30))
    web.ask(prompt)
    web.page.wait_for_function(f"() => (window.agentstream.turn() || {{text: ''}}).text.includes('{under_way}')")
    return user, prompt


def test_a_dropped_connection_reconnects_and_the_answer_completes(web, web_stack, shots):
    user, prompt = slow_ask(web, web_stack, "dropped", 3, "w3 ")
    dropped = drop(web_stack, user)
    web.page.wait_for_selector("#status[data-state=reconnecting]")
    web.page.screenshot(path=str(shots / "reconnecting.png"))
    web.wait_state("done")
    turn = web.turn()
    assert turn["text"] == f"You said: {prompt}"  # whole, and once
    assert turn["resumes"] == 1
    assert web.page.locator("#status").get_attribute("data-state") == "open"
    assert "resumed 1×" in web.last_turn().locator(".meta").inner_text()
    assert web.last_turn().locator(".answer").inner_text() == f"You said: {prompt}"
    assert dropped not in connection_ids(web_stack, user)


def test_a_drop_mid_answer_resumes_after_the_last_seq_and_the_answer_appears_once(web, web_stack):
    sent = record_sent_frames(web)
    user, prompt = slow_ask(web, web_stack, "from-seq", 5, "w3 ")
    had = web.turn()["lastSeq"]  # at least this much; more may arrive before the drop lands
    drop(web_stack, user)
    web.wait_state("done")
    resumes = [frame for frame in sent if frame.get("action") == "resume"]
    assert len(resumes) == 1 and resumes[0].get("fromSeq", 0) >= had > 0, resumes
    turn = web.turn()
    assert turn["text"] == f"You said: {prompt}" and turn["resumes"] == 1  # appended, not replayed: once
    assert web.last_turn().locator(".answer").inner_text() == f"You said: {prompt}"


def test_a_silent_agent_shows_progress_in_the_bubble_until_text_arrives(web, progress_stack, shots):
    web.page.goto(f"http://127.0.0.1:{progress_stack.info['port']}/#token={progress_stack.token(unique_user('progress'))}")
    web.page.wait_for_selector("#status[data-state=open]")
    web.ask("!slow 4 x")  # 0.8 s before each of its five chunks: a progress event in every gap
    typing = web.last_turn().locator(".typing")
    expect(typing.locator(".typing-label")).to_contain_text("still working", timeout=WAIT_MS)
    assert typing.is_visible()
    assert re.fullmatch(r"still working · \d+(\.\d)? s( · .+)?", typing.locator(".typing-label").inner_text())
    web.page.screenshot(path=str(shots / "progress.png"))
    # Text that arrives clears it (until the agent is silent long enough again).
    web.page.wait_for_function(
        """() => {
            const turn = window.agentstream.turn();
            const label = document.querySelector('#transcript .turn:last-child .typing-label');
            return turn.text.length > 0 && turn.progress === null && label.textContent === '';
        }"""
    )
    web.wait_state("done")
    assert web.turn()["text"] == "You said: !slow 4 x"
    assert not typing.is_visible() and typing.locator(".typing-label").inner_text() == ""


def test_a_turn_resumed_in_another_tab_ends_here_and_is_not_resumed_again(web, web_stack):
    sent = record_sent_frames(web)
    user, prompt = slow_ask(web, web_stack, "superseded", 5, "w1 ")
    with web_stack.connect(user) as other:  # the same user, in another tab
        other.send(json.dumps({"action": "resume", "turnId": web.turn()["turnId"]}))
        web.wait_state("superseded")
        elsewhere = receive_turn(other)
    assert answer_of(elsewhere) == f"You said: {prompt}"  # it went on there
    box = web.last_turn().locator(".error-box")
    assert box.locator(".error-title").inner_text() == "Continued in another window or tab"
    assert box.locator(".error-code").inner_text() == "superseded"
    assert box.locator(".retry").count() == 0
    assert "another window or tab" in web.last_turn().locator(".meta").inner_text()
    # A drop now reconnects the page, but the turn stays where it went: the next frame is a new ask.
    drop(web_stack, user)
    web.page.wait_for_selector("#status[data-state=reconnecting]")
    web.page.wait_for_selector("#status[data-state=open]")
    web.ask("and now?")
    web.wait_state("done")
    assert [frame.get("action") for frame in sent] == ["ask", "ask"]


def test_a_question_of_only_invisible_characters_is_not_sent(web, web_stack):
    sent = record_sent_frames(web)
    web.open(token=web_stack.token(unique_user("invisible")))
    web.page.wait_for_selector("#status[data-state=open]")
    web.ask("\u200b\u2060 \ufeff")
    expect(web.page.locator("#notice-text")).to_contain_text("only invisible characters", timeout=WAIT_MS)
    assert web.turn() is None and sent == []


def test_an_idle_connection_closed_by_the_server_reopens_when_you_ask(web):
    stack = start_stack(IDLE_TIMEOUT_S="1")  # API Gateway's is 10 minutes
    try:
        web.page.goto(f"http://127.0.0.1:{stack.info['port']}/#token={stack.token(unique_user('idle'))}")
        web.page.wait_for_selector("#status[data-state=open]")
        web.page.wait_for_selector("#status[data-state=idle]", timeout=5000)
        assert "sending reconnects" in web.page.locator("#status").inner_text()
        web.ask("still there?")
        web.wait_state("done")
        assert web.turn()["text"] == "You said: still there?"
    finally:
        stop_stack(stack)


def test_a_refused_token_says_so(web, web_stack):
    web.open(token="not-a-token")
    web.page.wait_for_selector("#status[data-state=refused]")
    notice = web.page.locator("#notice-text").inner_text()
    assert "refused" in notice and "token" in notice and "not a JWT" in notice
    assert web.page.locator("#settings").get_attribute("open") is not None  # to paste a new one
    web.open(token=web_stack.token("late", ttl_s=-60))  # the same page: a new #token applies at once
    expect(web.page.locator("#notice-text")).to_contain_text("expired", timeout=WAIT_MS)
    assert web.page.locator("#status").get_attribute("data-state") == "refused"


def test_cancel_stops_the_answer(web, web_stack):
    web.open(token=web_stack.token(unique_user("cancel")))
    web.ask("!slow 6 " + "word " * 40)
    web.page.wait_for_function("() => (window.agentstream.turn() || {text: ''}).text.includes('word')")
    assert web.page.locator("#send").is_disabled()
    web.page.click("#cancel")
    web.wait_state("cancelled")
    partial = web.turn()["text"]
    assert partial.startswith("You said: !slow 6 word") and len(partial) < len("You said: !slow 6 " + "word " * 40)
    assert web.last_turn().locator(".error-code").inner_text() == "cancelled"
    assert web.page.locator("#send").is_enabled() and web.page.locator("#cancel").is_disabled()


def test_traces_show_when_toggled(web, web_stack):
    web.open(token=web_stack.token(unique_user("trace")))
    web.page.check("#trace-toggle")
    web.ask("!trace why")
    web.wait_state("done")
    traces = web.last_turn().locator(".traces")
    assert traces.is_visible()
    assert traces.locator("summary").inner_text() == "Trace (3 steps)"  # two steps and the model's tokens
    web.page.uncheck("#trace-toggle")
    assert not traces.is_visible()
    web.ask("!trace not asked for")
    web.wait_state("done")
    assert web.last_turn().locator(".trace-list li").count() == 0


def test_an_error_code_is_shown_plainly(web, web_stack):
    web.open(token=web_stack.token(unique_user("errors")))
    web.ask("!stream-error")
    web.wait_state("error")
    box = web.last_turn().locator(".error-box")
    assert box.locator(".error-code").inner_text() == "agent_error"
    assert box.locator(".error-title").inner_text() == "The agent failed to answer"
    assert box.locator(".retry").is_visible()  # the error is retryable
    web.last_turn().locator(".retry").click()  # asks the same question again
    web.page.wait_for_selector("#transcript .turn:nth-child(3)[data-state=error]", timeout=WAIT_MS)


def test_return_of_control_asks_for_the_tool_result_with_a_form(web, web_stack):
    web.open(token=web_stack.token(unique_user("tools")))
    web.ask("!return-control")
    form = web.last_turn().locator(".tool-form")
    form.wait_for()
    assert form.locator("legend").inner_text() == "EmulatorActions › lookup"
    assert "!return-control" in form.locator(".params").inner_text()
    form.locator("textarea").fill("sunny, **24 °C**")
    form.locator("button[type=submit]").click()
    web.wait_state("done")
    assert web.turn()["text"] == "You said: sunny, **24 °C**"  # the emulator echoes the tool result
    assert web.last_turn().locator(".answer strong").inner_text() == "24 °C"
    assert form.locator("textarea").is_disabled()


def test_files_the_agent_made_are_offered_as_downloads(web, web_stack):
    web.open(token=web_stack.token(unique_user("files")))
    web.ask("!files")
    web.wait_state("done")
    link = web.last_turn().locator(".file a")
    assert link.inner_text() == "weather.csv (text/csv, 24 bytes)"
    assert link.get_attribute("download") == "weather.csv"
    assert link.get_attribute("href").startswith("blob:http://127.0.0.1:")


LINK = 'target="_blank" rel="noopener noreferrer nofollow"'
MARKDOWN_CASES = [
    ("plain <b>text</b>", "<p>plain &lt;b&gt;text&lt;/b&gt;</p>"),
    ("# Title", "<h1>Title</h1>"),
    ("a\nb", "<p>a<br>b</p>"),
    ("*it* **bold** ~~old~~ `x<y`", "<p><em>it</em> <strong>bold</strong> <del>old</del> <code>x&lt;y</code></p>"),
    ("```html\n<script>alert(1)</script>\n```",
     '<pre><code class="language-html">&lt;script&gt;alert(1)&lt;/script&gt;</code></pre>'),
    ("```\nstill streaming", "<pre><code>still streaming</code></pre>"),
    ("- a\n- b\n  - c", "<ul><li>a</li><li><p>b</p><ul><li>c</li></ul></li></ul>"),
    ("3. x\n4. y", '<ol start="3"><li>x</li><li>y</li></ol>'),
    ("> quoted", "<blockquote><p>quoted</p></blockquote>"),
    ("| a | b |\n|---|--:|\n| 1 | 2 |", '<table><thead><tr><th>a</th><th style="text-align: right;">b</th></tr></thead>'
     '<tbody><tr><td>1</td><td style="text-align: right;">2</td></tr></tbody></table>'),
    ("[x](javascript:alert(1))", "<p>x</p>"),
    ("[x](JaVaScRiPt:alert(1)) [y](data:text/html,hi) [z](/relative)", "<p>x y z</p>"),
    ('[x](https://a.example/"onclick="alert(1))',
     f'<p><a href="https://a.example/&quot;onclick=&quot;alert(1)" {LINK}>x</a></p>'),
    ("![pic](https://a.example/p.png)", f'<p><a href="https://a.example/p.png" {LINK}>image: pic</a></p>'),
    ("see https://a.example/x.", f'<p>see <a href="https://a.example/x" {LINK}>https://a.example/x</a>.</p>'),
    ("snake_case_name", "<p>snake_case_name</p>"),
    ("\\*not em\\*", "<p>*not em*</p>"),
    ("---", "<hr>"),
]


def test_the_markdown_renderer(web):
    web.open()
    rendered = web.page.evaluate(
        """(cases) => cases.map((text) => {
            const box = document.createElement('div');
            box.appendChild(window.AgentMarkdown.render(text));
            return box.innerHTML;
        })""",
        [text for text, _ in MARKDOWN_CASES],
    )
    assert rendered == [html for _, html in MARKDOWN_CASES]
